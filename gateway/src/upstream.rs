//! The connection pool of one cluster: keep-alive HTTP/1.1 to every endpoint, with the
//! DestinationRule's `connectionPool` settings.
//!
//! One pool per cluster (not per endpoint) so the connect timeout and limits are the cluster's,
//! and endpoints that come and go with discovery simply get or lose idle connections.
//! `connectionPool.tcp.maxConnections` + `http.http1MaxPendingRequests` bound the requests in
//! flight to the cluster; past that the request is refused with 503 at once, like Envoy's
//! circuit breaker overflow, instead of queueing without bound. `maxConnections` also caps the
//! HTTP/1.1 connections open to the cluster (in use and idle, every worker's together): a
//! request that finds none idle to its endpoint and none left to open closes an idle one to
//! another endpoint, or waits (within the bound above) for one in use to be released; while
//! any request waits, released connections are closed rather than pooled, so the waiter can
//! open one to its own endpoint. (Envoy would hand a released connection to a waiter for the
//! same endpoint; here it is reopened, which costs a connect only when the cap is reached.)
//!
//! An upstream connection is driven by the task of the request using it (as nginx's event loop
//! serves both sides of a request), not by a task of its own: hyper's usual client spawns one
//! task per connection and hands requests and responses across through channels, which costs
//! two task wake-ups per request (and cross-thread ones with several workers). Here the request
//! future polls the connection while it waits for the response head, and the response body
//! polls it while it streams; when the body is done the connection goes back to the idle list.
//! An idle connection is polled by nobody: a close by the peer is seen at its next use, and a
//! request that was not sent on such a connection is sent on a fresh one (as hyper-util's pool
//! does), so it never reaches the retry policy.
//!
//! HTTP/2 clusters (`PoolSettings::http2`) share one connection per endpoint and worker, with
//! every request a stream on it, as Envoy does: a task of its own drives it, so the streams of
//! all requests to that endpoint are written and read together ([`http2`]). Requests that find
//! it being made wait for it rather than each making one (a replica that comes back under load
//! gets one connection per worker, not one per request in flight).
//!
//! Each worker thread has its own idle list ([`enter_worker`]): a socket is registered with
//! the event loop of the worker that opened it, so it is only ever reused by that worker;
//! handing it to another would route every readiness event through the first worker's loop.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{HeaderValue, Request, Response, Version};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::batch::Batched;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::headers::X_REQUEST_ID;
use super::{Body, boxed};
use http2::Failure;

/// Most idle connections kept per endpoint; more are closed when released.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// How often, at most, releasing a connection also sweeps the whole idle list.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Idle lists per pool: one per worker thread, set once at start-up ([`set_workers`]).
static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The idle list this thread uses: its worker index (0 on threads that are not workers).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Pools built from now on keep `workers` idle lists, one per worker thread.
pub fn set_workers(workers: usize) {
    WORKERS.store(workers.max(1), Ordering::Relaxed);
}

/// Marks the calling thread as worker `index`: the pools it uses give it its own idle list.
pub fn enter_worker(index: usize) {
    WORKER.with(|worker| worker.set(index));
}

/// Worker threads, as set at start-up (1 until then).
pub fn workers() -> usize {
    WORKERS.load(Ordering::Relaxed)
}

/// The calling thread's worker index (0 on threads that are not workers).
pub fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// The `connectionPool` settings that shape a cluster's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.connectTimeout` (Istio default 10 s).
    pub connect_timeout: Duration,
    /// `http.idleTimeout`: an idle pooled connection is closed after this (Istio default 1 h).
    pub idle_timeout: Duration,
    /// Requests in flight to the cluster before overflow; `None`: unbounded.
    pub max_in_flight: Option<usize>,
    /// HTTP/2 (cleartext, prior knowledge) to the endpoints instead of HTTP/1.1.
    pub http2: bool,
    /// `http.maxRequestsPerConnection`: requests (HTTP/2: streams) a connection carries before
    /// it is retired, closed once its last request is done; `None`: unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// `tcp.maxConnections`: HTTP/1.1 connections open to the cluster at once, in use or idle;
    /// `None`: unlimited. (HTTP/2 opens one per endpoint and worker, uncapped.)
    pub max_connections: Option<usize>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_in_flight: None,
            http2: false,
            max_requests_per_connection: None,
            max_connections: None,
        }
    }
}

