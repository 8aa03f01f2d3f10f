//! One request through the gateway: route, faults, header edits, affinity, then attempts
//! against the cluster with retries and timeouts.
//!
//! Retries and stickiness: a connect failure retries on the next consistent-hash choice (the
//! failed endpoint is excluded and the hash perturbed by the attempt number, as Envoy's Maglev
//! does), so a replica that died costs its users one retry, not an error. Any other retryable
//! failure (reset, timeout, retryable status) retries the **same** endpoint once first: its
//! cache is there, and moving a user is not done lightly. Only bodies that fit the replay buffer
//! (`--retry-buffer-size`) are retried; a larger streamed body gets one attempt. Idempotent
//! requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) are also retried after a connection broke
//! before the response headers, as nginx does by default, whatever `retryOn` says.
//!
//! Timeouts: the route's `timeout` bounds the whole exchange up to the response headers, and
//! `perTryTimeout` each attempt; either gives 504. The response body then streams unbounded.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};

use super::affinity::{Affinity, affinity};
use super::headers::{X_REQUEST_ID, add_forwarded, ensure_request_id, strip_hop_by_hop};
use super::upstream::UpstreamError;
use super::{Body, ProxyError, boxed, full};
use crate::balancer::{PickContext, PickError, Reason};
use crate::cluster::{Cluster, ClusterState};
use crate::config::model::{RouteAction, StringMatcher};
use crate::health::Outcome;
use crate::metrics::{Metrics, RequestLabels};
use crate::snapshot::{Route, Snapshot};

/// Limits of the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    /// Largest request body accepted (`--max-body-size`); past it: 413.
    pub max_body_bytes: u64,
    /// Request bodies up to this size are kept for retries (`--retry-buffer-size`).
    pub retry_buffer_bytes: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024 * 1024,
            retry_buffer_bytes: 64 * 1024,
        }
    }
}

/// Most endpoints one request may exclude; more attempts than this reuse the oldest slots.
const MAX_TRIED: usize = 8;

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
/// others.
#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The current snapshot as this handler's requests in flight hold it (none held once they
    /// are done, so a reload's old snapshot is not kept by an idle worker).
    current: Mutex<Weak<Current>>,
    metrics: Arc<Metrics>,
    settings: ProxySettings,
    none: Arc<str>,
}

