//! The upstream connection pool of one cluster: HTTP/1.1 (`http1`) or HTTP/2 (`http2`) to
//! every endpoint, with the DestinationRule's `connectionPool` settings.
//!
//! One pool per cluster (not per endpoint) so the connect timeout and limits are the cluster's,
//! and endpoints that come and go with discovery simply get or lose connections.
//! `connectionPool.tcp.maxConnections` + `http.http1MaxPendingRequests` bound the requests in
//! flight to the cluster; past that the request is refused with 503 at once, like Envoy's
//! circuit breaker overflow, instead of queueing without bound.
//!
//! An upstream connection is driven by the task of the request using it (as nginx's event loop
//! serves both sides of a request), not by a task of its own: hyper's usual client spawns one
//! task per connection and hands requests and responses across through channels, which costs
//! two task wake-ups per request (and cross-thread ones with several workers). HTTP/2 is the
//! exception: its connection's frame I/O runs on a task of its own, shared by every stream.
//!
//! Each worker thread has its own idle connections ([`crate::worker::index`]): a socket is
//! registered with the event loop of the worker that opened it, so it is only ever reused by
//! that worker; handing it to another would route every readiness event through the first
//! worker's loop.
//!
//! Beneath the request path: this module knows endpoints by address and sends what it is
//! given. It may not import the request path (`crate::proxy`), the cluster or the snapshot.

mod http1;
mod http2;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::request::Parts;
use http::uri::Authority;
use http::{Request, Response};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::body::Body;
use crate::config::model::ClientTlsSettings;
use crate::worker;
use http1::{ConnectionCap, Idle};
use http2::Streams;

/// A pool's map by endpoint address, looked up as a request takes a connection and as it gives
/// it back: hashed with foldhash rather than std's SipHash (~460 instructions per request
/// less). The keys are the gateway's own endpoints, not a client's input, so SipHash's
/// resistance to chosen keys buys nothing here.
type ByEndpoint<V> = std::collections::HashMap<SocketAddr, V, foldhash::fast::RandomState>;

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
    /// A response body with no data from the endpoint this long is given up (its connection,
    /// or HTTP/2 stream, closed; the client's too, mid-body): the gateway's
    /// `--response-idle-timeout`, nginx's `proxy_read_timeout`. `None`: never.
    pub response_idle_timeout: Option<Duration>,
    /// TLS to the endpoints (`trafficPolicy.tls` `SIMPLE`); `None`: cleartext.
    pub tls: Option<UpstreamTls>,
}

/// TLS to a cluster's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The DestinationRule's settings.
    pub settings: ClientTlsSettings,
    /// The destination's host: the SNI name and the name checked when `sni` is unset.
    pub host: String,
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
            response_idle_timeout: None,
            tls: None,
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
    /// The endpoint went out of rotation (failed its active checks, ejected) while the request
    /// waited for its answer; the wait was given up.
    #[error("endpoint went out of rotation")]
    Ejected,
}

