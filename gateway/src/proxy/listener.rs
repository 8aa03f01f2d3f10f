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
//! streamed body is never cut. An HTTP/2 connection is guarded the same way until its first
//! request; from then on it may stay idle (no stream open) for `http2_idle_timeout`, after which
//! it is sent GOAWAY and closed, and keepalive pings find a peer that vanished without a FIN.
//! The drain on shutdown tells every connection to close gracefully through the same guard.
//! An idle plain HTTP/1.1 connection lets go of hyper's buffers and state at the guard's next
//! sweep until its next request arrives ([`keepalive`]): ~2 KiB per idle connection, not ~26.
//!
//! Flooding clients: over `max_connections` a connection is answered 429 and closed at once (a
//! bounded number at a time per event loop, the rest closed unanswered); an HTTP/2 client is
//! held to `http2_max_streams` streams, and one that resets streams faster than they are
//! served (rapid reset) or sends more header bytes than `max_header_bytes` is cut off by h2.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use conn_guard::{IdleGuard, InFlight, Watch};
use http::{Request, Response, Version};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::ProxyError;
use crate::body::{Body, BoxError};
use crate::tls::{TlsAcceptor, TlsInfo};
use crate::worker::outbox::Batched;

mod keepalive;

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
    /// An HTTP/2 connection with no stream open this long is sent GOAWAY and closed (nginx:
    /// 75 s; Envoy: none by default).
    pub http2_idle_timeout: Duration,
    /// An HTTP/2 connection is pinged after this long without a frame, and closed when the
    /// ping is not answered within 20 s (or this, if shorter): a peer gone without a FIN.
    /// `None`: no pings.
    pub http2_keepalive: Option<Duration>,
    /// Streams one HTTP/2 client may have open at once (nginx: 128, HAProxy: 100).
    pub http2_max_streams: u32,
    /// Connections one client address may have open at once (more are answered 429, as over
    /// `max_connections`); `None`: no such limit. The proxy listener's only. Behind a NAT or
    /// Docker's port proxy every client has the same address, so it is off by default.
    pub max_connections_per_client: Option<u32>,
    /// How long in-flight requests may run after shutdown starts.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            http2_idle_timeout: Duration::from_secs(60),
            http2_keepalive: Some(Duration::from_secs(30)),
            http2_max_streams: 100,
            max_connections_per_client: None,
            grace: Duration::from_secs(10),
        }
    }
}

/// Connections answered 429 at once, per event loop; more are closed without an answer.
const MAX_REFUSING: usize = 256;

/// How long a new connection at the limit waits for the place of the idle one closed for it.
pub const EVICT_WITHIN: Duration = Duration::from_millis(200);

/// How long a connection over the limit may take to send the request it is answered 429 to.
const REFUSE_WITHIN: Duration = Duration::from_secs(1);

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
    let guards = [connections.guard()];
    accept_until(
        listener,
        limits.max_connections,
        shutdown,
        &guards,
        |stream, peer, permit| {
            connections.serve(stream, peer, permit, None, || {});
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
/// At the limit, the connection idle the longest among `guards`' (no request in flight) is
/// closed to make room, and the new one waits up to [`EVICT_WITHIN`] for its place: a flood
/// of idle connections cannot lock out a client that has a request to make. Only when every
/// connection has a request in flight is the new one refused.
///
/// A failed accept (EMFILE and friends) is logged and retried after a short pause rather than
/// in a spin.
pub async fn accept_until<D>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    guards: &[IdleGuard],
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
        let mut permit = permits.clone().try_acquire_owned().ok();
        if permit.is_none() && guards.iter().any(IdleGuard::evict_idlest) {
            permit = tokio::time::timeout(EVICT_WITHIN, permits.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok);
        }
        if dispatch(stream, peer, permit).is_break() {
            break;
        }
    }
}

/// The connections of one event loop: each accepted socket served (HTTP/1.1 or h2c) on a task
/// of the loop that calls [`Connections::serve`], all drained together.
pub struct Connections<H> {
    /// Shared: each connection's task holds it for its life.
    builder: Arc<Builders>,
    /// For connections over the limit: one answer, no keep-alive.
    refusing: Builders,
    /// Places among the connections being answered 429.
    refusals: Arc<Semaphore>,
    guard: IdleGuard,
    open: Arc<Open>,
    limits: Limits,
    handler: H,
}

/// The connections of one event loop still open, for the drain to wait on.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    none: Notify,
}

/// Counts a connection among [`Open`] until dropped (also when its task is aborted).
struct Counted(Arc<Open>);