impl Proxy {
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
            none: Arc::from("-"),
        }
    }

    /// A handler for one more worker thread, reading the same snapshots.
    pub fn for_worker(&self) -> Self {
        Self::new(self.snapshot.clone(), self.metrics.clone(), self.settings)
    }

    /// The current snapshot: the handle this handler's requests in flight share, or a new one
    /// when there is none or a reload published another snapshot.
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

    /// Handles one request from `peer`.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let snapshot = self.current();
        let (mut parts, body) = request.into_parts();
        let request_id = ensure_request_id(&mut parts.headers);
        let mut labels = RequestLabels {
            route: self.none.clone(),
            cluster: self.none.clone(),
            endpoint: self.none.clone(),
            code: 0,
        };
        let mut response = match snapshot.route(&parts) {
            None => ProxyError::NoRoute.response(),
            Some(route) => {
                labels.route = route.label.clone();
                self.routed(route, parts, body, peer, &mut labels).await
            }
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id);
        labels.code = response.status().as_u16();
        self.metrics.count_request(&labels);
        response
    }

    async fn routed(
        &self,
        route: &Route,
        mut parts: Parts,
        body: Incoming,
        peer: SocketAddr,
        labels: &mut RequestLabels,
    ) -> Response<Body> {
        if let Some(fault) = &route.fault {
            if let Some(delay) = fault.delay.as_ref().filter(|d| chance(d.percent)) {
                tokio::time::sleep(delay.fixed).await;
            }
            if let Some(abort) = fault.abort.as_ref().filter(|a| chance(a.percent)) {
                return plain(abort.status, "fault filter abort\n");
            }
        }
        let dests = match &route.action {
            RouteAction::DirectResponse { status, body } => {
                return plain(*status, body.clone().unwrap_or_default());
            }
            RouteAction::Forward(dests) => dests,
        };
        let Some(which) = pick_destination(dests.iter().map(|d| d.weight)) else {
            return ProxyError::NoHealthyUpstream.response();
        };
        let cluster = &route.clusters[which];
        labels.cluster = cluster.labels.cluster.clone();

        // h2 clients send `:authority`, not Host; HTTP/1.1 upstreams need Host.
        if !parts.headers.contains_key(HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(HOST, host);
        }
        strip_hop_by_hop(&mut parts.headers);
        add_forwarded(&mut parts.headers, peer.ip(), "http");
        route.edits.request.apply(&mut parts.headers);
        route.destination_edits[which]
            .request
            .apply(&mut parts.headers);
        rewrite(route, &mut parts);

        let affinity = match &cluster.spec.hash_key {
            Some(key) => {
                let a = affinity(key, &mut parts.headers, parts.uri.query(), peer.ip());
                if a == Affinity::None {
                    self.metrics
                        .hash_key_missing
                        .get_or_create(&cluster.labels)
                        .inc();
                }
                a
            }
            None => Affinity::None,
        };

        let body = match self.prepare_body(&parts, body).await {
            Ok(body) => body,
            Err(e) => return e.response(),
        };
        let timeout = route.timeout.filter(|t| !t.is_zero());
        let attempts = self.attempts(route, cluster, parts, body, affinity.hash(), labels);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .unwrap_or(Err(ProxyError::Timeout)),
            None => attempts.await,
        };
        let mut response = match result {
            Ok(response) => response,
            Err(e) => return e.response(),
        };
        strip_hop_by_hop(response.headers_mut());
        route.edits.response.apply(response.headers_mut());
        route.destination_edits[which]
            .response
            .apply(response.headers_mut());
        if let Affinity::Generated { set_cookie, .. } = affinity {
            response.headers_mut().append(SET_COOKIE, set_cookie);
        }
        response
    }

    async fn prepare_body(&self, parts: &Parts, body: Incoming) -> Result<Payload, ProxyError> {
        if body.is_end_stream() {
            return Ok(Payload::Replayable(Bytes::new()));
        }
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > self.settings.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge);
        }
        let limit = usize::try_from(self.settings.max_body_bytes).unwrap_or(usize::MAX);
        if length.is_some_and(|n| n <= self.settings.retry_buffer_bytes) {
            let collected = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ProxyError::BodyTooLarge
                } else {
                    ProxyError::BadBody
                }
            })?;
            return Ok(Payload::Replayable(collected.to_bytes()));
        }
        Ok(Payload::Stream(boxed(Limited::new(body, limit))))
    }

    /// The attempt loop. Returns the upstream response, or why there is none.
    async fn attempts(
        &self,
        route: &Route,
        cluster: &Cluster,
        parts: Parts,
        body: Payload,
        hash: Option<u64>,
        labels: &mut RequestLabels,
    ) -> Result<Response<Body>, ProxyError> {
        let state = cluster.state();
        let Some(balancer) = state.balancer.as_ref() else {
            return Err(ProxyError::NoHealthyUpstream);
        };
        let max_attempts = match body {
            Payload::Replayable(_) => 1 + route.retries.attempts,
            Payload::Stream(_) => 1,
        };
        let mut body = Some(body);
        // The head is cloned for each attempt that may be followed by another (the client
        // consumes what it sends); the last possible one, and a lone one, take it.
        let idempotent = parts.method.is_idempotent();
        let mut parts = Some(parts);
        let mut tried = [usize::MAX; MAX_TRIED];
        let mut tried_len = 0usize;
        let mut again: Option<usize> = None; // the endpoint to retry next, if fixed
        let mut retried: Option<usize> = None; // the endpoint given its second chance
        let mut last_error = ProxyError::NoHealthyUpstream;
        let random = fastrand::u64(..);

        for attempt in 0..max_attempts {
            let index = match again.take() {
                Some(index) => index,
                None => {
                    let ctx = PickContext::new(random.wrapping_add(u64::from(attempt)))
                        .key_hash(hash)
                        .attempt(attempt)
                        .excluded(&tried[..tried_len.min(MAX_TRIED)])
                        .in_flight(&*state);
                    match balancer.pick(&ctx) {
                        Ok(pick) => {
                            debug_assert!(pick.reason != Reason::Hash || hash.is_some());
                            pick.endpoint
                        }
                        Err(PickError::NoEndpoints) => return Err(ProxyError::NoHealthyUpstream),
                        Err(PickError::AllExcluded) => return Err(last_error),
                    }
                }
            };
            if attempt > 0 {
                self.metrics.retries.get_or_create(&cluster.labels).inc();
            }
            let endpoint = &state.endpoints[index];
            labels.endpoint = endpoint.label.clone();
            let request_body = match body.take() {
                Some(Payload::Replayable(bytes)) => {
                    body = Some(Payload::Replayable(bytes.clone()));
                    full(bytes)
                }
                Some(Payload::Stream(stream)) => stream,
                None => return Err(last_error),
            };
            let head = if attempt + 1 == max_attempts {
                parts.take()
            } else {
                parts.clone()
            };
            let Some(head) = head else {
                return Err(last_error);
            };
            let request = Request::from_parts(head, request_body);
            let outcome = self.try_once(cluster, &state, index, request, route).await;
            let retryable = attempt + 1 < max_attempts;
            match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if retryable && route.retry_on.on_status(status) {
                        last_error = ProxyError::UpstreamReset;
                        again = second_chance(index, &mut retried, &mut tried, &mut tried_len);
                        continue;
                    }
                    return Ok(response);
                }
                Err(UpstreamError::Connect) => {
                    last_error = ProxyError::UpstreamConnect;
                    exclude(index, &mut tried, &mut tried_len);
                    if !(retryable && route.retry_on.connect_failure) {
                        return Err(last_error);
                    }
                }
                Err(UpstreamError::Overflow) => return Err(ProxyError::Overflow),
                // Not processed by the endpoint, so safe to resend whatever the method.
                Err(UpstreamError::Refused) => {
                    last_error = ProxyError::UpstreamRefused;
                    if !(retryable && (route.retry_on.refused_stream || idempotent)) {
                        return Err(last_error);
                    }
                    again = second_chance(index, &mut retried, &mut tried, &mut tried_len);
                }
                Err(e @ (UpstreamError::Reset | UpstreamError::Timeout)) => {
                    last_error = if e == UpstreamError::Timeout {
                        ProxyError::Timeout
                    } else {
                        ProxyError::UpstreamReset
                    };
                    // Like nginx's `proxy_next_upstream error timeout`, an idempotent request is
                    // retried after a broken connection even when `retryOn` does not say
                    // `reset`: it is what a keep-alive connection closed by a replica that is
                    // shutting down looks like, and resending a GET is safe.
                    if !(retryable && (route.retry_on.reset || idempotent)) {
                        return Err(last_error);
                    }
                    again = second_chance(index, &mut retried, &mut tried, &mut tried_len);
                }
            }
        }
        Err(last_error)
    }

    /// One attempt: in-flight accounting, per-try timeout, latency and outlier reporting.
    async fn try_once(
        &self,
        cluster: &Cluster,
        state: &ClusterState,
        index: usize,
        request: Request<Body>,
        route: &Route,
    ) -> Result<Response<Body>, UpstreamError> {
        let endpoint = &state.endpoints[index];
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let send = cluster
            .upstream
            .send(endpoint.addr, &endpoint.authority, request);
        let result = match route.retries.per_try_timeout.filter(|t| !t.is_zero()) {
            Some(t) => tokio::time::timeout(t, send)
                .await
                .unwrap_or(Err(UpstreamError::Timeout)),
            None => send.await,
        };
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        cluster.observe_latency(started.elapsed().as_secs_f64());
        if let Some(policy) = &cluster.spec.outlier {
            let outcome = match &result {
                Ok(response) => Outcome::from_status(response.status().as_u16()),
                Err(UpstreamError::Overflow) => Outcome::Success,
                Err(_) => Outcome::LocalFailure,
            };
            if endpoint.counters.record(outcome, policy).is_some() {
                cluster.report_trip(state, index);
            }
        }
        result
    }
}

