//! The request path, top to bottom, one file per step:
//!
//! 1. [`listener`] accepts (one accept loop for the proxy and the admin listener), and
//!    [`handoff`] gives each connection to the worker thread with the fewest; the worker
//!    serves HTTP/1.1 or h2c on it with the listener's limits.
//! 2. [`Proxy::handle`] (here): the request id, the request's span, the config snapshot, the
//!    route (matched by [`crate::snapshot::routes`]), the request counter.
//! 3. `route`: faults, direct responses, the weighted destination, header edits and
//!    rewrites, the hash key ([`affinity`]), the body, the route's timeout.
//! 4. `forward`: attempts with retries, each picking an endpoint with the cluster's balancer
//!    ([`crate::balancer`]) and sending through the cluster's pool ([`crate::upstream`]).
//! 5. [`access_log`]: one line per request, when asked for.
//!
//! [`headers`] is the header hygiene every step shares, [`error`] the answers the gateway gives
//! itself. This module is the top of the crate: nothing beneath it (snapshot, cluster,
//! upstream, metrics) may import it; only the binary's wiring (`control`, `admin`, `main`) does.

pub mod access_log;
pub mod affinity;
mod deadline;
pub mod error;
mod forward;
pub mod handoff;
pub mod headers;
pub mod listener;
mod request_body;
mod route;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;
use tracing::field::Empty;
use tracing::instrument::Instrumented;

use crate::body::Body;
use crate::metrics::{Metrics, RequestLabels};
use crate::session::SessionKeys;
use crate::snapshot::Snapshot;
use crate::tls::TlsInfo;
use access_log::AccessLog;
pub use error::ProxyError;
use headers::{X_REQUEST_ID, ensure_request_id};

/// Limits and options of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    /// Largest request body accepted (`--max-body-size`); past it: 413.
    pub max_body_bytes: u64,
    /// Request bodies up to this size are kept for retries (`--retry-buffer-size`).
    pub retry_buffer_bytes: u64,
    /// One access log line per request (`--access-log`).
    pub access_log: bool,
    /// A request body that makes no progress this long gets 408 (`--body-timeout`).
    pub body_timeout: Duration,
    /// The whole request (its body) must have arrived this long after its headers, or 408
    /// (`--request-timeout`); `None`: no deadline.
    pub request_timeout: Option<Duration>,
    /// The timeout of a route that sets none, up to the response headers (`--route-timeout`);
    /// `None`: none (Istio's behaviour).
    pub route_timeout: Option<Duration>,
    /// A response body with no data from its replica this long is cut
    /// (`--response-idle-timeout`); `None`: never.
    pub response_idle_timeout: Option<Duration>,
    /// A persistent session unused this long ends, where its host's annotations set no other
    /// (`--session-idle-timeout`); `None`: never.
    pub session_idle_timeout: Option<Duration>,
    /// A persistent session ends this long after it was created, where its host's annotations
    /// set no other (`--session-absolute-timeout`); `None`: never.
    pub session_absolute_timeout: Option<Duration>,
    /// The port `tls.httpsRedirect` sends clients to (`--https-port`); `None`: the Gateway's
    /// HTTPS server's port number.
    pub https_redirect_port: Option<u16>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024 * 1024,
            retry_buffer_bytes: 64 * 1024,
            access_log: false,
            body_timeout: Duration::from_secs(30),
            request_timeout: None,
            route_timeout: Some(Duration::from_secs(60)),
            response_idle_timeout: Some(Duration::from_secs(60)),
            session_idle_timeout: Some(Duration::from_secs(3600)),
            https_redirect_port: None,
            session_absolute_timeout: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

/// A snapshot as one worker's requests hold it: an allocation of that worker's, so taking and
/// dropping it does not write to memory the other workers write too.
#[derive(Debug)]
struct Current(Arc<Snapshot>);

impl std::ops::Deref for Current {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

/// The request handler.
///
/// Each worker thread has its own ([`Proxy::for_worker`]): the reference counts a request
/// takes and drops (the handler, the snapshot, the `-` label) are then counted in memory
/// only its worker writes, rather than in cache lines every worker's CPU keeps taking from the
/// others. For the same reason the lock of `Proxy::current` is only ever taken by one thread.
#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The current snapshot as this handler's requests in flight hold it (none held once they
    /// are done, so a reload's old snapshot is not kept by an idle worker).
    current: Mutex<Weak<Current>>,
    metrics: Arc<Metrics>,
    settings: ProxySettings,
    /// Sign and verify persistent sessions.
    session_keys: Arc<SessionKeys>,
    none: Arc<str>,
    /// The route timeout's timers, reused from request to request ([`deadline`]).
    timers: deadline::Timers,
}

