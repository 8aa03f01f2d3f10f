//! The bounded, single-flight cache of users whose first call has been paid.
//!
//! # Single flight
//!
//! A user's slot is either `Ready` (cost paid) or `Pending` (cost being paid). The first caller
//! for a user inserts `Pending` and *spawns* the computation on its own task; every caller,
//! leader included, then waits on a `watch` channel for it. Because the computation does not run
//! inside the leader's request future, a leader whose client disconnects cannot cancel it:
//! followers never hang and the work is never paid twice. If the computation task dies anyway
//! (panic, runtime shut down), a drop guard removes the `Pending` slot, so the next caller
//! starts afresh and current waiters get [`CacheError::Abandoned`].
//!
//! Only callers of the *same* user share a slot; different users touch different slots, so they
//! never wait on each other (the cold path takes one short, never-awaited `Mutex` for the
//! eviction order).
//!
//! # Bounded size and eviction: FIFO by completion
//!
//! At most `capacity` slots exist, `Ready` and `Pending` together. Ready users are queued in the
//! order their first call completed; making room evicts the oldest one. FIFO rather than LRU
//! because LRU must write on every hit, which would put a lock on the warm path (the path the
//! service exists to make fast); FIFO only touches the queue on misses. The price: a user still
//! active after `capacity` newer users arrived pays the first-call cost once more. When every
//! slot is `Pending` there is nothing to evict and the call fails with
//! [`CacheError::Saturated`] rather than growing the map.
//!
//! Keys are hashed with std's randomly seeded SipHash (DashMap's default), since users choose
//! them: a fixed fast hash would let a client aim many keys at one shard.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use thiserror::Error;
use tokio::sync::watch;

/// Why a call could not be answered from, or admitted into, the cache.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CacheError {
    /// Every slot holds a first call still in progress; nothing can be evicted.
    #[error("every cache slot is taken by a first call still in progress; retry shortly")]
    Saturated,
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

#[derive(Clone)]
enum Slot {
    Ready,
    /// Turns `true` once the computation finished and the slot became `Ready`.
    Pending(watch::Receiver<bool>),
}

/// Eviction order and slot accounting; `ready.len() + pending <= capacity` always.
#[derive(Default)]
struct Order {
    ready: VecDeque<Arc<str>>,
    pending: usize,
}

/// Users whose first call has been paid, bounded to `capacity` entries.
pub struct Cache {
    slots: DashMap<Arc<str>, Slot>,
    order: Mutex<Order>,
    capacity: NonZeroUsize,
    evictions: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An empty cache holding at most `capacity` users.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            slots: DashMap::new(),
            order: Mutex::new(Order::default()),
            capacity,
            evictions: AtomicU64::new(0),
        }
    }

    /// The most users the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }

    /// Users held, ready or pending.
    pub fn len(&self) -> usize {
        let order = self.order();
        order.ready.len() + order.pending
    }

    /// Whether no user is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First calls in progress.
    pub fn pending(&self) -> usize {
        self.order().pending
    }

    /// Users evicted to make room since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Whether `user`'s first call has been paid.
    pub fn is_ready(&self, user: &str) -> bool {
        matches!(self.slots.get(user).as_deref(), Some(Slot::Ready))
    }

    /// Answers from the cache, or runs `compute` once for all concurrent callers of `user`.
    ///
    /// `compute` is called only by the caller that starts the computation; its future runs on a
    /// spawned task, so dropping this call's future does not stop it.
    pub async fn get_or_compute<F, Fut>(
        self: &Arc<Self>,
        user: &str,
        compute: F,
    ) -> Result<Outcome, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Warm path: one shard read lock, no allocation. The guard is dropped at the `;`,
        // before any await or any write to the map.
        let slot = self.slots.get(user).map(|slot| slot.value().clone());
        let mut done = match slot {
            Some(Slot::Ready) => return Ok(Outcome::Hit),
            Some(Slot::Pending(done)) => done,
            None => match self.start(user, compute)? {
                Some(done) => done,
                None => return Ok(Outcome::Hit),
            },
        };
        match done.wait_for(|ready| *ready).await {
            Ok(_) => Ok(Outcome::Miss),
            Err(_) => Err(CacheError::Abandoned),
        }
    }

    /// Claims a slot for `user` and spawns its computation, or joins one started meanwhile.
    /// `None` means the user became ready in between.
    fn start<F, Fut>(
        self: &Arc<Self>,
        user: &str,
        compute: F,
    ) -> Result<Option<watch::Receiver<bool>>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Make room before inserting, and never while holding a map guard: the evicted key may
        // live in the same shard. Removing before inserting keeps the map within capacity.
        if let Some(evicted) = self.reserve()? {
            self.slots
                .remove_if(&evicted, |_, slot| matches!(slot, Slot::Ready));
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let key: Arc<str> = Arc::from(user);
        match self.slots.entry(Arc::clone(&key)) {
            Entry::Occupied(entry) => {
                // Another caller started (or finished) this user between our read and now.
                // The slot reserved above is given back; a user it evicted, if any, stays
                // evicted: rare, and only costs that user one more first call.
                let slot = entry.get().clone();
                drop(entry);
                self.order().pending -= 1;
                Ok(match slot {
                    Slot::Ready => None,
                    Slot::Pending(done) => Some(done),
                })
            }
            Entry::Vacant(entry) => {
                let (tx, rx) = watch::channel(false);
                entry.insert(Slot::Pending(rx.clone()));
                let completion = Completion {
                    cache: Arc::clone(self),
                    key,
                    tx,
                    finished: false,
                };
                let work = compute();
                tokio::spawn(async move {
                    work.await;
                    completion.finish();
                });
                Ok(Some(rx))
            }
        }
    }

    /// Counts one more pending slot, returning the ready user to evict to make room for it.
    fn reserve(&self) -> Result<Option<Arc<str>>, CacheError> {
        let mut order = self.order();
        let evicted = if order.ready.len() + order.pending >= self.capacity.get() {
            Some(order.ready.pop_front().ok_or(CacheError::Saturated)?)
        } else {
            None
        };
        order.pending += 1;
        Ok(evicted)
    }

    fn order(&self) -> MutexGuard<'_, Order> {
        // The lock is never held across a panic point that leaves `Order` half-updated.
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn map_len(&self) -> usize {
        self.slots.len()
    }
}

/// Publishes a computation's result; if dropped unfinished, frees the slot instead.
struct Completion {
    cache: Arc<Cache>,
    key: Arc<str>,
    tx: watch::Sender<bool>,
    finished: bool,
}

impl Completion {
    fn finish(mut self) {
        // A pending slot is never evicted (only ready keys are queued), so it is still there.
        if let Some(mut slot) = self.cache.slots.get_mut(&self.key) {
            *slot = Slot::Ready;
        }
        {
            let mut order = self.cache.order();
            order.pending -= 1;
            order.ready.push_back(Arc::clone(&self.key));
        }
        self.finished = true;
        self.tx.send_replace(true);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.finished {
            self.cache
                .slots
                .remove_if(&self.key, |_, slot| matches!(slot, Slot::Pending(_)));
            self.cache.order().pending -= 1;
            // Dropping `tx` wakes the waiters with an error: they report `Abandoned`.
        }
    }
}

#[cfg(test)]
mod tests;
