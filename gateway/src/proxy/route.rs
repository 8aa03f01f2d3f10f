//! A matched route, before any attempt: faults, direct responses, the weighted destination,
//! header hygiene and edits, rewrites, the hash key, the request body, and the route's
//! `timeout` over the attempts ([`super::forward`]); then the response's headers.
//!
//! Weighted destinations are drawn at random per request, as Envoy does, unless the split is
//! sticky: when every destination of weight above 0 hashes on the same `consistentHash` key
//! ([`Route::split_key`]), a request that carries the key is sent by it, so each user stays on
//! one destination while the weights stay. The key's hash, mixed with a seed of the split's own
//! (independent of the endpoint pick in the destination), falls in a bucket of `0..total
//! weight`, and the destination whose running weight sums hold the bucket, in `route[]` order,
//! gets it: a weight change (90/10 → 80/20) moves only the users whose bucket changed hands (a
//! tenth, from the first to the second). That key is read once, after the route's header edits
//! and before the destination's own edits and the rewrite, and it also picks the endpoint. A
//! request without it, or a split whose destinations hash on different keys or on none, is
//! drawn at random, as in Istio.
//!
//! The route's `timeout` (or, when it sets none, the gateway's `--route-timeout`, 60 s) bounds
//! the whole exchange up to the response headers (504); the response body then streams,
//! bounded only by the time between its reads.
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
use super::deadline::within;
use super::headers::{add_forwarded, strip_hop_by_hop};
use super::session::SessionRead;
use super::{Proxy, ProxyError, Trace};
use crate::body::{Body, full};
use crate::config::model::RouteAction;
use crate::hash::mix;
use crate::snapshot::Route;
use crate::snapshot::routes::matched_prefix;
use crate::tls::TlsInfo;

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
        // The request's own hygiene and the route's edits come before the pick: they do not
        // depend on the destination, and a sticky split reads its key after them.
        // The request was routed by its authority (h2's `:authority`, an absolute-form
        // request's host), so that is the Host forwarded, whatever `Host` the client also sent
        // (RFC 9112 §3.2.2: a proxy replaces it). Without one, the client's Host stays.
        if let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(HOST, host);
        }
        strip_hop_by_hop(&mut parts.headers);
        // Before add_forwarded: a TLS terminator in front says https, and the cookie is Secure.
        let tls = parts.extensions.get::<TlsInfo>().is_some();
        let session = self.read_session(route, &parts.headers, tls);
        add_forwarded(
            &mut parts.headers,
            peer.ip(),
            if tls { "https" } else { "http" },
        );
        route.edits.request.apply(&mut parts.headers);

        let weights = dests.iter().map(|d| d.weight);
        // A sticky split: the key (the same for every weighted destination) picks the
        // destination, then the endpoint in it; a request without its key is drawn at random.
        let split_affinity = route
            .split_key
            .as_ref()
            .map(|key| affinity(key, &mut parts.headers, parts.uri.query(), peer.ip()));
        // A valid persistent session pins its destination (its version) and endpoint, whatever
        // the weights, while that endpoint may be sent to.
        let pin = session.as_ref().and_then(SessionRead::pin);
        let pinned = pin.and_then(|pin| self.session_destination(route, pin));
        let picked = match (pinned, split_affinity.as_ref().and_then(Affinity::hash)) {
            (Some(which), _) => Some(which),
            (None, Some(hash)) => pick_by_hash(weights, hash),
            (None, None) => pick_destination(weights),
        };
        let Some(which) = picked else {
            return ProxyError::NoHealthyUpstream.response();
        };
        let cluster = &route.clusters[which];
        trace.labels.cluster = cluster.labels.cluster.clone();
        trace.record("cluster", &*cluster.labels.cluster);

        route.destination_edits[which]
            .request
            .apply(&mut parts.headers);
        rewrite(route, &mut parts);

        // Otherwise the chosen destination's key, read after its edits and the rewrite.
        let keyed = split_affinity.or_else(|| {
            route.hash_keys[which]
                .as_ref()
                .map(|key| affinity(key, &mut parts.headers, parts.uri.query(), peer.ip()))
        });
        let affinity = match keyed {
            Some(a) => {
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
        let pin = pin.filter(|_| pinned == Some(which));
        // The attempts' future (~4 KiB) is made in each arm where it is awaited, not bound to
        // a local first: moving it into the deadline's combinator was a copy per request.
        let hash = affinity.hash();
        let result = match timeout {
            Some(t) => within(
                self.timers.deadline(t),
                self.attempts(route, cluster, parts, body, hash, pin, trace),
            )
            .await
            .unwrap_or(Err(ProxyError::Timeout)),
            None => {
                self.attempts(route, cluster, parts, body, hash, pin, trace)
                    .await
            }
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
        if let Some(read) = session.filter(|_| route.sessions[which].is_some()) {
            let served = trace.labels.endpoint.clone();
            let honoured = trace.session_honoured;
            self.finish_session(read, cluster, &served, honoured, &mut response);
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

/// Seed of the sticky split, so that the destination a key picks is independent of the
/// endpoint it picks in that destination: Maglev looks the raw key hash up (`hash % table
/// size`) and a ring hash places it by its value, so a split on the raw hash's top bits would
/// send the canary's tenth of the hash space to one arc of the canary's ring, a few of its
/// endpoints. XOR-ed into the key hash before SplitMix64's finaliser ([`mix`]). Fixed: every
/// gateway replica must split a key the same way.
const SPLIT_SEED: u64 = 0x5354_4943_4b59_5350; // "STICKYSP"

/// The bucket of a key hash in `0..total`, uniform over keys: the seeded mix scaled by
/// multiply-shift.
fn split_bucket(hash: u64, total: u32) -> u32 {
    let mixed = mix(hash ^ SPLIT_SEED);
    ((u128::from(mixed) * u128::from(total)) >> 64) as u32
}

/// Picks a `route[]` entry by a key hash: the one whose range of running weight sums, in
/// `route[]` order, holds the key's bucket. A key keeps its entry while the weights stay; when
/// they change, only the keys whose bucket changed hands move (90/10 → 80/20: buckets 80..90,
/// a tenth of the keys, from the first entry to the second). `None` when every weight is 0.
fn pick_by_hash(weights: impl Iterator<Item = u32> + Clone, hash: u64) -> Option<usize> {
    let total: u32 = weights.clone().sum();
    if total == 0 {
        return None;
    }
    let mut bucket = split_bucket(hash, total);
    for (i, w) in weights.enumerate() {
        if bucket < w {
            return Some(i);
        }
        bucket -= w;
    }
    None
}

/// Picks a `route[]` entry by weight, at random; `None` when every weight is 0.
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

    /// The key hashes of `n` users, `user-0`…, as the proxy computes them from `x-user`.
    fn user_hashes(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| crate::hash::key_hash(format!("user-{i}").as_bytes()))
            .collect()
    }

    fn by_hash(weights: &[u32], hash: u64) -> Option<usize> {
        pick_by_hash(weights.iter().copied(), hash)
    }

    #[test]
    fn a_key_keeps_its_destination_while_the_weights_stay() {
        for hash in user_hashes(1_000) {
            let first = by_hash(&[50, 50], hash).unwrap();
            for _ in 0..50 {
                assert_eq!(by_hash(&[50, 50], hash), Some(first));
            }
            // Pinned: every replica, and every build of the same route, splits a key alike.
            assert!(split_bucket(hash, 100) < 100);
        }
        assert_eq!(split_bucket(crate::hash::key_hash(b"ricky"), 100), 15);
        assert_eq!(split_bucket(0, 100), 34);
    }

    #[test]
    fn hashed_splits_follow_the_weights() {
        let hashes = user_hashes(10_000);
        let shares = |weights: &[u32]| {
            let mut hits = vec![0u32; weights.len()];
            for &h in &hashes {
                hits[by_hash(weights, h).unwrap()] += 1;
            }
            hits
        };
        let hits = shares(&[50, 50]);
        assert!((4_800..5_200).contains(&hits[0]), "{hits:?}");
        let hits = shares(&[90, 10]);
        assert!((800..1_200).contains(&hits[1]), "{hits:?}");
        let hits = shares(&[20, 30, 50]);
        for (got, want) in hits.iter().zip([2_000u32, 3_000, 5_000]) {
            assert!(got.abs_diff(want) < 250, "{hits:?}");
        }
        // A weight of 0 is never picked; nothing to pick when every weight is 0.
        assert_eq!(shares(&[50, 0, 50])[1], 0);
        assert_eq!(shares(&[0, 100]), [0, 10_000]);
        assert_eq!(by_hash(&[0, 0], hashes[0]), None);
        // Every bucket is reachable: the split is as fine as the weights.
        let mut seen = [false; 100];
        for &h in &hashes {
            seen[split_bucket(h, 100) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_weight_change_moves_only_the_users_whose_bucket_changed_hands() {
        let hashes = user_hashes(10_000);
        let mut moved = 0;
        for &h in &hashes {
            let before = by_hash(&[90, 10], h).unwrap();
            let after = by_hash(&[80, 20], h).unwrap();
            if before != after {
                assert_eq!((before, after), (0, 1), "from the first to the second only");
                moved += 1;
            }
        }
        let fraction = f64::from(moved) / hashes.len() as f64;
        eprintln!("90/10 -> 80/20 moved {moved} of {} users", hashes.len());
        assert!((0.08..=0.12).contains(&fraction), "{fraction}");
        // And back: the same users return, no one else moves.
        for &h in &hashes {
            let there = by_hash(&[80, 20], h).unwrap();
            let back = by_hash(&[90, 10], h).unwrap();
            assert!(there == back || (there, back) == (1, 0));
        }
    }

    #[test]
    fn the_destination_pick_is_independent_of_the_endpoint_pick() {
        // The canary's users (a tenth of the keys) must spread over the canary's endpoints as
        // any users do: their raw hashes (what Maglev and the ring look up) stay uniform. Split
        // on the raw hash's top bits, every one of them would sit in its top tenth.
        let canary: Vec<u64> = user_hashes(10_000)
            .into_iter()
            .filter(|&h| by_hash(&[90, 10], h) == Some(1))
            .collect();
        let top_tenth = canary.iter().filter(|&&h| h >= u64::MAX / 10 * 9).count();
        let share = top_tenth as f64 / canary.len() as f64;
        assert!((0.06..0.14).contains(&share), "{share}");
        let mut per_endpoint = [0usize; 5];
        for h in &canary {
            per_endpoint[(h % 5) as usize] += 1;
        }
        let mean = canary.len() / 5;
        for n in per_endpoint {
            assert!(n.abs_diff(mean) < mean / 5, "{per_endpoint:?}");
        }
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
