//! The one body type the gateway sends: every response to a client, every request upstream;
//! and the idle timer of a body that stalls, on either side.
//!
//! A leaf: no import of the crate; the request path, the upstream pool, the cluster's probes and
//! the admin pages all build their bodies here.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep};

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway sends, and of upstream requests.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no bytes.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// Boxes any body whose error converts.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// The instant `idle` after `from`, or `deadline` if sooner.
fn due(idle: Duration, deadline: Option<Instant>, from: Instant) -> Instant {
    let idle = from + idle;
    deadline.map_or(idle, |deadline| deadline.min(idle))
}

/// A body given up by its [`IdleTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// How long a body may go without a frame before it is given up: exactly `idle` after its last
/// frame (to the timer wheel's millisecond), as nginx's `client_body_timeout`. One timer per
/// body, armed at its first wait and moved only when it fires: a frame costs a clock read once
/// the timer is armed, never a timer-wheel update (a timer reset per chunk would cost both). A
/// body that needs no waiting arms nothing and reads no clock.
#[derive(Debug)]
pub struct IdleTimer {
    idle: Duration,
    /// Also give up at this instant, moving or not.
    deadline: Option<Instant>,
    /// Armed at the first wait, then moved each time it fires after progress.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the last frame came, if one came since the timer was armed or last moved.
    moved_at: Option<Instant>,
}

impl IdleTimer {
    /// A timer giving up after `idle` without progress, or at `deadline`.
    pub fn new(idle: Duration, deadline: Option<Instant>) -> Self {
        Self {
            idle,
            deadline,
            timer: None,
            moved_at: None,
        }
    }

    /// A frame came.
    pub fn moved(&mut self) {
        if self.timer.is_some() {
            self.moved_at = Some(Instant::now());
        }
    }

    /// Passes a body's poll through `timer` (none: as it is): anything ready is progress;
    /// nothing for too long is [`Expired`].
    pub fn watch<T>(
        polled: Poll<T>,
        timer: Option<&mut IdleTimer>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, Expired>> {
        match (polled, timer) {
            (Poll::Ready(ready), timer) => {
                if let Some(timer) = timer {
                    timer.moved();
                }
                Poll::Ready(Ok(ready))
            }
            (Poll::Pending, Some(timer)) => {
                if timer.expired(cx) {
                    Poll::Ready(Err(Expired))
                } else {
                    Poll::Pending
                }
            }
            (Poll::Pending, None) => Poll::Pending,
        }
    }

    /// Called when the body has nothing to give (its poll returned `Pending`): whether to give
    /// it up now. Otherwise the timer is registered with `cx`.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer.is_none() {
            let due = due(self.idle, self.deadline, Instant::now());
            self.timer = Some(Box::pin(tokio::time::sleep_until(due)));
        }
        loop {
            let timer = self.timer.as_mut().expect("armed above");
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // Fired: given up unless a frame came less than `idle` ago (and the deadline, if
            // any, is still ahead); then it fires again `idle` after that frame.
            let Some(moved_at) = self.moved_at.take() else {
                return true;
            };
            let due = due(self.idle, self.deadline, moved_at);
            if due <= Instant::now() {
                return true;
            }
            timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Waits as a body with nothing to give does, until the timer gives it up.
    async fn given_up(timer: &mut IdleTimer) {
        poll_fn(|cx| {
            if timer.expired(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Arms the timer as a body's first wait does.
    async fn arm(timer: &mut IdleTimer) {
        assert!(!poll_fn(|cx| Poll::Ready(timer.expired(cx))).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_given_up_idle_after_its_last_frame_not_later() {
        let idle = Duration::from_secs(30);
        let start = Instant::now();
        let mut timer = IdleTimer::new(idle, None);
        arm(&mut timer).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        timer.moved();
        given_up(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(31));
    }

    #[tokio::test(start_paused = true)]
    async fn a_moving_body_is_never_given_up_and_the_deadline_still_holds() {
        let idle = Duration::from_secs(30);
        let start = Instant::now();
        let mut timer = IdleTimer::new(idle, None);
        arm(&mut timer).await;
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(20)).await;
            assert!(!poll_fn(|cx| Poll::Ready(timer.expired(cx))).await);
            timer.moved();
        }
        given_up(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(230));

        let start = Instant::now();
        let mut timer = IdleTimer::new(idle, Some(start + Duration::from_secs(45)));
        arm(&mut timer).await;
        tokio::time::advance(Duration::from_secs(20)).await;
        timer.moved();
        given_up(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(45));
    }
}
