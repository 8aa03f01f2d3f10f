//! Forwarding with retries: the attempts of one request against its cluster, each picking an
//! endpoint with the cluster's balancer and sending through the cluster's pool, with the
//! route's `perTryTimeout`, in-flight and latency accounting, and outlier reporting.
//!
//! Retries and stickiness: a connect failure retries on the next consistent-hash choice (the
//! failed endpoint is excluded and the hash perturbed by the attempt number, as Envoy's Maglev
//! does), so a replica that died costs its users one retry, not an error. Any other retryable
//! failure (reset, timeout, retryable status) retries the **same** endpoint once first: its
//! cache is there, and moving a user is not done lightly. Only bodies that fit the replay buffer
//! (`--retry-buffer-size`) are retried; a larger streamed body gets one attempt. Idempotent
//! requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) are also retried after a connection broke
//! before the response headers, as nginx does by default, whatever `retryOn` says.
//! `perTryTimeout` bounds each attempt up to the response headers (504).
//!
//! Beyond nginx and Envoy: with active health checks, an idempotent request that may be sent
//! again stops waiting on an endpoint the moment the checks take it out of rotation (a replica
//! that hangs), and goes to the next choice, rather than waiting for its timeout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::Response;
use http::request::Parts;

use super::request_body::Payload;
use super::session::Pin;
use super::{Proxy, ProxyError, Trace};
use crate::balancer::{PickContext, PickError, Reason};
use crate::body::{Body, full};
use crate::cluster::{Cluster, ClusterState};
use crate::health::Outcome;
use crate::snapshot::Route;
use crate::upstream::UpstreamError;

/// Most endpoints one request may exclude; more attempts than this reuse the oldest slots.
const MAX_TRIED: usize = 8;

