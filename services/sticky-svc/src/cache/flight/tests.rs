//! Desertion: a first call whose callers all left is cancelled after the grace, not before, and
//! the grace restarts whenever a caller comes and goes. Time is paused: each `sleep` here moves
//! the clock to the moment under test, it waits for nothing.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::tests::{BoxFuture, COST, GRACE, counted, limited, spawn_admitted};
use super::super::*;

/// A computation that never ends by itself; `dropped` resolves when its future is dropped.
fn endless(
    calls: &Arc<AtomicUsize>,
) -> (impl FnOnce() -> BoxFuture + use<>, oneshot::Receiver<()>) {
    let (alive, dropped) = oneshot::channel::<()>();
    let calls = Arc::clone(calls);
    let compute = move || -> BoxFuture {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        })
    };
    (compute, dropped)
}

/// Starts `user`'s first call with `compute` from a caller who then hangs up.
async fn start_and_leave<F, Fut>(cache: &Arc<Cache>, user: &'static str, compute: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::clone(cache);
    let caller = spawn_admitted(async move { shared.get_or_compute(user, compute).await }).await;
    caller.abort();
    assert!(
        caller.await.unwrap_err().is_cancelled(),
        "the caller is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_call_nobody_waits_for_is_cancelled_after_the_grace() {
    let cache = limited(10, 10);
    let calls = Arc::new(AtomicUsize::new(0));
    let (compute, dropped) = endless(&calls);
    start_and_leave(&cache, "gone", compute).await;
    let left = Instant::now();
    assert_eq!(cache.pending(), 1, "the computation outlives its caller");

    let cancelled = tokio::time::timeout(10 * GRACE, dropped).await;
    assert!(cancelled.is_ok(), "the computation is still running");
    assert_eq!(left.elapsed(), GRACE, "cancelled when the grace ran out");
    assert_eq!((cache.pending(), cache.map_len()), (0, 0));
    assert_eq!(cache.cancelled(), 1);

    // The user is not cached: the next caller starts afresh.
    let started = Instant::now();
    assert_eq!(
        cache.get_or_compute("gone", counted(&calls)).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(started.elapsed(), COST);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_caller_within_the_grace_joins_the_computation() {
    let cache = limited(10, 10);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    start_and_leave(&cache, "back", counted(&calls)).await;
    tokio::time::sleep(GRACE - Duration::from_millis(1)).await;
    assert_eq!((cache.pending(), cache.cancelled()), (1, 0), "not before");

    assert_eq!(
        cache.get_or_compute("back", counted(&calls)).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(started.elapsed(), COST, "it waited for the rest only");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "paid once");
    assert_eq!(cache.cancelled(), 0);
    assert!(cache.is_ready("back"));
}

#[tokio::test(start_paused = true)]
async fn the_grace_restarts_when_the_last_caller_leaves() {
    let cache = limited(10, 10);
    let calls = Arc::new(AtomicUsize::new(0));
    let (compute, dropped) = endless(&calls);
    let first_left = Instant::now();
    start_and_leave(&cache, "twice", compute).await;

    // A second caller comes half a second later and leaves after another half second.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shared = Arc::clone(&cache);
    let unused = || -> BoxFuture { unreachable!("the user's first call is in progress") };
    let second = spawn_admitted(async move { shared.get_or_compute("twice", unused).await }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.abort();
    assert!(second.await.unwrap_err().is_cancelled());

    let cancelled = tokio::time::timeout(10 * GRACE, dropped).await;
    assert!(cancelled.is_ok(), "the computation is still running");
    assert_eq!(
        first_left.elapsed(),
        Duration::from_secs(1) + GRACE,
        "a full grace after the last caller left"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((cache.pending(), cache.cancelled()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_computation_with_a_caller_is_never_cancelled() {
    let cache = limited(10, 10);
    let slow = move || -> BoxFuture { Box::pin(tokio::time::sleep(10 * GRACE)) };
    let started = Instant::now();
    assert_eq!(
        cache.get_or_compute("patient", slow).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(started.elapsed(), 10 * GRACE);
    assert_eq!(cache.cancelled(), 0);
}
