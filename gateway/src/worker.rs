//! What a worker thread has of its own: its index, which picks its share of per-worker state
//! (idle connections, latency counts), and its [`outbox`] flusher.
//!
//! The proxy runs its connections on worker threads, each a single-threaded event loop
//! (`crate::proxy::handoff` starts them); every other thread (the control path, tests) counts
//! as worker 0. A leaf: this module and its outbox import nothing of the crate.

pub mod outbox;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Worker threads, set once at start-up ([`set_count`]).
static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's worker index (0 on threads that are not workers).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Per-worker state built from now on is made for `workers` worker threads.
pub fn set_count(workers: usize) {
    COUNT.store(workers.max(1), Ordering::Relaxed);
}

/// Worker threads, as set at start-up (1 until then).
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Marks the calling thread as worker `index`.
pub fn enter(index: usize) {
    INDEX.with(|worker| worker.set(index));
}

/// The calling thread's worker index (0 on threads that are not workers).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