/// A request body, either kept for retries or streamed once.
enum Payload {
    Replayable(Bytes),
    Stream(Body),
}

/// A retryable failure that is not a connect failure: the endpoint gets one second chance per
/// request (its cache is there); after that it is excluded and the next choice is tried.
fn second_chance(
    index: usize,
    retried: &mut Option<usize>,
    tried: &mut [usize; MAX_TRIED],
    tried_len: &mut usize,
) -> Option<usize> {
    if retried.is_none() {
        *retried = Some(index);
        Some(index)
    } else {
        exclude(index, tried, tried_len);
        None
    }
}

fn exclude(index: usize, tried: &mut [usize; MAX_TRIED], tried_len: &mut usize) {
    if !tried[..(*tried_len).min(MAX_TRIED)].contains(&index) {
        tried[*tried_len % MAX_TRIED] = index;
        *tried_len += 1;
    }
}

/// Applies `rewrite.uri` (replacing the matched prefix, or the whole path) and
/// `rewrite.authority`.
fn rewrite(route: &Route, parts: &mut Parts) {
    let Some(rw) = &route.rewrite else { return };
    if let Some(authority) = &rw.authority
        && let Ok(value) = HeaderValue::from_str(authority)
    {
        parts.headers.insert(HOST, value);
    }
    let Some(new) = &rw.uri else { return };
    let path = parts.uri.path();
    let prefix = route.matches.iter().find_map(|m| match &m.uri {
        Some(StringMatcher::Prefix(p)) if path.starts_with(p.as_str()) => Some(p.len()),
        _ => None,
    });
    let rest = prefix.map_or("", |len| &path[len..]);
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let rewritten = format!("{new}{rest}{query}");
    if let Ok(pq) = http::uri::PathAndQuery::try_from(rewritten) {
        let mut uri_parts = parts.uri.clone().into_parts();
        uri_parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(uri_parts) {
            parts.uri = uri;
        }
    }
}

