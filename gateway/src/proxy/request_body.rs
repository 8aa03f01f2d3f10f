//! The request body on its way upstream: the size limit (413), the replay buffer that makes a
//! request retryable, and the timeouts a stalled client meets (408).
//!
//! A body that makes no progress for `body_timeout` fails, and so does one not fully received
//! `request_timeout` after its headers, when that is set (Envoy's `request_timeout`; nginx has
//! only the first, `client_body_timeout`, 60 s), `body_timeout` after the last progress (the
//! [`IdleTimer`]). A body that keeps moving is never cut. Requests without a body (GET) arm
//! nothing.
//!
//! This module reads the client's body and nothing else: it may not pick an endpoint or send.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{Proxy, ProxyError};
use crate::body::{Body, BoxError, Expired, IdleTimer, boxed};

/// A request body, either kept for retries or streamed once.
pub(super) enum Payload {
    Replayable(Bytes),
    Stream(Body),
}

/// Whether the client's body stalled (or ran past the request deadline): what turns the
/// failure it causes upstream into a 408.
#[derive(Debug, Clone, Default)]
pub(super) struct Stall(Option<Arc<AtomicBool>>);

impl Stall {
    /// The body stalled.
    pub(super) fn happened(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body timeout")]
struct BodyTimeout;

impl Proxy {
    /// Reads what must be read of the request body before the first attempt: all of it when
    /// it fits the replay buffer, else nothing (it streams to the one attempt).
    pub(super) async fn prepare_body(
        &self,
        parts: &Parts,
        body: Incoming,
    ) -> Result<(Payload, Stall), ProxyError> {
        if body.is_end_stream() {
            return Ok((Payload::Replayable(Bytes::new()), Stall::default()));
        }
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > self.settings.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge);
        }
        let stalled = Arc::new(AtomicBool::new(false));
        let stall = Stall(Some(stalled.clone()));
        let timed = Timed {
            body,
            timer: IdleTimer::new(
                self.settings.body_timeout,
                self.settings.request_timeout.map(|t| Instant::now() + t),
            ),
            stalled,
        };
        let limit = usize::try_from(self.settings.max_body_bytes).unwrap_or(usize::MAX);
        if length.is_some_and(|n| n <= self.settings.retry_buffer_bytes) {
            let collected = Limited::new(timed, limit).collect().await.map_err(|e| {
                if e.is::<LengthLimitError>() {
                    ProxyError::BodyTooLarge
                } else if stall.happened() {
                    ProxyError::BodyTimeout
                } else {
                    ProxyError::BadBody
                }
            })?;
            return Ok((Payload::Replayable(collected.to_bytes()), stall));
        }
        Ok((Payload::Stream(boxed(Limited::new(timed, limit))), stall))
    }
}

/// The client's body with its timeouts.
struct Timed {
    body: Incoming,
    timer: IdleTimer,
    stalled: Arc<AtomicBool>,
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match IdleTimer::watch(polled, Some(&mut this.timer), cx) {
            Poll::Ready(Ok(frame)) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Ready(Err(Expired)) => {
                this.stalled.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
