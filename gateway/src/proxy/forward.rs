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

use std::sync::atomic::Ordering;
use std::time::Instant;

use http::request::Parts;
use http::{Request, Response};

use super::request_body::Payload;
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
    /// The attempt loop. Returns the upstream response, or why there is none.
    pub(super) async fn attempts(
        &self,
        route: &Route,
        cluster: &Cluster,
        parts: Parts,
        body: Payload,
        hash: Option<u64>,
        trace: &mut Trace,
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
            let head = if attempt + 1 == max_attempts {
                parts.take()
            } else {
                parts.clone()
            };
            let Some(head) = head else {
                return Err(last_error);
            };
            let request = Request::from_parts(head, request_body);
            let outcome = self
                .try_once(cluster, &state, index, request, route, trace)
                .await;
            let retryable = attempt + 1 < max_attempts;
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

    /// One attempt: in-flight accounting, per-try timeout, latency (also the trace's upstream
    /// time) and outlier reporting.
    async fn try_once(
        &self,
        cluster: &Cluster,
        state: &ClusterState,
        index: usize,
        request: Request<Body>,
        route: &Route,
        trace: &mut Trace,
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
        let elapsed = started.elapsed();
        cluster.observe_latency(elapsed.as_secs_f64());
        trace.upstream_time = Some(elapsed);
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