fn chance(percent: f64) -> bool {
    percent >= 100.0 || fastrand::f64() * 100.0 < percent
}

/// Picks a `route[]` entry by weight; `None` when every weight is 0.
fn pick_destination(weights: impl Iterator<Item = u32> + Clone) -> Option<usize> {
    let total: u32 = weights.clone().sum();
    let count = weights.clone().count();
    if count == 1 {
        return Some(0);
    }
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u32(0..total);
    for (i, w) in weights.enumerate() {
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

fn plain(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_destinations() {
        assert_eq!(
            pick_destination([0].into_iter()),
            Some(0),
            "a lone route always wins"
        );
        assert_eq!(pick_destination([0, 0].into_iter()), None);
        assert_eq!(pick_destination([0, 100].into_iter()), Some(1));
        let mut hits = [0u32; 2];
        for _ in 0..10_000 {
            hits[pick_destination([20, 80].into_iter()).unwrap()] += 1;
        }
        assert!((1_700..2_300).contains(&hits[0]), "{hits:?}");
    }

    #[test]
    fn one_second_chance_then_excluded() {
        let mut tried = [usize::MAX; MAX_TRIED];
        let mut len = 0;
        let mut retried = None;
        assert_eq!(
            second_chance(3, &mut retried, &mut tried, &mut len),
            Some(3)
        );
        assert_eq!(len, 0, "not excluded yet");
        assert_eq!(second_chance(3, &mut retried, &mut tried, &mut len), None);
        assert_eq!(&tried[..len], &[3]);
        assert_eq!(
            second_chance(5, &mut retried, &mut tried, &mut len),
            None,
            "one per request"
        );
        assert_eq!(&tried[..len], &[3, 5]);
    }
}
