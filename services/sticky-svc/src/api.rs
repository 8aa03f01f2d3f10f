//! The HTTP API: `/ping` (the workload), `/healthz`, `/readyz` and `/metrics`.
//!
//! | path | answer |
//! |---|---|
//! | `GET /ping` + `x-user` | the article's line, `x-served-by`, `x-cache`; JSON on `Accept: application/json` |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 `ready`, 503 `draining` once shutdown started |
//! | `GET /metrics` | OpenMetrics text |
//!
//! HEAD works wherever GET does. Refusals are described in [`Rejection`].
//!
//! It may not touch sockets or signals: the server (`serve`) hands it requests.

mod elapsed;
mod rejection;
mod reply;
mod service;
mod user;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::cache::{Cache, Outcome};
use crate::limits::{Connections, Limits};
use crate::metrics::{self, CacheLabel, Metrics};
use crate::shutdown::Readiness;

pub use rejection::Rejection;
pub use reply::{Ping, X_CACHE, X_SERVED_BY, wants_json};
pub use service::{App, AppFuture};
pub use user::{MAX_USER_BYTES, UserError, X_USER};

/// The state could not be built from the given settings.
#[derive(Debug, Error)]
pub enum StateError {
    /// The host name cannot be sent as the `x-served-by` header value.
    #[error("host name {0:?} cannot be sent in a header: use visible ASCII characters")]
    HostName(String),
}

/// What the workload is: who it says it is, and what a first call costs.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Reported in the body and in `x-served-by` (the pod or container name).
    pub host: String,
    /// Delay of each user's first call.
    pub first_call_cost: Duration,
    /// Most users whose first call completed cached at once.
    pub cache_capacity: NonZeroUsize,
}

/// Everything a handler reads; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    host: String,
    served_by: HeaderValue,
    cost: Duration,
    cache: Arc<Cache>,
    connections: Arc<Connections>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl AppState {
    /// Builds the cache and the metrics registry for `workload`, with the default [`Limits`].
    pub fn new(workload: Workload, readiness: Readiness) -> Result<Self, StateError> {
        Self::with_limits(workload, Limits::default(), readiness)
    }

    /// Builds the cache, the connection limit and the metrics registry for `workload`.
    pub fn with_limits(
        workload: Workload,
        limits: Limits,
        readiness: Readiness,
    ) -> Result<Self, StateError> {
        let served_by = HeaderValue::from_str(&workload.host)
            .ok()
            .filter(|_| !workload.host.is_empty())
            .ok_or_else(|| StateError::HostName(workload.host.clone()))?;
        let cache = Arc::new(Cache::new(
            workload.cache_capacity,
            limits.max_first_calls,
            limits.abandon_grace,
        ));
        let connections = Arc::new(Connections::new(limits.max_connections));
        let metrics = Arc::new(Metrics::new(Arc::clone(&cache), Arc::clone(&connections)));
        Ok(Self(Arc::new(Shared {
            host: workload.host,
            served_by,
            cost: workload.first_call_cost,
            cache,
            connections,
            metrics,
            readiness,
        })))
    }

    /// The user cache, for inspection.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.0.cache
    }

    /// The connection limit the server asks before serving a connection.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.0.connections
    }

    /// The readiness flag `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.0.readiness
    }

    fn reject(&self, rejection: Rejection, json: bool) -> Response {
        self.0
            .metrics
            .request(CacheLabel::None, rejection.status().as_u16());
        self.refusal(rejection, json)
    }

    /// `rejection`'s response with `x-served-by`, counted nowhere.
    fn refusal(&self, rejection: Rejection, json: bool) -> Response {
        let mut response = rejection.into_response(json);
        response
            .headers_mut()
            .insert(X_SERVED_BY, self.0.served_by.clone());
        response
    }
}

/// The application; [`crate::serve::serve`] runs it, tests drive it with `oneshot`.
pub fn app(state: AppState) -> App {
    App::new(state)
}

/// Every route through axum; [`App`] sends warm-path `GET /ping` around it.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        // After the routes: it applies to the routes registered so far.
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The workload through axum. Takes the whole request: the `HeaderMap` extractor clones.
async fn ping(State(state): State<AppState>, request: Request) -> Response {
    answer(&state, request.headers()).await
}

/// The workload: validate `x-user`, pay or skip the first-call cost, answer.
async fn answer(state: &AppState, headers: &HeaderMap) -> Response {
    let started = Instant::now();
    let json = wants_json(headers);
    let user = match user::user(headers) {
        Ok(user) => user,
        Err(err) => return state.reject(err.into(), json),
    };
    let shared = &state.0;
    let outcome = shared
        .cache
        .get_or_compute(user, || {
            first_call(shared.cost, Arc::clone(&shared.metrics), log_key(user))
        })
        .await;
    let elapsed = started.elapsed();
    let cache = match outcome {
        Ok(Outcome::Hit) => CacheLabel::Hit,
        Ok(Outcome::Miss) => CacheLabel::Miss,
        Err(err) => return state.reject(err.into(), json),
    };
    shared.metrics.request(cache, StatusCode::OK.as_u16());
    debug!(
        user = log_key(user),
        cache = cache.as_str(),
        ?elapsed,
        "ping"
    );
    let ping = Ping {
        host: &shared.host,
        user,
        elapsed,
        cache,
    };
    ping.into_response(&shared.served_by, json)
}

/// The expensive first call of a user: runs on its own task (see [`crate::cache`]).
async fn first_call(cost: Duration, metrics: Arc<Metrics>, user: String) {
    let started = Instant::now();
    // A zero cost skips the timer, whose 1 ms resolution would turn `0s` into about 1 ms.
    if !cost.is_zero() {
        tokio::time::sleep(cost).await;
    }
    let took = started.elapsed();
    metrics.first_call_cost(took);
    info!(user, ?took, "first call paid");
}

/// At most 32 bytes of a user name for logs: enough to recognise, never a 256-byte key.
fn log_key(user: &str) -> String {
    let end = (0..=user.len().min(32))
        .rev()
        .find(|&end| user.is_char_boundary(end))
        .unwrap_or(0);
    user[..end].to_owned()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.0.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.0.metrics.render() {
        Ok(text) => ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        )
            .into_response(),
    }
}

async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    state.reject(Rejection::NotFound, wants_json(request.headers()))
}

async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    state.reject(Rejection::MethodNotAllowed, wants_json(request.headers()))
}