impl Counted {
    fn new(open: &Arc<Open>) -> Self {
        open.count.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

impl Open {
    async fn all_closed(&self) {
        loop {
            let notified = self.none.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<H, F> Connections<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    /// Connections served with `handler` under `limits` (header size and timeout, grace).
    /// The idle guard's sweeper runs on the calling task's runtime.
    pub fn new(limits: Limits, handler: H) -> Self {
        let builder = Builders::new(&limits);
        let mut refusing = builder.clone();
        refusing.http1.keep_alive(false);
        Self {
            builder: Arc::new(builder),
            refusing,
            refusals: Arc::new(Semaphore::new(MAX_REFUSING)),
            guard: IdleGuard::start(limits.header_read_timeout),
            open: Arc::default(),
            limits,
            handler,
        }
    }

    /// Serves `stream` on a task of the current event loop; `closed` runs when it ends. With
    /// no `permit` (the listener's connection limit is reached) its first request is answered
    /// `429 too many connections` and it is closed at once (within `REFUSE_WITHIN` if it
    /// sends none); past `MAX_REFUSING` such connections it is closed unanswered.
    pub fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        tls: Option<Arc<TlsAcceptor>>,
        closed: impl FnOnce() + Send + 'static,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(permit) = permit else {
            if tls.is_some() {
                // No handshake spent on a connection that cannot be served: closed at once.
                drop(stream);
                return closed();
            }
            return self.refuse(stream, closed);
        };
        let watch = self.guard.watch();
        let task = tokio::spawn(self.connection(stream, peer, permit, tls, closed, watch.clone()));
        watch.abort_on_expiry(task.abort_handle());
    }

    /// The task that serves one connection watched by `watch` (see [`Connections::serve`]).
    /// Its size is held by the connection for its whole life, also while idle: the protocols'
    /// connection states are boxed in it.
    fn connection<C: FnOnce() + Send + 'static>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        tls: Option<Arc<TlsAcceptor>>,
        closed: C,
        watch: Arc<Watch>,
    ) -> impl Future<Output = ()> + Send + 'static + use<H, F, C> {
        let handler = self.handler.clone();
        let http2_idle = self.limits.http2_idle_timeout;
        // The service of one connection; `tls`: what its requests learn of the TLS session;
        // `rests`: whether it is served by [`keepalive::serve`], which may rest between
        // requests without a body.
        let service = {
            let watch = watch.clone();
            move |tls: Option<TlsInfo>, rests: bool| {
                let watch = watch.clone();
                let handler = handler.clone();
                service_fn(move |mut req: Request<Incoming>| {
                    if req.version() == Version::HTTP_2 {
                        // Idle between streams for longer than HTTP/1.1, then GOAWAY.
                        watch.close_gracefully_after(http2_idle);
                    } else if rests {
                        keepalive::arm(&watch, &req);
                    }
                    if let Some(tls) = &tls {
                        req.extensions_mut().insert(tls.clone());
                    }
                    let in_flight = watch.request();
                    let handler = handler.clone();
                    // Boxed: hyper keeps a slot the size of the service's future for the whole
                    // connection (~4.9 KiB of the proxy's handler, held by every idle keep-alive
                    // connection); a box is allocated per request and freed with it instead.
                    let answer: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                        let response = handler(req, peer).await;
                        Ok::<_, Infallible>(response.map(|body| {
                            Sending {
                                body,
                                _in_flight: in_flight,
                            }
                            .boxed_unsync()
                        }))
                    });
                    answer
                })
            }
        };
        let builder = self.builder.clone();
        let open = Counted::new(&self.open);
        async move {
            let _permit = permit;
            let _open = open;
            // Also when the idle guard aborts the task (a client that never sends a byte
            // while its protocol is being told, or never finishes its handshake).
            let _closed = OnDrop(Some(closed));
            // Told to close (an idle HTTP/2 connection, the drain): the graceful way, GOAWAY
            // for HTTP/2, after the answer in progress for HTTP/1.1.
            let close = || watch.should_close();
            let register = |cx: &mut Context<'_>| watch.register_waker(cx.waker());
            // The states of HTTP/2 and TLS are boxed (see `connection`'s doc).
            let served: Result<(), BoxError> = match tls {
                None => match sniff(&stream).await {
                    Ok(Protocol::Http1) => {
                        let io = Batched::new(stream);
                        let service = service(None, true);
                        keepalive::serve(&builder.http1, io, service, &watch, || {}).await
                    }
                    Ok(Protocol::Http2) => {
                        let io = TokioIo::new(Batched::new(stream));
                        let service = service(None, false);
                        let protocol = Protocol::Http2;
                        Box::pin(serve_io(&builder, io, protocol, service, register, close)).await
                    }
                    Err(e) => Err(e.into()),
                },
                Some(acceptor) => {
                    Box::pin(async {
                        let done = acceptor.accept(stream).await?;
                        let protocol = if done.h2 {
                            Protocol::Http2
                        } else {
                            Protocol::Http1
                        };
                        let io = TokioIo::new(done.stream);
                        let service = service(Some(done.info), false);
                        serve_io(&builder, io, protocol, service, register, close).await
                    })
                    .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
    }

    /// Answers a connection over the limit `429 too many connections` and closes it.
    fn refuse(&self, stream: TcpStream, closed: impl FnOnce() + Send + 'static) {
        let Ok(refusal) = self.refusals.clone().try_acquire_owned() else {
            drop(stream);
            return closed();
        };
        let service = service_fn(|_req| async {
            Ok::<_, Infallible>(ProxyError::TooManyConnections.response())
        });
        let builder = self.refusing.clone();
        tokio::spawn(async move {
            let _refusal = refusal;
            let answered = async {
                let protocol = sniff(&stream).await;
                let io = TokioIo::new(Batched::new(stream));
                // HTTP/2: its streams are answered 429 until the timeout closes it.
                let _ = match protocol {
                    Ok(Protocol::Http1) => builder.http1.serve_connection(io, service).await,
                    Ok(Protocol::Http2) => builder.http2.serve_connection(io, service).await,
                    Err(_) => Ok(()),
                };
            };
            let _ = tokio::time::timeout(REFUSE_WITHIN, answered).await;
            closed();
        });
    }

    /// The idle guard of these connections (to evict the idlest at the connection limit).
    pub fn guard(&self) -> IdleGuard {
        self.guard.clone()
    }

    /// Lets in-flight requests finish, up to the grace period, closing idle connections.
    pub async fn drain(self) {
        self.guard.close_all();
        tokio::select! {
            () = self.open.all_closed() => {}
            () = tokio::time::sleep(self.limits.grace) => {
                tracing::warn!(grace = ?self.limits.grace, "connections still open after the grace period");
            }
        }
    }
}

/// The HTTP/1.1 and HTTP/2 server settings of `limits`.
#[derive(Clone)]
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            // The idle guard's job (see the module's doc).
            .header_read_timeout(None)
            // hyper's floor is 8 KiB; it answers 431 past the buffer.
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.http2_max_streams)
            // hyper's rapid-reset defence (CVE-2023-44487), stated rather than assumed: a client
            // that opens and resets streams faster than they are served is sent GOAWAY.
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024));
        if let Some(interval) = limits.http2_keepalive {
            http2
                .keep_alive_interval(interval)
                .keep_alive_timeout(interval.min(Duration::from_secs(20)));
        }
        Self { http1, http2 }
    }
}