/// Why an attempt got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, connect timeout). Nothing was sent,
    /// so any request, whatever its method, may be retried elsewhere.
    #[error("connect failure")]
    Connect,
    /// The connection broke before the response headers.
    #[error("reset before response headers")]
    Reset,
    /// The cluster's in-flight limit is reached.
    #[error("overflow")]
    Overflow,
    /// `perTryTimeout` ran out before the response headers.
    #[error("per-try timeout")]
    Timeout,
    /// An HTTP/2 endpoint refused the stream (`REFUSED_STREAM`, or `GOAWAY` before it): the
    /// request was not processed.
    #[error("refused stream")]
    Refused,
}

/// One HTTP/1.1 connection: the handle to send on and the state machine that does the I/O.
struct Conn {
    sender: http1::SendRequest<Body>,
    /// Requests sent on it so far (`maxRequestsPerConnection`).
    sent: u32,
    /// Its place under `maxConnections`, given back when it is closed (dropped).
    permit: Option<OwnedSemaphorePermit>,
    /// `None` once the connection has ended (peer closed, error). It is dropped then, not
    /// kept: dropping it hands a request still queued in it back (`TrySendError`) and makes
    /// `sender` report closed, where a finished but live one would leave both waiting forever.
    io: Option<http1::Connection<TokioIo<Batched>, Body>>,
}

impl Conn {
    /// Does the connection's pending I/O; drops it when it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(io) = self.io.as_mut()
            && Pin::new(io).poll(cx).is_ready()
        {
            self.io = None;
        }
    }

    fn alive(&self) -> bool {
        self.io.is_some() && !self.sender.is_closed()
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile.
    /// `Err(Some(request))`: the request was not sent (the connection had closed).
    async fn exchange(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, Option<Request<Body>>> {
        let ready = poll_fn(|cx| {
            self.drive(cx);
            self.sender.poll_ready(cx)
        })
        .await;
        if ready.is_err() {
            return Err(Some(request));
        }
        let mut send = std::pin::pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            send.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| e.take_message())
    }
}

/// Idle connections by endpoint, most recently used last. Boxed: a connection's state is a
/// few hundred bytes that would otherwise be copied at every move between pool and request.
/// Aligned to a cache line so two workers' lists never share one.
#[derive(Default)]
#[repr(align(64))]
struct Idle {
    by_endpoint: HashMap<SocketAddr, Vec<(Box<Conn>, Instant)>>,
    swept: Option<Instant>,
}

impl Idle {
    /// Drops connections idle for `timeout` or closed by their peer, and endpoints left with
    /// none (an endpoint gone from discovery would otherwise keep its sockets forever). Nobody
    /// polls an idle connection, so each is polled here once with a no-op waker: that reads a
    /// pending end of stream, and the next real poll registers the real waker again.
    fn sweep(&mut self, now: Instant, timeout: Duration) {
        let mut cx = Context::from_waker(Waker::noop());
        self.by_endpoint.retain(|_, list| {
            list.retain_mut(|(conn, since)| {
                conn.drive(&mut cx);
                conn.alive() && now.duration_since(*since) < timeout
            });
            !list.is_empty()
        });
        self.swept = Some(now);
    }
}

/// A cluster's pool.
#[derive(Clone)]
pub struct Upstream {
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// One idle list per worker thread; a worker only locks its own, so the lock is never
    /// contended on the request path (other threads, e.g. in tests, share list 0).
    /// Each list in an allocation of its own: the reference counts a request takes and drops
    /// (its connection's way back, [`Release`]) stay on its worker's CPU.
    idle: Arc<[Arc<Mutex<Idle>>]>,
    /// HTTP/2 clusters: the shared connection per endpoint, per worker.
    streams: Option<Arc<[Mutex<Streams>]>>,
    limit: Option<Arc<Semaphore>>,
    /// `maxConnections` for HTTP/1.1.
    cap: Option<Arc<ConnectionCap>>,
    /// `maxRequestsPerConnection` (`u32::MAX`: unlimited).
    max_requests: u32,
}