/// A cluster's pool.
#[derive(Clone)]
pub struct Upstream {
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// One idle list per worker thread; a worker only locks its own, so the lock is never
    /// contended on the request path (other threads, e.g. in tests, share list 0).
    /// Each list in an allocation of its own: the reference counts a request takes and drops
    /// (its connection's way back) stay on its worker's CPU.
    idle: Arc<[Arc<Mutex<Idle>>]>,
    /// HTTP/2 clusters: the shared connection per endpoint, per worker.
    streams: Option<Arc<[Mutex<Streams>]>>,
    limit: Option<Arc<Semaphore>>,
    /// `maxConnections` for HTTP/1.1.
    cap: Option<Arc<ConnectionCap>>,
    /// `maxRequestsPerConnection` (`u32::MAX`: unlimited).
    max_requests: u32,
    /// See [`PoolSettings::response_idle_timeout`].
    response_idle: Option<Duration>,
    /// TLS to the endpoints, or why its config could not be built (every connect then fails).
    tls: Option<Arc<Result<tls::Connector, String>>>,
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
            idle: (0..worker::count()).map(|_| Arc::default()).collect(),
            streams: settings
                .http2
                .then(|| (0..worker::count()).map(|_| Mutex::default()).collect()),
            limit: settings.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            cap: settings
                .max_connections
                .filter(|_| !settings.http2)
                .map(|n| Arc::new(ConnectionCap::new(n))),
            max_requests: settings.max_requests_per_connection.unwrap_or(u32::MAX),
            response_idle: settings.response_idle_timeout,
            tls: settings.tls.as_ref().map(|t| {
                let connector = tls::Connector::new(&t.settings, &t.host, settings.http2);
                if let Err(error) = &connector {
                    tracing::error!(host = %t.host, %error, "upstream TLS cannot be set up: every connection to this cluster fails");
                }
                Arc::new(connector)
            }),
        }
    }

    /// Sends the request `head` + `body` to the endpoint at `addr` (whose text is `authority`,
    /// the `Host` when the head has none), keeping the request's path and query. The request
    /// goes upstream as the cluster's protocol, whatever the client spoke. Over HTTP/1.1 the
    /// head is only read, so a caller that may send it again keeps it without a copy.
    pub async fn send(
        &self,
        addr: SocketAddr,
        authority: &Authority,
        head: &Parts,
        mut body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let _permit = match &self.limit {
            Some(limit) => Some(limit.try_acquire().map_err(|_| UpstreamError::Overflow)?),
            None => None,
        };
        if let Some(streams) = &self.streams {
            // Boxed, so the HTTP/2 states do not enlarge this future, which the HTTP/1.1 path
            // moves around on every request. HTTP/2 takes the request itself: a copy of the head.
            let request = Request::from_parts(head.clone(), body);
            return Box::pin(self.send_h2(streams, addr, authority, request)).await;
        }
        // HTTP/1.1, written out here rather than in an `http1` function of its own: awaiting
        // one would copy its state into this future's on every request (measured: ~160
        // instructions of 38 000).
        let host = Some(authority.as_str());
        let slot = self.slot();
        let (mut conn, mut reused) = match self.checkout(slot, addr) {
            Some(conn) => (conn, true),
            // Boxed: making a connection is the rare case, and its state (~1.4 KiB) would
            // otherwise widen this future, copied whole on every request.
            None => (Box::pin(self.connect(addr, None)).await?, false),
        };
        loop {
            conn.sent += 1;
            match conn.wire.exchange(head, host, body).await {
                Ok(response) => return Ok(self.pooled(slot, addr, conn, response)),
                // Closed while idle, before anything was sent: a fresh connection, once.
                Err(Some(unsent)) if reused => {
                    body = unsent;
                    // The closed connection's place under `maxConnections` goes to the new one.
                    let permit = conn.permit.take();
                    drop(conn);
                    conn = Box::pin(self.connect(addr, permit)).await?;
                    reused = false;
                }
                Err(_) => return Err(UpstreamError::Reset),
            }
        }
    }

    /// A TLS handshake on `stream` within the connect timeout, when the cluster speaks TLS.
    /// A failed one is a connect failure: nothing was sent.
    async fn secure(
        &self,
        stream: TcpStream,
    ) -> Result<Result<tokio_rustls::client::TlsStream<TcpStream>, TcpStream>, UpstreamError> {
        let Some(tls) = &self.tls else {
            return Ok(Err(stream));
        };
        let connector = tls.as_ref().as_ref().map_err(|_| UpstreamError::Connect)?;
        match tokio::time::timeout(self.connect_timeout, connector.connect(stream)).await {
            Ok(Ok(stream)) => Ok(Ok(stream)),
            Ok(Err(error)) => {
                tracing::debug!(%error, "upstream TLS handshake failed");
                Err(UpstreamError::Connect)
            }
            Err(_) => Err(UpstreamError::Connect),
        }
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
}

#[cfg(test)]
mod tests;