/// What a new connection speaks: HTTP/1.1, or h2c with prior knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The start of HTTP/2's connection preface (RFC 9113 §3.4): no HTTP/1.1 request starts with
/// it (`PRI` is reserved as a method for this reason), and fewer bytes could start `PUT`,
/// `POST`, `PATCH`, `PROPFIND`.
const PREFACE_START: &[u8; 3] = b"PRI";

/// How often a connection that has sent only `P` or `PR` is looked at again.
const SNIFF_AGAIN: Duration = Duration::from_millis(5);

/// Tells a connection's protocol from its first bytes, peeked, not read: hyper then reads
/// them from the socket itself. (hyper-util's `auto` builder reads them and hands hyper a
/// rewinding reader instead; hyper's read buffer, reserved 8 KiB at a time, then has those
/// 24 bytes in it at its second read and grows to 16 KiB, kept for the connection's life:
/// 8 KiB of every idle HTTP/1.1 connection.) A socket closed before any byte is HTTP/1.1, for
/// hyper to see the end. The idle guard bounds the wait, as for a request head.
async fn sniff(stream: &TcpStream) -> std::io::Result<Protocol> {
    let mut start = [0u8; PREFACE_START.len()];
    loop {
        let n = stream.peek(&mut start).await?;
        if n == 0 || start[..n] != PREFACE_START[..n] {
            return Ok(Protocol::Http1);
        }
        if n == start.len() {
            return Ok(Protocol::Http2);
        }
        // A readable socket stays readable while its bytes are only peeked: look again later.
        tokio::time::sleep(SNIFF_AGAIN).await;
    }
}

/// Serves one connection's `io` in `protocol` with `service` until it ends or, once `close()`
/// says so, gracefully.
async fn serve_io<I, S>(
    builder: &Builders,
    io: I,
    protocol: Protocol,
    service: S,
    register: impl Fn(&mut Context<'_>),
    close: impl Fn() -> bool,
) -> Result<(), BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = UnsyncBoxBody<Bytes, BoxError>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    match protocol {
        Protocol::Http1 => {
            let conn = builder.http1.serve_connection(io, service).with_upgrades();
            until_closed(conn, register, close, |conn| conn.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
        Protocol::Http2 => {
            let conn = builder.http2.serve_connection(io, service);
            until_closed(conn, register, close, |conn| conn.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
    }
}

/// Drives `conn` to its end; once `close()` says so (the connection is told to close: idle
/// HTTP/2, the drain), shuts it down gracefully with `shutdown`. `register` is called on
/// every poll until then, so that the telling wakes the task.
async fn until_closed<C, E>(
    conn: C,
    register: impl Fn(&mut Context<'_>),
    close: impl Fn() -> bool,
    shutdown: impl Fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    std::future::poll_fn(|cx| {
        if !closing {
            register(cx);
            if close() {
                closing = true;
                shutdown(conn.as_mut());
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
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

#[cfg(test)]
mod tests;
