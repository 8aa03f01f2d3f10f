//! The access log: one line per request (`--access-log`), with the fields nginx's and Envoy's
//! access logs give: time, client, method, path, protocol, status, response bytes, duration,
//! upstream endpoint, upstream time, attempts, route, cluster, request id, and whether the
//! request carried the hash key.
//!
//! A line is a `tracing` event of target `access` at INFO, so it goes where the logs go
//! (stdout), as text or as one JSON object (`LOG_FORMAT=json`). It is written when the response
//! body has been sent (or dropped, when the client went away first), so `bytes` and `duration`
//! are the whole exchange's, as nginx's `$body_bytes_sent` and `$request_time`. The query
//! string is left out: it may carry the user's key. Off by default; when off, the request path
//! does none of this.
//!
//! It may not change the response: it only counts what passes and writes once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, Version};
use http_body::{Body as _, Frame, SizeHint};

use super::Trace;
use crate::body::{Body, BoxError, boxed};

/// The `tracing` target of access log lines (`RUST_LOG=access=off` silences them).
pub const TARGET: &str = "access";

/// What is known of a request when it arrives.
#[derive(Debug)]
pub struct AccessLog {
    started: Instant,
    client: SocketAddr,
    method: Method,
    path: String,
    version: Version,
    id: HeaderValue,
}

impl AccessLog {
    /// Starts the line of the request `parts` from `client`.
    pub(super) fn new(parts: &Parts, client: SocketAddr, id: &HeaderValue) -> Self {
        Self {
            started: Instant::now(),
            client,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            version: parts.version,
            id: id.clone(),
        }
    }

    /// The response, whose body writes the line once it has been sent.
    pub(super) fn follow(self, response: Response<Body>, trace: &Trace) -> Response<Body> {
        let line = Line {
            request: self,
            status: response.status().as_u16(),
            route: trace.labels.route.clone(),
            cluster: trace.labels.cluster.clone(),
            upstream: trace.labels.endpoint.clone(),
            upstream_time: trace.upstream_time,
            attempts: trace.attempts,
            hash_key: trace.hash_key,
        };
        response.map(|body| {
            boxed(Logged {
                body,
                line: Some(line),
                bytes: 0,
            })
        })
    }
}

/// Everything the line says but the bytes sent and the duration.
#[derive(Debug)]
struct Line {
    request: AccessLog,
    status: u16,
    route: Arc<str>,
    cluster: Arc<str>,
    upstream: Arc<str>,
    upstream_time: Option<Duration>,
    attempts: u32,
    hash_key: Option<bool>,
}

impl Line {
    fn write(self, bytes: u64, completed: bool) {
        let request = &self.request;
        let hash_key = match self.hash_key {
            Some(true) => "present",
            Some(false) => "missing",
            None => "-",
        };
        tracing::info!(
            target: TARGET,
            client = %request.client,
            method = %request.method,
            path = %request.path,
            protocol = ?request.version,
            status = self.status,
            bytes,
            completed,
            duration_ms = millis(request.started.elapsed()),
            upstream = &*self.upstream,
            upstream_ms = self.upstream_time.map(millis),
            attempts = self.attempts,
            route = &*self.route,
            cluster = &*self.cluster,
            hash_key,
            id = request.id.to_str().unwrap_or("-"),
            "request"
        );
    }
}

/// Milliseconds, to the microsecond.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// A response body that counts what it sends and writes the access log line at its end.
struct Logged {
    body: Body,
    line: Option<Line>,
    bytes: u64,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = this.line.take() {
                    line.write(this.bytes, true);
                }
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            // A body that was empty from the start is never polled to its end.
            let completed = self.body.is_end_stream();
            line.write(self.bytes, completed);
        }
    }
}
