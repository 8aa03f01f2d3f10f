//! The connection pool of one cluster: keep-alive HTTP/1.1 to every endpoint, with the
//! DestinationRule's `connectionPool` settings.
//!
//! One pool per cluster (not per endpoint) so the connect timeout and limits are the cluster's,
//! and endpoints that come and go with discovery simply get or lose idle connections.
//! `connectionPool.tcp.maxConnections` + `http.http1MaxPendingRequests` bound the requests in
//! flight to the cluster; past that the request is refused with 503 at once, like Envoy's
//! circuit breaker overflow, instead of queueing without bound.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use super::Body;

/// The `connectionPool` settings that shape a cluster's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `tcp.connectTimeout` (Istio default 10 s).
    pub connect_timeout: Duration,
    /// `http.idleTimeout`: an idle pooled connection is closed after this (Istio default 1 h).
    pub idle_timeout: Duration,
    /// Requests in flight to the cluster before overflow; `None`: unbounded.
    pub max_in_flight: Option<usize>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_in_flight: None,
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
}

/// A cluster's pool.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    limit: Option<Arc<Semaphore>>,
}

impl Upstream {
    /// A pool with these settings.
    pub fn new(settings: &PoolSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.idle_timeout)
            .build(connector);
        let limit = settings.max_in_flight.map(|n| Arc::new(Semaphore::new(n)));
        Self { client, limit }
    }

    /// Sends `request` to the endpoint at `authority`, keeping the request's path and query.
    /// The request goes upstream as HTTP/1.1 whatever the client spoke.
    pub async fn send(
        &self,
        authority: &Authority,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let _permit = match &self.limit {
            Some(limit) => Some(limit.try_acquire().map_err(|_| UpstreamError::Overflow)?),
            None => None,
        };
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(path);
        *request.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        *request.version_mut() = Version::HTTP_11;
        self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                UpstreamError::Connect
            } else {
                UpstreamError::Reset
            }
        })
    }
}
