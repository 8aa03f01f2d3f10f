//! Listening: the one accept loop of the proxy and admin listeners ([`accept_until`]), and the
//! connections of one event loop ([`Connections`]): HTTP/1.1 and h2c on one port, bounded
//! connections and header sizes, graceful drain on shutdown. [`serve`] puts the two together
//! on the calling task's event loop (the admin listener); the proxy's accept loop hands each
//! connection to a worker thread instead ([`super::handoff`]).
//!
//! Slow and idle clients: a connection with no request in flight for `header_read_timeout` is
//! closed by the idle guard ([`conn_guard`], shared with sticky-svc), which bounds a trickled
//! request head and an idle HTTP/1.1 keep-alive connection as hyper's `header_read_timeout`
//! does, without arming a timer per request (~1 500 instructions of a ~41 000-instruction
//! proxied request). A request counts as in flight until its response body is sent, so a long
//! streamed body is never cut. An HTTP/2 client's connection is guarded until its first
//! request, then left open between requests, as before (hyper's timeout is HTTP/1-only).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use conn_guard::{IdleGuard, InFlight};
use http::{Request, Response, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProxyError;
use crate::body::{Body, BoxError};
use crate::worker::outbox::Batched;

/// What one listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is answered `429 too many connections` and closed.
    pub max_connections: usize,
    /// Bytes of request line + headers (HTTP/1.1) or header list (h2); past it: 431.
    pub max_header_bytes: usize,
    /// A connection with no request in flight this long (a client that has not sent its
    /// headers, an idle HTTP/1.1 keep-alive connection) is closed.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` with `handler` until `shutdown` resolves, then stops accepting and waits
/// up to `limits.grace` for open connections to finish their requests.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let connections = Connections::new(limits, handler);
    accept_until(
        listener,
        limits.max_connections,
        shutdown,
        |stream, peer, permit| {
            connections.serve(stream, peer, permit, || {});
            ControlFlow::Continue(())
        },
    )
    .await;
    connections.drain().await;
}

/// Accepts connections on `listener` until `shutdown` resolves or `dispatch` says to stop,
/// giving each to `dispatch` with its place among `max_connections` (`None` past the limit:
/// the connection is to be answered `429` and closed). Closes the listener when it returns.
///
/// A failed accept (EMFILE and friends) is logged and retried after a short pause rather than
/// in a spin.
pub async fn accept_until<D>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    mut dispatch: D,
) where
    D: FnMut(TcpStream, SocketAddr, Option<OwnedSemaphorePermit>) -> ControlFlow<()>,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = permits.clone().try_acquire_owned().ok();
        if dispatch(stream, peer, permit).is_break() {
            break;
        }
    }
}

/// The connections of one event loop: each accepted socket served (HTTP/1.1 or h2c) on a task
/// of the loop that calls [`Connections::serve`], all drained together.
pub struct Connections<H> {
    builder: auto::Builder<TokioExecutor>,
    graceful: GracefulShutdown,
    guard: IdleGuard,
    grace: Duration,
    handler: H,
}

impl<H, F> Connections<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    /// Connections served with `handler` under `limits` (header size and timeout, grace).
    /// The idle guard's sweeper runs on the calling task's runtime.
    pub fn new(limits: Limits, handler: H) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The idle guard's job (see the module's doc).
            .header_read_timeout(None)
            // hyper's floor is 8 KiB; it answers 431 past the buffer.
            .max_buf_size(limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Self {
            builder,
            graceful: GracefulShutdown::new(),
            guard: IdleGuard::start(limits.header_read_timeout),
            grace: limits.grace,
            handler,
        }
    }

    /// Serves `stream` on a task of the current event loop; `closed` runs when it ends. With
    /// no `permit` (the listener's connection limit is reached) every request on it is
    /// answered `429 too many connections` and it is closed within 5 s.
    pub fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        closed: impl FnOnce() + Send + 'static,
    ) {
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Batched::new(stream));
        match permit {
            Some(permit) => {
                let handler = self.handler.clone();
                let watch = self.guard.watch();
                let service = {
                    let watch = watch.clone();
                    service_fn(move |req: Request<Incoming>| {
                        let in_flight = if req.version() == Version::HTTP_2 {
                            watch.keep_open();
                            None
                        } else {
                            Some(watch.request())
                        };
                        let handler = handler.clone();
                        async move {
                            let response = handler(req, peer).await;
                            Ok::<_, Infallible>(match in_flight {
                                Some(in_flight) => response.map(|body| {
                                    Sending {
                                        body,
                                        _in_flight: in_flight,
                                    }
                                    .boxed_unsync()
                                }),
                                None => response,
                            })
                        }
                    })
                };
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                let conn = self.graceful.watch(conn);
                let task = tokio::spawn(async move {
                    let _permit = permit;
                    // Also when the idle guard aborts the task.
                    let _closed = OnDrop(Some(closed));
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
                watch.abort_on_expiry(task.abort_handle());
            }
            None => {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(ProxyError::TooManyConnections.response())
                });
                let conn = self.builder.serve_connection(io, service).into_owned();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                    closed();
                });
            }
        }
    }

    /// Lets in-flight requests finish, up to the grace period, closing idle connections.
    pub async fn drain(self) {
        tokio::select! {
            () = self.graceful.shutdown() => {}
            () = tokio::time::sleep(self.grace) => {
                tracing::warn!(grace = ?self.grace, "connections still open after the grace period");
            }
        }
    }
}

/// A response body that keeps its request in flight for the idle guard until it has been sent
/// (or dropped), so the guard never closes a connection in the middle of a streamed body.
struct Sending {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Runs its function when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