/// What one request leaves behind as it goes: its metric labels, its span, and what the access
/// log says of it.
struct Trace {
    labels: RequestLabels,
    /// `request{id route cluster endpoint attempt}`, at debug level: disabled (and free) unless
    /// `RUST_LOG` asks for debug, when every event of the request carries it.
    span: tracing::Span,
    /// Attempts sent upstream.
    attempts: u32,
    /// From sending the answering attempt to its response headers.
    upstream_time: Option<Duration>,
    /// Whether the request carried the cluster's hash key; `None` when the cluster hashes none.
    hash_key: Option<bool>,
    /// The endpoint that answered is the one the request's persistent session named.
    session_honoured: bool,
}

impl Trace {
    /// Records `value` as the span's `field`. A disabled span (the default level) still looks
    /// the field up by name on `record`, so the lookup is skipped here.
    fn record(&self, field: &str, value: impl tracing::Value) {
        if !self.span.is_disabled() {
            self.span.record(field, value);
        }
    }
}

impl Proxy {
    /// `301` to the https URL of a plain request whose host an HTTP server with
    /// `tls.httpsRedirect` takes (Envoy answers 301 too); `None` otherwise or over TLS.
    fn https_redirect(
        &self,
        snapshot: &Snapshot,
        parts: &http::request::Parts,
    ) -> Option<Response<Body>> {
        if parts.extensions.get::<TlsInfo>().is_some() {
            return None;
        }
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok())?;
        let host = match authority.rsplit_once(':') {
            // Not the colons of an IPv6 literal without a port.
            Some((host, port))
                if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => authority,
        }
        .to_ascii_lowercase();
        let port = snapshot.https_redirect(&host)?;
        let port = self.settings.https_redirect_port.unwrap_or(port);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let location = if port == 443 {
            format!("https://{host}{path}")
        } else {
            format!("https://{host}:{port}{path}")
        };
        let location = http::HeaderValue::from_str(&location).ok()?;
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = http::StatusCode::MOVED_PERMANENTLY;
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
        Some(response)
    }

    /// A handler reading routes from `snapshot`.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        settings: ProxySettings,
    ) -> Self {
        Self {
            current: Mutex::new(Weak::new()),
            snapshot,
            metrics,
            settings,
            session_keys: Arc::new(SessionKeys::random()),
            none: Arc::from("-"),
            timers: deadline::Timers::default(),
        }
    }

    /// The same handler signing and verifying persistent sessions with `keys` (else with a
    /// random key of its own: sessions then hold only within this process).
    #[must_use]
    pub fn with_session_keys(mut self, keys: Arc<SessionKeys>) -> Self {
        self.session_keys = keys;
        self
    }

    /// A handler for one more worker thread, reading the same snapshots.
    pub fn for_worker(&self) -> Self {
        Self::new(self.snapshot.clone(), self.metrics.clone(), self.settings)
            .with_session_keys(self.session_keys.clone())
    }

    /// The current snapshot: the handle this handler's requests in flight share, or a new one
    /// when there is none or a reload published another snapshot. The lock is this worker's
    /// alone, so it is never contended.
    fn current(&self) -> Arc<Current> {
        let published = self.snapshot.load();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = current.upgrade()
            && Arc::ptr_eq(&held.0, &published)
        {
            return held;
        }
        let held = Arc::new(Current(arc_swap::Guard::into_inner(published)));
        *current = Arc::downgrade(&held);
        held
    }

    /// Handles one request from `peer`: what is known at once (request id, span, snapshot)
    /// here, the rest in the future returned, which runs inside the request's span when the
    /// span is on. Returned rather than `async`, so the request's state is built in place once
    /// instead of being copied into one more future per request.
    pub fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Instrumented<impl Future<Output = Response<Body>> + Send + use<>> {
        let proxy = self.clone();
        let snapshot = self.current();
        let (mut parts, body) = request.into_parts();
        let request_id = ensure_request_id(&mut parts.headers);
        let access = self
            .settings
            .access_log
            .then(|| AccessLog::new(&parts, peer, &request_id));
        let mut trace = Trace {
            labels: RequestLabels {
                route: self.none.clone(),
                cluster: self.none.clone(),
                endpoint: self.none.clone(),
                code: 0,
            },
            span: tracing::debug_span!(
                "request",
                id = request_id.to_str().unwrap_or("-"),
                route = Empty,
                cluster = Empty,
                endpoint = Empty,
                attempt = Empty,
            ),
            attempts: 0,
            upstream_time: None,
            hash_key: None,
            session_honoured: false,
        };
        let span = trace.span.clone();
        async move {
            let redirect = snapshot
                .has_https_redirects()
                .then(|| proxy.https_redirect(&snapshot, &parts))
                .flatten();
            let mut response = match (redirect, snapshot.route(&parts)) {
                (Some(redirect), _) => redirect,
                (None, None) => ProxyError::NoRoute.response(),
                (None, Some(route)) => {
                    trace.labels.route = route.label.clone();
                    trace.record("route", &*route.label);
                    proxy.routed(route, parts, body, peer, &mut trace).await
                }
            };
            response
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), request_id);
            trace.labels.code = response.status().as_u16();
            proxy.metrics.count_request(&trace.labels);
            match access {
                Some(access) => access.follow(response, &trace),
                None => response,
            }
        }
        .instrument(span)
    }
}
