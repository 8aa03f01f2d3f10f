//! The route timeout's timers, kept from request to request by each worker's handler.
//!
//! `tokio::time::timeout` gives every request a timer of its own: registered in the runtime's
//! timer wheel on its first poll and taken out again when the request is done, each under the
//! wheel's lock (~850 instructions of a proxied request's ~29 000, callgrind). Nearly every
//! request ends long before its timeout (60 s by default), so its timer is never due. Here a
//! finished request's timer stays registered and goes back to its worker's spare list; the
//! next request resets it to its own deadline. Tokio moves a registered timer to a *later*
//! deadline without the lock or the wheel (it notes the new deadline and files the timer again
//! only when the old one comes round), so in the common case starting and ending a request's
//! timeout is a compare-and-swap and a push. A timer moved earlier (a shorter timeout than its
//! last request's) is filed again the usual way; a spare one that came due while spare, or
//! whose runtime has shut down, is dropped, never reused.
//!
//! The deadline is as exact as tokio's: a reused timer fires at its new deadline (tests below).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Spare timers kept per worker: beyond this many requests in flight at once, a finished
/// request's timer is dropped (taken out of the wheel) rather than kept.
const SPARE: usize = 256;

/// One worker's spare timers. The handler that holds it is its worker's alone, so the lock is
/// never contended.
#[derive(Debug, Default)]
pub(super) struct Timers {
    spare: Mutex<Vec<Pin<Box<Sleep>>>>,
}

impl Timers {
    /// A deadline `timeout` from now, on a spare timer when there is one.
    pub(super) fn deadline(&self, timeout: Duration) -> Deadline<'_> {
        let at = Instant::now() + timeout;
        let spare = {
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            // One that came due while spare, or whose runtime shut down, is dropped (a timer of
            // a runtime that is gone panics when polled).
            std::iter::from_fn(|| spare.pop()).find(|sleep| !sleep.is_elapsed())
        };
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(at);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(at)),
        };
        Deadline {
            sleep: Some(sleep),
            timers: self,
        }
    }

    #[cfg(test)]
    fn spare(&self) -> usize {
        self.spare.lock().unwrap().len()
    }
}

/// A request's deadline: ready when it has passed. Its timer goes back to the spare list when
/// it is dropped before that.
#[derive(Debug)]
pub(super) struct Deadline<'a> {
    sleep: Option<Pin<Box<Sleep>>>,
    timers: &'a Timers,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        // Elapsed: it came due, or its runtime shut down (every timer is then fired); either
        // way it is no longer in the wheel, and a reset would only file it again.
        if sleep.is_elapsed() {
            return;
        }
        let mut spare = self
            .timers
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE {
            spare.push(sleep);
        }
    }
}

pin_project_lite::pin_project! {
    /// `future`'s output, or `None` once the deadline has passed first ([`within`]).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub(super) struct Within<'a, F> {
        #[pin]
        future: F,
        deadline: Deadline<'a>,
    }
}

/// `future`'s output, or `None` once `deadline` has passed first (as `tokio::time::timeout`:
/// the future is polled first, so one that is ready at its deadline still wins). A struct
/// rather than an `async fn`, so `future` is built in place in the caller's state instead of
/// being moved into a second one.
pub(super) fn within<F: Future>(deadline: Deadline<'_>, future: F) -> Within<'_, F> {
    Within { future, deadline }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Some(output));
        }
        Pin::new(this.deadline).poll(cx).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime of its own (with the clock paused when `paused`), for a test that outlives one.
    fn runtime(paused: bool) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(paused)
            .build()
            .unwrap()
    }

    /// Leaves one timer registered in the wheel on the spare list: a request whose deadline
    /// was `timeout` away and that ended before it.
    fn spare_one(timers: &Timers, timeout: Duration) {
        let mut deadline = timers.deadline(timeout);
        assert!(!passed(&mut deadline));
    }

    /// How long `deadline` takes to pass, waited for through [`within`] on the paused clock.
    async fn fires_after(deadline: Deadline<'_>) -> Duration {
        let started = Instant::now();
        assert_eq!(within(deadline, std::future::pending::<()>()).await, None);
        started.elapsed()
    }

    /// Whether `deadline` has passed, polled once without waiting.
    fn passed(deadline: &mut Deadline<'_>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(deadline).poll(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_fires_at_its_new_deadline_not_its_old_one() {
        let timers = Timers::default();
        spare_one(&timers, Duration::from_secs(10));
        assert_eq!(timers.spare(), 1, "a finished request's timer is kept");

        tokio::time::advance(Duration::from_secs(5)).await;
        let mut second = timers.deadline(Duration::from_secs(10));
        assert_eq!(timers.spare(), 0, "the spare timer is reused");
        // Past the first request's deadline (t = 10 s), not yet the second's (t = 15 s).
        tokio::time::advance(Duration::from_millis(9_900)).await;
        assert!(!passed(&mut second), "fired at the old deadline");
        // `within` wakes at the new one: the paused clock runs on to it and no further.
        assert_eq!(fires_after(second).await, Duration::from_millis(100));
        assert_eq!(timers.spare(), 0, "an elapsed timer is not kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_timeout_on_a_reused_timer_fires_early_enough() {
        let timers = Timers::default();
        spare_one(&timers, Duration::from_secs(60));
        let short = timers.deadline(Duration::from_millis(250));
        assert_eq!(fires_after(short).await, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_that_came_due_while_spare_is_not_reused() {
        let timers = Timers::default();
        spare_one(&timers, Duration::from_secs(1));
        // The spare timer fires at t = 1 s with nobody waiting.
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = timers.deadline(Duration::from_secs(3));
        assert_eq!(fires_after(second).await, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_ready_by_its_deadline_wins_and_keeps_the_timer() {
        let timers = Timers::default();
        let deadline = timers.deadline(Duration::from_secs(1));
        assert_eq!(within(deadline, async { 7 }).await, Some(7));
        assert_eq!(timers.spare(), 1);
        let deadline = timers.deadline(Duration::from_secs(1));
        let slow = tokio::time::sleep(Duration::from_millis(999));
        assert_eq!(within(deadline, slow).await, Some(()));
    }

    #[test]
    fn at_most_spare_timers_are_kept() {
        runtime(true).block_on(async {
            let timers = Timers::default();
            let mut all: Vec<_> = (0..SPARE + 10)
                .map(|_| timers.deadline(Duration::from_secs(5)))
                .collect();
            for deadline in &mut all {
                assert!(!passed(deadline));
            }
            drop(all);
            assert_eq!(timers.spare(), SPARE);
        });
    }

    #[test]
    fn a_timer_of_a_runtime_that_shut_down_is_not_reused() {
        let timers = Timers::default();
        let first = runtime(false);
        first.block_on(async { spare_one(&timers, Duration::from_secs(60)) });
        assert_eq!(timers.spare(), 1);
        drop(first);
        let second = runtime(true);
        // A timer of the dead runtime would panic when polled ("runtime is shutting down").
        second.block_on(async {
            let deadline = timers.deadline(Duration::from_secs(2));
            assert_eq!(fires_after(deadline).await, Duration::from_secs(2));
        });
    }
}
