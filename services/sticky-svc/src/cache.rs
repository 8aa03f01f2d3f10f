//! The bounded, single-flight cache of users whose first call has been paid.
//!
//! # Single flight
//!
//! A user's slot is either `Ready` (cost paid) or `Pending` (a first call in progress). The first
//! caller for a user inserts `Pending` and *spawns* the computation on its own task; every
//! caller, leader included, then waits for it. Because the computation does not run inside the
//! leader's request future, a leader whose client disconnects does not stop it: a caller who
//! comes within the abandon grace joins it, and the work is never paid twice. If the
//! computation task dies (panic, runtime shut down), a drop guard removes the `Pending` slot, so
//! the next caller starts afresh and current waiters get [`CacheError::Abandoned`].
//!
//! Only callers of the *same* user share a slot; different users touch different slots, so they
//! never wait on each other (the cold path takes one short, never-awaited `Mutex` for the
//! eviction order).
//!
//! # Abandoned first calls
//!
//! A pending slot counts the callers waiting for it. When the count drops to zero and stays
//! there for `abandon_grace`, the computation is cancelled and its slot freed (`flight.rs`).
//! That decision is taken under the map's shard lock, under which callers also join: a caller
//! either joins a computation that then runs to its end, or finds no slot and starts anew.
//! Nobody ever waits for a cancelled computation.
//!
//! # Two bounds: first calls in progress, completed users
//!
//! - At most `max_first_calls` first calls are in progress. Past it a *new* user's call is
//!   refused at once with [`CacheError::TooManyFirstCalls`]; users already cached, and users
//!   whose first call is in progress, need no new slot and are not affected. A refusal takes no
//!   write lock and allocates nothing, so a flood of new users does not slow warm readers down.
//! - At most `capacity` completed users are held. A completion past it evicts the user whose
//!   first call completed earliest (FIFO by completion). FIFO rather than LRU because LRU must
//!   write on every hit, which would put a lock on the warm path (the path the service exists to
//!   make fast); FIFO only touches the queue on completions. The price: a user still active
//!   after `capacity` newer users completed pays the first-call cost once more.
//!
//! Only a completion evicts: first calls in progress can neither evict a cached user nor block
//! one. The map holds at most `capacity + max_first_calls` users.
//!
//! Keys are hashed with std's randomly seeded SipHash (DashMap's default), since users choose
//! them: a fixed fast hash would let a client aim many keys at one shard.

mod flight;

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use thiserror::Error;

use flight::{Completion, Flight, Waiter};

/// Why a call could not be answered from, or admitted into, the cache.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CacheError {
    /// `max_first_calls` first calls are in progress: a new user cannot start one now.
    #[error("too many first calls in progress; retry shortly")]
    TooManyFirstCalls,
    /// The computation this call waited for stopped before finishing.
    #[error("the first-call computation was abandoned; retry")]
    Abandoned,
}

/// How a successful call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user's first call had already been paid.
    Hit,
    /// The call waited for the user's first-call computation (as its leader or a follower).
    Miss,
}

enum Slot {
    Ready,
    Pending(Arc<Flight>),
}

/// What a caller found in a slot: the cost paid, or a computation it now waits for.
enum Seen {
    Ready,
    Waiting(Waiter),
}

impl Seen {
    /// Joins a pending slot; call it under the shard lock that holds `slot` (see [`flight`]).
    fn of(slot: &Slot) -> Self {
        match slot {
            Slot::Ready => Self::Ready,
            Slot::Pending(flight) => Self::Waiting(Waiter::join(flight)),
        }
    }
}

