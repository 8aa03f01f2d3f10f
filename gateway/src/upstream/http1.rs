//! HTTP/1.1 to the endpoints: keep-alive connections, one idle list per worker, and
//! `maxConnections`.
//!
//! A connection is driven by the task of the request using it: the request future polls the
//! connection while it waits for the response head, and the response body polls it while it
//! streams; when the body is done the connection goes back to its worker's idle list. An idle
//! connection is polled by nobody: a close by the peer is seen at its next use, and a request
//! that was not sent on such a connection is sent on a fresh one (as hyper-util's pool does), so
//! it never reaches the retry policy.
//!
//! The connection itself is [`wire::Wire`], a hand-written client on [`codec`] (`httparse`, as
//! hyper's) instead of hyper's client connection: see `wire` for why and what it keeps.
//!
//! `maxConnections` caps the HTTP/1.1 connections open to the cluster (in use and idle, every
//! worker's together): a request that finds none idle to its endpoint and none left to open
//! closes an idle one to another endpoint, or waits (within the pool's in-flight bound) for one
//! in use to be released; while any request waits, released connections are closed rather than
//! pooled, so the waiter can open one to its own endpoint. (Envoy would hand a released
//! connection to a waiter for the same endpoint; here it is reopened, which costs a connect only
//! when the cap is reached.)

mod codec;
mod wire;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::tls::Io;
use super::{Upstream, UpstreamError};
use crate::body::{Body, BoxError, IdleTimer, boxed};
use crate::worker;
use crate::worker::outbox::Batched;
use wire::Wire;

/// Most idle connections kept per endpoint; more are closed when released.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// How often, at most, releasing a connection also sweeps the whole idle list.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One HTTP/1.1 connection and its place in the pool.
pub(super) struct Conn {
    pub(super) wire: Wire<Io>,
    /// Requests sent on it so far (`maxRequestsPerConnection`).
    pub(super) sent: u32,
    /// Its place under `maxConnections`, given back when it is closed (dropped).
    pub(super) permit: Option<OwnedSemaphorePermit>,
}

impl Conn {
    fn alive(&self) -> bool {
        self.wire.reusable()
    }
}

/// Idle connections by endpoint, most recently used last. Boxed: a connection's state is a
/// few hundred bytes that would otherwise be copied at every move between pool and request.
/// Aligned to a cache line so two workers' lists never share one.
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Idle {
    pub(super) by_endpoint: super::ByEndpoint<Vec<(Box<Conn>, Instant)>>,
    swept: Option<Instant>,
}

impl Idle {
    /// Drops connections idle for `timeout` or closed by their peer, and endpoints left with
    /// none (an endpoint gone from discovery would otherwise keep its sockets forever). Nobody
    /// polls an idle connection, so each is polled here once with a no-op waker: that reads a
    /// pending end of stream, and the next real poll registers the real waker again.
    pub(super) fn sweep(&mut self, now: Instant, timeout: Duration) {
        let mut cx = Context::from_waker(Waker::noop());
        self.by_endpoint.retain(|_, list| {
            list.retain_mut(|(conn, since)| {
                !conn.wire.poll_closed(&mut cx) && now.duration_since(*since) < timeout
            });
            !list.is_empty()
        });
        self.swept = Some(now);
    }
}

/// `maxConnections`: one permit per open HTTP/1.1 connection.
pub(super) struct ConnectionCap {
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit; while there are any, released connections are closed.
    waiting: AtomicUsize,
}

impl ConnectionCap {
    /// A cap of `n` connections.
    pub(super) fn new(n: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(n)),
            waiting: AtomicUsize::new(0),
        }
    }
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

impl Upstream {
    /// This worker's idle list.
    pub(super) fn slot(&self) -> usize {
        worker::index() % self.idle.len()
    }

    /// The response of `conn`, whose body drives `conn` while it streams and gives it back to
    /// idle list `slot` when read to the end.
    pub(super) fn pooled(
        &self,
        slot: usize,
        addr: SocketAddr,
        conn: Box<Conn>,
        response: Response<()>,
    ) -> Response<Body> {
        let pool = Release {
            idle: Arc::downgrade(&self.idle[slot]),
            addr,
            idle_timeout: self.idle_timeout,
            max_requests: self.max_requests,
            cap: self.cap.clone(),
        };
        response.map(|()| {
            boxed(PooledBody {
                conn: Some(conn),
                pool,
                timer: self.response_idle.map(|idle| IdleTimer::new(idle, None)),
            })
        })
    }

    /// The most recently used idle connection to `addr` that is still open and fresh.
    pub(super) fn checkout(&self, slot: usize, addr: SocketAddr) -> Option<Box<Conn>> {
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

    /// A new HTTP/1.1 connection to `addr`, in `permit`'s place under `maxConnections` (one is
    /// taken when `None`).
    pub(super) async fn connect(
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
        let io = match self.secure(stream).await? {
            Ok(tls) => Io::Tls(Box::new(tls)),
            Err(plain) => Io::Plain(Batched::new(plain)),
        };
        Ok(Box::new(Conn {
            wire: Wire::new(io),
            sent: 0,
            permit,
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
    /// `None` once given up by its idle timer.
    conn: Option<Box<Conn>>,
    pool: Release,
    /// `response_idle_timeout`, when set.
    timer: Option<IdleTimer>,
}

/// The error a response body given up by its idle timer ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data from the upstream within the response idle timeout")]
pub(super) struct ResponseIdle;

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(Some(Err(ResponseIdle.into())));
        };
        let polled = conn.wire.poll_frame(cx);
        match IdleTimer::watch(polled, this.timer.as_mut(), cx) {
            Poll::Ready(Ok(frame)) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            // Given up: the connection is dropped, not pooled (its response is unfinished).
            Poll::Ready(Err(_)) => {
                this.conn = None;
                Poll::Ready(Some(Err(ResponseIdle.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.wire.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.conn
            .as_ref()
            .map_or_else(SizeHint::default, |c| c.wire.size_hint())
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Reusable only when the whole response was read; otherwise the rest of it would be
        // read as the next response's head.
        if let Some(conn) = self.conn.take()
            && conn.alive()
        {
            self.pool.put(conn);
        }
    }
}

#[cfg(test)]
mod tests;