impl Proxy {
    /// The attempt loop. Returns the upstream response, or why there is none. A persistent
    /// session's `pin` is tried first when its endpoint is here and may be sent to; the trace
    /// says whether it answered.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempts(
        &self,
        route: &Route,
        cluster: &Cluster,
        parts: Parts,
        body: Payload,
        hash: Option<u64>,
        pin: Option<Pin>,
        trace: &mut Trace,
    ) -> Result<Response<Body>, ProxyError> {
        let mut state = cluster.state();
        if state.balancer.is_none() {
            return Err(ProxyError::NoHealthyUpstream);
        }
        let pinned = pin.and_then(|pin| {
            let name = &cluster.labels.cluster;
            state.session_endpoint(&self.session_keys, name, pin.key_index, pin.id)
        });
        let max_attempts = match body {
            Payload::Replayable(_) => 1 + route.retries.attempts,
            Payload::Stream(_) => 1,
        };
        let mut body = Some(body);
        // The head stays here: every attempt's upstream reads it (HTTP/1.1 encodes it, HTTP/2
        // copies it), so one that may be followed by another needs no copy of its own.
        let idempotent = parts.method.is_idempotent();
        let mut tried = [usize::MAX; MAX_TRIED];
        let mut tried_len = 0usize;
        let mut again: Option<usize> = pinned; // the endpoint to try next, if fixed
        let mut retried: Option<usize> = None; // the endpoint given its second chance
        let mut last_error = ProxyError::NoHealthyUpstream;
        let random = fastrand::u64(..);
        let mut renewed_at = 0; // the attempt that picked first in the current table

        for attempt in 0..max_attempts {
            let index = match again.take() {
                Some(index) => index,
                None => {
                    // A failed attempt may have taken long (a connect timeout to a replica that
                    // left, a wait on one the checks took out): pick among the endpoints as they
                    // are now. In a new table the hash is looked up afresh (attempt 0, what was
                    // tried still avoided): the user's home in it, where its next requests go,
                    // rather than a retry's perturbed choice in the old one.
                    if attempt > 0 && renew(cluster, &mut state, &mut tried, tried_len) {
                        renewed_at = attempt;
                    }
                    let Some(balancer) = state.balancer.as_ref() else {
                        return Err(last_error);
                    };
                    let ctx = PickContext::new(random.wrapping_add(u64::from(attempt)))
                        .key_hash(hash)
                        .attempt(attempt - renewed_at)
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
            trace.labels.endpoint = endpoint.label().clone();
            trace.attempts = attempt + 1;
            trace.record("endpoint", &**endpoint.label());
            trace.record("attempt", attempt);
            let request_body = match body.take() {
                Some(Payload::Replayable(bytes)) => {
                    body = Some(Payload::Replayable(bytes.clone()));
                    full(bytes)
                }
                Some(Payload::Stream(stream)) => stream,
                None => return Err(last_error),
            };
            let retryable = attempt + 1 < max_attempts;
            // With active checks, an idempotent request that can be sent again does not wait on
            // an endpoint that goes out of rotation meanwhile (a replica that hangs).
            let movable = retryable && idempotent && cluster.spec.active.is_some();
            let outcome = self
                .try_once(
                    cluster,
                    &state,
                    index,
                    &parts,
                    request_body,
                    route,
                    movable,
                    trace,
                )
                .await;
            if let Err(error) = &outcome {
                tracing::debug!(%error, retryable, "attempt failed");
            }
            match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if retryable && route.retry_on.on_status(status) {
                        tracing::debug!(status, "attempt answered a retryable status");
                        last_error = ProxyError::UpstreamReset;
                        again = second_chance(index, &mut retried, &mut tried, &mut tried_len);
                        continue;
                    }
                    trace.session_honoured = pinned.is_some() && pinned == Some(index);
                    state.endpoints[index]
                        .stats
                        .answered(response.headers(), hash);
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
                // Only when `movable`: the next choice at once, as after a connect failure.
                Err(UpstreamError::Ejected) => {
                    last_error = ProxyError::UpstreamReset;
                    exclude(index, &mut tried, &mut tried_len);
                }
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

    /// One attempt: in-flight accounting, per-try timeout, latency (also the trace's upstream
    /// time) and outlier reporting. When `movable`, the wait is given up ([`UpstreamError::
    /// Ejected`]) if the endpoint goes out of rotation before it answers.
    #[allow(clippy::too_many_arguments)]
    async fn try_once(
        &self,
        cluster: &Cluster,
        state: &ClusterState,
        index: usize,
        head: &Parts,
        body: Body,
        route: &Route,
        movable: bool,
        trace: &mut Trace,
    ) -> Result<Response<Body>, UpstreamError> {
        let endpoint = &state.endpoints[index];
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let per_try = route.retries.per_try_timeout.filter(|t| !t.is_zero());
        let result = if movable {
            // Boxed and apart, so the common case's future stays as it was.
            Box::pin(async {
                let send = cluster
                    .upstream
                    .send(endpoint.addr, &endpoint.authority, head, body);
                let bounded = async {
                    match per_try {
                        Some(t) => tokio::time::timeout(t, send)
                            .await
                            .unwrap_or(Err(UpstreamError::Timeout)),
                        None => send.await,
                    }
                };
                tokio::select! {
                    result = bounded => result,
                    () = endpoint.went_out() => Err(UpstreamError::Ejected),
                }
            })
            .await
        } else {
            let send = cluster
                .upstream
                .send(endpoint.addr, &endpoint.authority, head, body);
            match per_try {
                Some(t) => tokio::time::timeout(t, send)
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout)),
                None => send.await,
            }
        };
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        let elapsed = started.elapsed();
        cluster.observe_latency(elapsed.as_secs_f64());
        trace.upstream_time = Some(elapsed);
        if let Some(policy) = &cluster.spec.outlier {
            let outcome = match &result {
                Ok(response) => Outcome::from_status(response.status().as_u16()),
                Err(UpstreamError::Overflow) => Outcome::Success,
                Err(_) => Outcome::LocalFailure,
            };
            if let Some(trip) = endpoint.counters.record(outcome, policy) {
                cluster.report_trip(state, index, trip);
            }
        }
        result
    }
}

/// Moves to the cluster's current state if it changed since `state` was taken, carrying the
/// endpoints already tried over by address (an index of the old state means nothing in the new
/// one; an endpoint gone from it needs no excluding). True when it moved.
fn renew(
    cluster: &Cluster,
    state: &mut Arc<ClusterState>,
    tried: &mut [usize; MAX_TRIED],
    tried_len: usize,
) -> bool {
    let now = cluster.state();
    if Arc::ptr_eq(&now, state) {
        return false;
    }
    carry_over(state, &now, tried, tried_len);
    *state = now;
    true
}

/// Rewrites the indices `tried` holds, of `old`'s endpoints, as indices of `new`'s.
fn carry_over(
    old: &ClusterState,
    new: &ClusterState,
    tried: &mut [usize; MAX_TRIED],
    tried_len: usize,
) {
    for slot in tried.iter_mut().take(tried_len.min(MAX_TRIED)) {
        let addr = old.endpoints.get(*slot).map(|e| e.addr);
        *slot = addr
            .and_then(|addr| new.endpoints.iter().position(|e| e.addr == addr))
            .unwrap_or(usize::MAX);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// After a replica left, a retry picks in the new table, still avoiding what it tried.
    #[test]
    fn endpoints_tried_are_carried_over_to_a_new_state_by_address() {
        use crate::balancer::Policy;
        use crate::cluster::{EndpointState, build_state};
        use crate::maglev::TableSize;
        let at = |i: u8| {
            Arc::new(EndpointState::new(
                std::net::SocketAddr::from(([10, 0, 0, i], 80)),
                1,
            ))
        };
        let (a, b, c) = (at(1), at(2), at(3));
        let policy = Policy::Maglev(TableSize::DEFAULT);
        let old = build_state(&[a.clone(), b.clone(), c.clone()], policy, |_| true);
        let new = build_state(&[a, c], policy, |_| true); // 10.0.0.2 left
        let mut tried = [usize::MAX; MAX_TRIED];
        tried[0] = 1; // 10.0.0.2: gone
        tried[1] = 2; // 10.0.0.3: index 1 now
        carry_over(&old, &new, &mut tried, 2);
        assert_eq!(&tried[..2], &[usize::MAX, 1]);
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