/// Users whose first call has been paid, bounded to `capacity` entries, plus at most
/// `max_first_calls` first calls in progress.
pub struct Cache {
    slots: DashMap<Arc<str>, Slot>,
    /// Completed users, earliest completion first: the eviction order.
    ready: Mutex<VecDeque<Arc<str>>>,
    capacity: NonZeroUsize,
    /// First calls in progress: counted before their slot is inserted and after it is gone (or
    /// turned ready and room made), so the map never holds more than `capacity` plus this.
    pending: AtomicUsize,
    max_first_calls: NonZeroUsize,
    abandon_grace: Duration,
    evictions: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("max_first_calls", &self.max_first_calls)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An empty cache of at most `capacity` completed users and `max_first_calls` first calls
    /// in progress; a first call nobody waits for during `abandon_grace` is cancelled.
    pub fn new(
        capacity: NonZeroUsize,
        max_first_calls: NonZeroUsize,
        abandon_grace: Duration,
    ) -> Self {
        Self {
            slots: DashMap::new(),
            ready: Mutex::new(VecDeque::new()),
            capacity,
            pending: AtomicUsize::new(0),
            max_first_calls,
            abandon_grace,
            evictions: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    /// The most completed users the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Completed users held (first calls in progress are [`Cache::pending`]).
    pub fn len(&self) -> usize {
        self.ready().len()
    }

    /// Whether no completed user is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First calls in progress.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The most first calls in progress at once.
    pub fn max_first_calls(&self) -> usize {
        self.max_first_calls.get()
    }

    /// Users evicted to make room since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// New users' first calls refused at the first-call bound since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// First calls cancelled since start because nobody waited for them.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Whether `user`'s first call has been paid.
    pub fn is_ready(&self, user: &str) -> bool {
        matches!(self.slots.get(user).as_deref(), Some(Slot::Ready))
    }

    /// Answers from the cache, or runs `compute` once for all concurrent callers of `user`.
    ///
    /// `compute` is called only by the caller that starts the computation; its future runs on a
    /// spawned task, so dropping this call's future does not stop it: it is cancelled only once
    /// nobody has waited for it during the abandon grace.
    pub async fn get_or_compute<F, Fut>(
        self: &Arc<Self>,
        user: &str,
        compute: F,
    ) -> Result<Outcome, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let seen = match self.seen(user) {
            Some(seen) => seen,
            None => self.start(user, compute)?,
        };
        match seen {
            Seen::Ready => Ok(Outcome::Hit),
            Seen::Waiting(waiter) => waiter.wait().await,
        }
    }

    /// The warm path: one shard read lock, no allocation. The guard is dropped on return,
    /// before any await or any write to the map.
    fn seen(&self, user: &str) -> Option<Seen> {
        self.slots.get(user).map(|slot| Seen::of(slot.value()))
    }

    /// Claims a slot for `user` and spawns its computation, or joins one started meanwhile.
    fn start<F, Fut>(self: &Arc<Self>, user: &str, compute: F) -> Result<Seen, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.pending() >= self.max_first_calls.get() {
            // Refused before the write lock and the key's allocation: a flood of new users
            // must not hold up the warm readers of a shard. Unless the user started meanwhile.
            return self.seen(user).ok_or_else(|| self.refuse());
        }
        let key: Arc<str> = Arc::from(user);
        match self.slots.entry(Arc::clone(&key)) {
            // Another caller started (or finished) this user between our read and now.
            Entry::Occupied(entry) => Ok(Seen::of(entry.get())),
            Entry::Vacant(entry) => {
                if !self.reserve() {
                    return Err(self.refuse());
                }
                let (flight, done) = Flight::new();
                let waiter = Waiter::join(&flight);
                entry.insert(Slot::Pending(Arc::clone(&flight)));
                // Built before `compute` runs: if it panics, the guard frees the slot.
                let completion = Completion::new(Arc::clone(self), key, flight, done);
                tokio::spawn(completion.run(compute()));
                Ok(Seen::Waiting(waiter))
            }
        }
    }

    /// Counts one more first call in progress, unless `max_first_calls` are.
    fn reserve(&self) -> bool {
        let max = self.max_first_calls.get();
        self.pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pending| {
                (pending < max).then_some(pending + 1)
            })
            .is_ok()
    }

    fn refuse(&self) -> CacheError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        CacheError::TooManyFirstCalls
    }

    /// Turns `key`'s slot ready, evicting the earliest completed user past `capacity`.
    fn complete(&self, key: &Arc<str>, flight: &Arc<Flight>) {
        // Only this flight's guard removes its slot, so it is still there.
        if let Some(mut slot) = self.slots.get_mut(key)
            && matches!(&*slot, Slot::Pending(own) if Arc::ptr_eq(own, flight))
        {
            *slot = Slot::Ready;
        }
        // Ready in the map before it is queued: whoever evicts it must find it ready.
        let evicted = {
            let mut ready = self.ready();
            ready.push_back(Arc::clone(key));
            if ready.len() > self.capacity.get() {
                ready.pop_front()
            } else {
                None
            }
        };
        // Never while holding a map guard: the evicted key may live in the same shard.
        if let Some(evicted) = evicted {
            self.slots
                .remove_if(&evicted, |_, slot| matches!(slot, Slot::Ready));
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        // Last: until the evicted user is gone, this one still counts as pending.
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Removes `key`'s slot if it still belongs to `flight` and `still` holds under the lock.
    fn remove_pending(
        &self,
        key: &Arc<str>,
        flight: &Arc<Flight>,
        still: impl FnOnce(&Flight) -> bool,
    ) -> bool {
        self.slots
            .remove_if(key, |_, slot| {
                matches!(slot, Slot::Pending(own) if Arc::ptr_eq(own, flight) && still(own))
            })
            .is_some()
    }

    fn ready(&self) -> MutexGuard<'_, VecDeque<Arc<str>>> {
        // The lock is never held across a panic point that leaves the queue half-updated.
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn map_len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests;
