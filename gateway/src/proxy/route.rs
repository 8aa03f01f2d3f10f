//! A matched route, before any attempt: faults, direct responses, the weighted destination,
//! header hygiene and edits, rewrites, the hash key, the request body, and the route's
//! `timeout` over the attempts ([`super::forward`]); then the response's headers.
//!
//! Weighted destinations are drawn at random per request, as Envoy does. The route's `timeout`
//! (or, when it sets none, the gateway's `--route-timeout`, 60 s) bounds the whole exchange up
//! to the response headers (504); the response body then streams, bounded only by the time
//! between its reads.
//!
//! It may not pick an endpoint or talk to one: that is `forward`'s job.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HOST, HeaderValue, SET_COOKIE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::affinity::{Affinity, affinity};
use super::headers::{add_forwarded, strip_hop_by_hop};
use super::{Proxy, ProxyError, Trace};
use crate::body::{Body, full};
use crate::config::model::RouteAction;
use crate::snapshot::Route;
use crate::snapshot::routes::matched_prefix;

impl Proxy {
    /// Serves a request `route` matched.
    pub(super) async fn routed(
        &self,
        route: &Route,
        mut parts: Parts,
        body: Incoming,
        peer: SocketAddr,
        trace: &mut Trace,
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
        trace.labels.cluster = cluster.labels.cluster.clone();
        trace.record("cluster", &*cluster.labels.cluster);

        // The request was routed by its authority (h2's `:authority`, an absolute-form
        // request's host), so that is the Host forwarded, whatever `Host` the client also sent
        // (RFC 9112 §3.2.2: a proxy replaces it). Without one, the client's Host stays.
        if let Some(authority) = parts.uri.authority()
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

        let affinity = match &route.hash_keys[which] {
            Some(key) => {
                let a = affinity(key, &mut parts.headers, parts.uri.query(), peer.ip());
                trace.hash_key = Some(a != Affinity::None);
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

        let (body, stall) = match self.prepare_body(&parts, body).await {
            Ok(prepared) => prepared,
            Err(e) => return e.response(),
        };
        // The route's own timeout (`0s`: none), else the gateway's default (unlike Istio, which
        // has none: a hung replica would hold its users' requests for ever).
        let timeout = route
            .timeout
            .or(self.settings.route_timeout)
            .filter(|t| !t.is_zero());
        let attempts = self.attempts(route, cluster, parts, body, affinity.hash(), trace);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .unwrap_or(Err(ProxyError::Timeout)),
            None => attempts.await,
        };
        let mut response = match result {
            Ok(response) => response,
            // The client's body stalled while it streamed upstream: that is why it failed.
            Err(_) if stall.happened() => return ProxyError::BodyTimeout.response(),
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
    let matched = matched_prefix(&route.matches, path);
    let Some(pq) = rewritten(new, path, matched, parts.uri.query()) else {
        return;
    };
    let mut uri_parts = parts.uri.clone().into_parts();
    uri_parts.path_and_query = Some(pq);
    if let Ok(uri) = http::Uri::from_parts(uri_parts) {
        parts.uri = uri;
    }
}

/// `path` with its first `matched` bytes (the whole path when `None`) replaced by `new`, the
/// query kept; `None` when that is not a valid path (left as it was, then).
fn rewritten(
    new: &str,
    path: &str,
    matched: Option<usize>,
    query: Option<&str>,
) -> Option<PathAndQuery> {
    let rest = matched.and_then(|len| path.get(len..)).unwrap_or("");
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    PathAndQuery::try_from(format!("{new}{rest}{query}")).ok()
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
    fn rewrite_replaces_the_matched_prefix_and_keeps_the_query() {
        let pq = rewritten("/v2", "/API/users", Some(4), Some("a=1")).unwrap();
        assert_eq!(pq.as_str(), "/v2/users?a=1");
        assert_eq!(rewritten("/", "/x", None, None).unwrap().as_str(), "/");
        // A length that is not a character boundary (it cannot come from a match) is ignored
        // rather than a panic.
        assert_eq!(
            rewritten("/v2", "/\u{e9}", Some(2), None).unwrap().as_str(),
            "/v2"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever the path, prefix and case rule: no panic, and a matched prefix is replaced
        /// by exactly the rewrite, the rest of the path kept byte for byte.
        #[test]
        fn rewrite_never_panics(
            path in "/[a-zA-Z0-9\u{e9}\u{c9}\u{1f600}%/._~-]{0,24}",
            prefix in "/[a-zA-Z\u{e9}\u{c9}/]{0,6}",
            new in "/[a-z0-9/]{0,8}",
            ignore_case: bool,
        ) {
            let matched = crate::snapshot::routes::prefix_len(&prefix, &path, ignore_case);
            if let (Some(pq), Some(len)) = (rewritten(&new, &path, matched, None), matched) {
                // Only where http takes the expected path as it is.
                let want = format!("{new}{}", &path[len..]);
                if PathAndQuery::try_from(want.as_str()).is_ok() {
                    proptest::prop_assert_eq!(pq.path(), want);
                }
            }
        }
    }
}
