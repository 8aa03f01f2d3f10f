//! One first call in progress: who waits for it, and how it ends (completed, cancelled once
//! deserted, or dead).
//!
//! Every caller waiting for a computation holds a [`Waiter`], which counts it in the
//! [`Flight`]. The computation's task ([`Completion::run`]) races the work against desertion:
//! when the count reaches zero it arms a timer of `abandon_grace`; a caller joining meanwhile
//! disarms it, and the last one leaving arms it afresh. When it fires with nobody there, the slot
//! is removed under the shard's write lock, but only if the count is still zero and nobody
//! joined since the timer was armed; callers join under the same shard's lock
//! ([`super::Seen::of`]), so none can join a computation that is being cancelled. The work's
//! future is then dropped.
//!
//! A computation with callers waiting arms no timer: desertion costs one `Notify` per first
//! call and a few atomic operations per caller, nothing on the warm path.
//!
//! It may not decide admission or eviction: the [`Cache`] does.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

use super::{Cache, CacheError, Outcome};

/// A computation in progress, shared by its slot, its task and its waiters.
pub(super) struct Flight {
    /// Turns `true` once the computation finished and the slot became ready.
    done: watch::Receiver<bool>,
    /// Callers waiting right now.
    waiters: AtomicUsize,
    /// Callers that ever joined: tells a timer that fired whether someone came and went.
    joins: AtomicUsize,
    /// Woken when `waiters` leaves or reaches zero.
    changed: Notify,
}

impl Flight {
    /// A flight nobody waits for yet, and the sender its completion publishes on.
    pub(super) fn new() -> (Arc<Self>, watch::Sender<bool>) {
        let (done, receiver) = watch::channel(false);
        let flight = Self {
            done: receiver,
            waiters: AtomicUsize::new(0),
            joins: AtomicUsize::new(0),
            changed: Notify::new(),
        };
        (Arc::new(flight), done)
    }

    /// Whether nobody waits and nobody joined since `joins` was read. The verdict holds only
    /// under the write lock of the flight's shard (joins happen under its read lock), so the
    /// counters need no ordering of their own.
    fn deserted_since(&self, joins: usize) -> bool {
        self.waiters.load(Ordering::Relaxed) == 0 && self.joins.load(Ordering::Relaxed) == joins
    }
}

/// One caller waiting for a [`Flight`]; dropping it (a client gone) leaves.
pub(super) struct Waiter {
    flight: Arc<Flight>,
    done: watch::Receiver<bool>,
}

impl Waiter {
    /// Counts a caller in `flight`. Call it under the shard lock that holds the flight's slot.
    pub(super) fn join(flight: &Arc<Flight>) -> Self {
        flight.joins.fetch_add(1, Ordering::Relaxed);
        if flight.waiters.fetch_add(1, Ordering::Relaxed) == 0 {
            flight.changed.notify_one();
        }
        Self {
            flight: Arc::clone(flight),
            done: flight.done.clone(),
        }
    }

    /// Waits for the computation to finish.
    pub(super) async fn wait(mut self) -> Result<Outcome, CacheError> {
        let finished = self.done.wait_for(|ready| *ready).await.is_ok();
        if finished {
            Ok(Outcome::Miss)
        } else {
            Err(CacheError::Abandoned)
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.flight.waiters.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.flight.changed.notify_one();
        }
    }
}

/// Runs a computation to its end; if dropped unsettled (a panic, the runtime gone), frees the
/// slot instead, and its waiters get [`CacheError::Abandoned`] as `done` is dropped.
pub(super) struct Completion {
    cache: Arc<Cache>,
    key: Arc<str>,
    flight: Arc<Flight>,
    done: watch::Sender<bool>,
    /// Whether the slot and its `pending` count are still this guard's to release.
    settled: bool,
}

impl Completion {
    pub(super) fn new(
        cache: Arc<Cache>,
        key: Arc<str>,
        flight: Arc<Flight>,
        done: watch::Sender<bool>,
    ) -> Self {
        Self {
            cache,
            key,
            flight,
            done,
            settled: false,
        }
    }

    /// Runs `work` until it completes (the user turns ready) or is deserted (cancelled).
    pub(super) async fn run(mut self, work: impl Future<Output = ()>) {
        let completed = tokio::select! {
            biased;
            () = work => true,
            () = self.deserted() => false,
        };
        if completed {
            self.cache.complete(&self.key, &self.flight);
            self.done.send_replace(true);
        } else {
            // `deserted` removed the slot; nobody waits for `done`.
            self.cache.cancelled.fetch_add(1, Ordering::Relaxed);
            self.cache.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!("first call cancelled: nobody waited for it");
        }
        self.settled = true;
    }

    /// Returns once nobody has waited during `abandon_grace` and the slot has been removed.
    async fn deserted(&self) {
        let flight = &self.flight;
        loop {
            // `notify_one` keeps a wake-up for a task not waiting yet, so none is lost between
            // a load and the wait; a stale one only makes the loop go round once more.
            if flight.waiters.load(Ordering::Relaxed) > 0 {
                flight.changed.notified().await;
                continue;
            }
            let joins = flight.joins.load(Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(self.cache.abandon_grace) => {
                    let deserted = |flight: &Flight| flight.deserted_since(joins);
                    if self.cache.remove_pending(&self.key, flight, deserted) {
                        return;
                    }
                }
                // Someone joined: the grace starts again when the last one leaves.
                () = flight.changed.notified() => {}
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.settled {
            self.cache.remove_pending(&self.key, &self.flight, |_| true);
            self.cache.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