/// `maxConnections`: one permit per open HTTP/1.1 connection.
struct ConnectionCap {
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit; while there are any, released connections are closed.
    waiting: AtomicUsize,
}

/// Counts a request among [`ConnectionCap::waiting`] until dropped (done or cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A worker's HTTP/2 connections, one per endpoint. Aligned like [`Idle`].
#[derive(Default)]
#[repr(align(64))]
struct Streams {
    by_endpoint: HashMap<SocketAddr, Slot>,
}

/// A worker's HTTP/2 connection to one endpoint, or the news of the one being made.
enum Slot {
    Ready(http2::Connection),
    /// Tells whether the connection was made (`Some(false)`: the connect failed); closed if its
    /// maker was cancelled.
    Connecting(watch::Receiver<Option<bool>>),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// A pool with these settings.
    pub fn new(settings: &PoolSettings) -> Self {
        Self {
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.idle_timeout,
            idle: (0..workers()).map(|_| Arc::default()).collect(),
            streams: settings
                .http2
                .then(|| (0..workers()).map(|_| Mutex::default()).collect()),
            limit: settings.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            cap: settings
                .max_connections
                .filter(|_| !settings.http2)
                .map(|n| {
                    Arc::new(ConnectionCap {
                        permits: Arc::new(Semaphore::new(n)),
                        waiting: AtomicUsize::new(0),
                    })
                }),
            max_requests: settings.max_requests_per_connection.unwrap_or(u32::MAX),
        }
    }

    /// Sends `request` to the endpoint at `addr` (whose text is `authority`), keeping the
    /// request's path and query. The request goes upstream as HTTP/1.1 whatever the client
    /// spoke.
    pub async fn send(
        &self,
        addr: SocketAddr,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let _permit = match &self.limit {
            Some(limit) => Some(limit.try_acquire().map_err(|_| UpstreamError::Overflow)?),
            None => None,
        };
        if let Some(streams) = &self.streams {
            // Boxed, so the HTTP/2 states do not enlarge this future, which the HTTP/1.1 path
            // moves around on every request.
            return Box::pin(self.send_h2(streams, addr, authority, request)).await;
        }
        // Origin form on the wire; an HTTP/1.0 client may have sent no Host.
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        *request.version_mut() = Version::HTTP_11;
        if !request.headers().contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(HOST, host);
        }

