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

/// A body given up by its [`IdleTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

/// How long a body may go without a frame before it is given up: armed once per `idle`, not per
/// frame (a timer per chunk would cost a clock read and a timer-wheel update each), so a body
/// that last moved just after the timer was armed is given up between one and two `idle`s
/// later, never before one. A body that keeps moving is never given up; one that needs no
/// waiting arms nothing.
#[derive(Debug)]
pub struct IdleTimer {
    idle: Duration,
    /// Also give up at this instant, moving or not.
    deadline: Option<Instant>,
    /// Armed at the first wait, then again each time it fires after progress.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame came since the timer was armed.
    moved: bool,
}

impl IdleTimer {
    /// A timer giving up after `idle` without progress, or at `deadline`.
    pub fn new(idle: Duration, deadline: Option<Instant>) -> Self {
        Self {
            idle,
            deadline,
            timer: None,
            moved: false,
        }
    }

    /// A frame came.
    pub fn moved(&mut self) {
        self.moved = true;
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
        let due = {
            let idle = Instant::now() + self.idle;
            self.deadline.map_or(idle, |deadline| deadline.min(idle))
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        while timer.as_mut().poll(cx).is_ready() {
            let past_deadline = self.deadline.is_some_and(|d| Instant::now() >= d);
            if !self.moved || past_deadline {
                return true;
            }
            self.moved = false;
            timer.as_mut().reset(due);
        }
        false
    }
}