        let slot = worker() % self.idle.len();
        let (mut conn, mut reused) = match self.checkout(slot, addr) {
            Some(conn) => (conn, true),
            None => (self.connect(addr, None).await?, false),
        };
        loop {
            conn.sent += 1;
            match conn.exchange(request).await {
                Ok(response) => {
                    let pool = Release {
                        idle: Arc::downgrade(&self.idle[slot]),
                        addr,
                        idle_timeout: self.idle_timeout,
                        max_requests: self.max_requests,
                        cap: self.cap.clone(),
                    };
                    return Ok(response.map(|body| {
                        boxed(PooledBody {
                            body,
                            conn: Some(conn),
                            pool,
                            done: false,
                        })
                    }));
                }
                // Closed while idle, before anything was sent: a fresh connection, once.
                Err(Some(unsent)) if reused => {
                    request = unsent;
                    // The closed connection's place under `maxConnections` goes to the new one.
                    let permit = conn.permit.take();
                    drop(conn);
                    conn = self.connect(addr, permit).await?;
                    reused = false;
                }
                Err(_) => return Err(UpstreamError::Reset),
            }
        }
    }

    /// [`Upstream::send`] over HTTP/2: the request becomes a stream on the worker's connection
    /// to `addr` (made on first use, made again once closed). The client's `Host` becomes the
    /// `:authority` (the endpoint's address when there is none).
    async fn send_h2(
        &self,
        streams: &[Mutex<Streams>],
        addr: SocketAddr,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let slot = worker() % streams.len();
        let host = request
            .headers_mut()
            .remove(HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| authority.clone());
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(host)
            .path_and_query(path)
            .build()
            .map_err(|_| UpstreamError::Reset)?;
        *request.version_mut() = Version::HTTP_2;
        // Unique per request: never worth a place in the endpoint's HPACK table.
        if let Some(id) = request.headers_mut().get_mut(&X_REQUEST_ID) {
            id.set_sensitive(true);
        }

        let (mut conn, mut fresh) = self.h2_connection(streams, slot, addr).await?;
        loop {
            match conn.exchange(request).await {
                Ok(response) => return Ok(response),
                // The connection went away while cached (a GOAWAY its task has not finished
                // with yet): forget it, then a fresh one, once.
                Err(Failure::Unsent(unsent)) if !fresh => {
                    request = *unsent;
                    {
                        let mut streams =
                            streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(Slot::Ready(cached)) = streams.by_endpoint.get(&addr)
                            && cached.same(&conn)
                        {
                            streams.by_endpoint.remove(&addr);
                        }
                    }
                    (conn, fresh) = self.h2_connection(streams, slot, addr).await?;
                }
                Err(Failure::Unsent(_) | Failure::Reset) => return Err(UpstreamError::Reset),
                Err(Failure::Refused) => return Err(UpstreamError::Refused),
            }
        }
    }

    /// The worker's HTTP/2 connection to `addr`, and whether it was just made. Made on first
    /// use and again once closed; requests that find it being made wait for it (and share its
    /// connect failure) instead of each making one, as Envoy queues them on a connecting
    /// connection. A connection runs until the peer closes it, an error, no stream has been open on
    /// it for `idleTimeout`, or the pool is dropped with its cluster and its last stream is
    /// done.
    async fn h2_connection(
        &self,
        streams: &[Mutex<Streams>],
        slot: usize,
        addr: SocketAddr,
    ) -> Result<(http2::Connection, bool), UpstreamError> {
        loop {
            let waiting = {
                let mut map = streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                match map.by_endpoint.get(&addr) {
                    Some(Slot::Ready(conn)) if !conn.is_closed() => {
                        let conn = conn.clone();
                        if conn.take_stream(self.max_requests) {
                            map.by_endpoint.remove(&addr); // its last stream: retired
                        }
                        return Ok((conn, false));
                    }
                    // Being made by a request still waiting for it (not cancelled).
                    Some(Slot::Connecting(made)) if made.has_changed().is_ok() => Ok(made.clone()),
                    _ => {
                        let (tell, made) = watch::channel(None);
                        map.by_endpoint.insert(addr, Slot::Connecting(made));
                        Err(tell)
                    }
                }
            };
            let mut made = match waiting {
                Ok(made) => made,
                Err(tell) => {
                    let made = self.connect_h2(addr).await;
                    let mut map = streams[slot].lock().unwrap_or_else(PoisonError::into_inner);
                    // Connections closed by their peers (endpoints gone, too) go here.
                    map.by_endpoint.retain(|_, slot| match slot {
                        Slot::Ready(conn) => !conn.is_closed(),
                        Slot::Connecting(made) => made.has_changed().is_ok(),
                    });
                    match &made {
                        Ok(conn) if !conn.take_stream(self.max_requests) => {
                            map.by_endpoint.insert(addr, Slot::Ready(conn.clone()))
                        }
                        _ => map.by_endpoint.remove(&addr),
                    };
                    drop(map);
                    tell.send_replace(Some(made.is_ok()));
                    return made.map(|conn| (conn, true));
                }
            };
            match made.changed().await {
                // Made: take a stream of it, as above (or make the next, were it spent).
                Ok(()) if *made.borrow() == Some(true) => continue,
                Ok(()) => return Err(UpstreamError::Connect),
                // The request making it was cancelled: make it here.
                Err(_) => continue,
            }
        }
    }

    async fn connect_h2(&self, addr: SocketAddr) -> Result<http2::Connection, UpstreamError> {
        let stream = self.tcp(addr).await?;
        http2::Connection::handshake(stream, self.idle_timeout)
            .await
            .map_err(|_| UpstreamError::Connect)
    }

    /// The most recently used idle connection to `addr` that is still open and fresh.
    fn checkout(&self, slot: usize, addr: SocketAddr) -> Option<Box<Conn>> {
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle[slot]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let list = idle.by_endpoint.get_mut(&addr)?;
            let mut found = None;
            while let Some((conn, since)) = list.pop() {
                if conn.alive() && since.elapsed() < self.idle_timeout {
                    found = Some(conn);
                    break;
                }
                expired.push(conn);
            }
            found
        };
        drop(expired); // closes their sockets outside the lock
        found
    }

    /// A TCP connection to `addr` within the connect timeout, with `TCP_NODELAY`.
    async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Connect)?
            .map_err(|_| UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// A new HTTP/1.1 connection to `addr`, in `permit`'s place under `maxConnections` (one is
    /// taken when `None`).
    async fn connect(
        &self,
        addr: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Box<Conn>, UpstreamError> {
        let permit = match (permit, &self.cap) {
            (Some(permit), _) => Some(permit),
            (None, Some(cap)) => Some(self.connection_permit(cap).await),
            (None, None) => None,
        };
        let stream = self.tcp(addr).await?;
        let (sender, io) = http1::handshake(TokioIo::new(Batched::new(stream)))
            .await
            .map_err(|_| UpstreamError::Connect)?;
        Ok(Box::new(Conn {
            sender,
            sent: 0,
            permit,
            io: Some(io),
        }))
    }

    /// A place under `maxConnections`: a free one, else the place of an idle connection (to
    /// another endpoint: the caller found none to its own), else the first connection in use
    /// that is released (closed for it, see [`Release::put`]).
    async fn connection_permit(&self, cap: &ConnectionCap) -> OwnedSemaphorePermit {
        if let Ok(permit) = cap.permits.clone().try_acquire_owned() {
            return permit;
        }
        // Counted before looking at the idle lists: a connection released from now on is
        // closed for us, not pooled.
        let _waiting = Waiting::enter(&cap.waiting);
        self.close_one_idle();
        cap.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Closes the longest idle connection of any endpoint, in any worker's idle list.
    fn close_one_idle(&self) {
        for list in self.idle.iter() {
            let oldest = {
                let mut idle = list.lock().unwrap_or_else(PoisonError::into_inner);
                idle.by_endpoint
                    .values_mut()
                    .filter(|conns| !conns.is_empty())
                    .min_by_key(|conns| conns[0].1)
                    .map(|conns| conns.remove(0))
            };
            if oldest.is_some() {
                return; // dropped here, outside the lock: its socket closes, its place frees
            }
        }
    }
}

/// Where a connection goes back to; weak, so a dropped cluster's pool is not kept alive.
struct Release {
    /// The idle list of the worker whose event loop the connection is registered with.
    idle: std::sync::Weak<Mutex<Idle>>,
    addr: SocketAddr,
    idle_timeout: Duration,
    max_requests: u32,
    cap: Option<Arc<ConnectionCap>>,
}

impl Release {
    fn put(&self, conn: Box<Conn>) {
        if conn.sent >= self.max_requests {
            return; // retired: dropping it closes it
        }
        if let Some(cap) = &self.cap
            && cap.waiting.load(Ordering::SeqCst) > 0
        {
            return; // a request waits for a place under `maxConnections`: closed, it frees one
        }
        let Some(idle) = self.idle.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY)
        {
            idle.sweep(now, self.idle_timeout);
        }
        let list = idle.by_endpoint.entry(self.addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((conn, now));
        }
    }
}

/// A response body that drives its connection while it streams, and returns the connection
/// to the pool when it was read to the end.
struct PooledBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    pool: Release,
    done: bool,
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Reusable only when the whole response was read; otherwise the rest of it would be
        // read as the next response's head.
        if let Some(conn) = self.conn.take()
            && (self.done || self.body.is_end_stream())
            && conn.alive()
        {
            self.pool.put(conn);
        }
    }
}

mod http2;
#[cfg(test)]
mod tests;
