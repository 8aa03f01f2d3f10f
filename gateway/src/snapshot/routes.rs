//! Matching a request to a VirtualService route, as Istio does it at a gateway.
//!
//! - A VirtualService is a candidate when one of its `hosts` matches the request's host (exact,
//!   `*.suffix` wildcard, `*`, or a short Kubernetes name such as `sticky-svc` or
//!   `sticky-svc.default` for `sticky-svc.default.svc.cluster.local`, as a sidecar accepts).
//!   Candidates are tried most specific host first: exact, then the longest wildcard, then `*`.
//! - Within a VirtualService, `http[]` routes are tried in order; the first whose `match[]` holds
//!   (any one entry, every condition of it) wins. A route with no `match` matches everything.
//!
//! Matching only: it may not change the request.

use std::sync::Arc;

use http::request::Parts;

use super::Route;
use crate::config::model::{RequestMatch, StringMatcher};

/// The routes of one VirtualService, with the hosts they serve.
#[derive(Debug)]
pub struct VirtualRoutes {
    /// `namespace/name`.
    pub name: Arc<str>,
    /// `hosts`, as in the model (lowercase, fully qualified, `*` kept).
    pub hosts: Vec<String>,
    /// `http[]`.
    pub routes: Vec<Route>,
}

/// How well a VirtualService host matches; higher is more specific.
fn host_score(pattern: &str, host: &str) -> Option<usize> {
    if pattern == "*" {
        return Some(0);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        // `*.example.com` matches `a.example.com`, not `example.com`.
        let matches = host.len() > suffix.len()
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
        return matches.then_some(suffix.len());
    }
    if pattern.eq_ignore_ascii_case(host) {
        return Some(usize::MAX);
    }
    // A short name of a cluster-local service: `svc`, `svc.ns`, `svc.ns.svc`.
    let short = pattern.len() > host.len()
        && pattern.as_bytes()[host.len()] == b'.'
        && pattern[..host.len()].eq_ignore_ascii_case(host)
        && pattern.contains(".svc.");
    short.then_some(usize::MAX - 1)
}

/// The request's `:authority` (h2) or `Host` header (HTTP/1.1), port included.
fn authority(parts: &Parts) -> &str {
    parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// The host a request is for: its authority without the port.
pub fn request_host(parts: &Parts) -> &str {
    strip_port(authority(parts))
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [::1]:8080
        return authority.split(']').next().map_or(authority, |h| &h[1..]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Finds the route for a request among `services` (in config order): the first matching route
/// of the most specific VirtualService that has one; ties go to the earlier VirtualService.
pub fn find<'a>(services: &'a [VirtualRoutes], parts: &Parts) -> Option<&'a Route> {
    let host = request_host(parts);
    let mut best: Option<(usize, &Route)> = None;
    for vs in services {
        let Some(score) = vs.hosts.iter().filter_map(|h| host_score(h, host)).max() else {
            continue;
        };
        if best.is_some_and(|(s, _)| s >= score) {
            continue;
        }
        if let Some(route) = vs.routes.iter().find(|r| route_matches(&r.matches, parts)) {
            best = Some((score, route));
        }
    }
    best.map(|(_, route)| route)
}

fn route_matches(matches: &[RequestMatch], parts: &Parts) -> bool {
    matches.is_empty() || matches.iter().any(|m| request_matches(m, parts))
}

/// Whether one `match[]` entry holds for the request.
pub fn request_matches(m: &RequestMatch, parts: &Parts) -> bool {
    if let Some(uri) = &m.uri
        && !string_matches(uri, parts.uri.path(), m.ignore_uri_case)
    {
        return false;
    }
    if let Some(method) = &m.method
        && !string_matches(method, parts.method.as_str(), false)
    {
        return false;
    }
    if let Some(matcher) = &m.authority
        && !string_matches(matcher, authority(parts), false)
    {
        return false;
    }
    for (name, matcher) in &m.headers {
        match header_value(parts, name) {
            Some(value) if string_matches(matcher, value, false) => {}
            _ => return false,
        }
    }
    for (name, matcher) in &m.without_headers {
        if header_value(parts, name).is_some_and(|value| string_matches(matcher, value, false)) {
            return false;
        }
    }
    for (name, matcher) in &m.query_params {
        match query_value(parts.uri.query().unwrap_or(""), name) {
            Some(value) if string_matches(matcher, value, false) => {}
            _ => return false,
        }
    }
    true
}

fn header_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The raw (not percent-decoded) value of the first `name=` in a query string.
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

fn string_matches(matcher: &StringMatcher, value: &str, ignore_case: bool) -> bool {
    match matcher {
        StringMatcher::Exact(s) if ignore_case => s.eq_ignore_ascii_case(value),
        StringMatcher::Exact(s) => s == value,
        StringMatcher::Prefix(p) => prefix_len(p, value, ignore_case).is_some(),
        StringMatcher::Regex(re) => re.is_match(value),
        StringMatcher::Present => true,
    }
}

/// How many bytes of `value` the prefix `prefix` covers, if it is one (ASCII letters in either
/// case when `ignore_case`, as Envoy's `ignore_case`). Compared as bytes: the end of a matched
/// prefix is always where `prefix` itself ends, so slicing `value` there is safe whatever
/// multi-byte characters either holds.
pub fn prefix_len(prefix: &str, value: &str, ignore_case: bool) -> Option<usize> {
    let head = value.as_bytes().get(..prefix.len())?;
    let same = if ignore_case {
        head.eq_ignore_ascii_case(prefix.as_bytes())
    } else {
        head == prefix.as_bytes()
    };
    same.then_some(prefix.len())
}

/// The prefix of `path` a route's `uri` prefix match covered (the first `match[]` entry with a
/// prefix that covers it), in bytes: what `rewrite.uri` replaces.
pub fn matched_prefix(matches: &[RequestMatch], path: &str) -> Option<usize> {
    matches.iter().find_map(|m| match &m.uri {
        Some(StringMatcher::Prefix(p)) => prefix_len(p, path, m.ignore_uri_case),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_scores_prefer_the_most_specific() {
        let fqdn = "sticky-svc.default.svc.cluster.local";
        assert_eq!(host_score("*", "anything"), Some(0));
        assert_eq!(host_score(fqdn, fqdn), Some(usize::MAX));
        assert_eq!(
            host_score(fqdn, "STICKY-SVC.default.svc.cluster.local"),
            Some(usize::MAX)
        );
        assert_eq!(host_score(fqdn, "sticky-svc"), Some(usize::MAX - 1));
        assert_eq!(host_score(fqdn, "sticky-svc.default"), Some(usize::MAX - 1));
        assert_eq!(host_score(fqdn, "sticky"), None);
        assert_eq!(host_score("*.example.com", "a.example.com"), Some(12));
        assert_eq!(host_score("*.example.com", "example.com"), None);
        assert_eq!(
            host_score("api.example.com", "api"),
            None,
            "short names only for .svc."
        );
    }

    #[test]
    fn request_host_strips_the_port() {
        assert_eq!(
            request_host(&parts("/", &[("host", "localhost:8080")])),
            "localhost"
        );
        assert_eq!(request_host(&parts("http://a.b:80/", &[])), "a.b");
        assert_eq!(request_host(&parts("/", &[("host", "[::1]:80")])), "::1");
        assert_eq!(request_host(&parts("/", &[])), "");
    }

    #[test]
    fn match_conditions() {
        let re = regex::Regex::new("^(?:/api/v[0-9]+/.*)$").unwrap();
        let m = RequestMatch {
            uri: Some(StringMatcher::Regex(re)),
            method: Some(StringMatcher::Exact("GET".into())),
            headers: vec![("x-user".into(), StringMatcher::Prefix("ri".into()))],
            without_headers: vec![("x-debug".into(), StringMatcher::Present)],
            query_params: vec![("v".into(), StringMatcher::Exact("1".into()))],
            ..RequestMatch::default()
        };
        assert!(request_matches(
            &m,
            &parts("/api/v2/ping?v=1", &[("x-user", "ricky")])
        ));
        assert!(!request_matches(
            &m,
            &parts("/api/v2/ping?v=2", &[("x-user", "ricky")])
        ));
        assert!(!request_matches(
            &m,
            &parts("/api/ping?v=1", &[("x-user", "ricky")])
        ));
        assert!(!request_matches(
            &m,
            &parts("/api/v2/ping?v=1", &[("x-user", "bob")])
        ));
        assert!(!request_matches(
            &m,
            &parts("/api/v2/ping?v=1", &[("x-user", "ricky"), ("x-debug", "1")])
        ));
        let ci = RequestMatch {
            uri: Some(StringMatcher::Prefix("/Ping".into())),
            ignore_uri_case: true,
            ..RequestMatch::default()
        };
        assert!(request_matches(&ci, &parts("/PING/x", &[])));
    }

    #[test]
    fn query_values_are_found_raw() {
        assert_eq!(query_value("a=1&user=ricky&b", "user"), Some("ricky"));
        assert_eq!(query_value("a=1&b", "b"), Some(""));
        assert_eq!(query_value("", "user"), None);
    }

    #[test]
    fn a_case_insensitive_prefix_never_slices_inside_a_character() {
        // `/a` + 'é' (two bytes): the first three bytes end inside the 'é'.
        assert!(!string_matches(
            &StringMatcher::Prefix("/ab".into()),
            "/a\u{e9}x",
            true
        ));
        assert!(string_matches(
            &StringMatcher::Prefix("/A\u{e9}".into()),
            "/a\u{e9}x",
            true
        ));
        assert_eq!(prefix_len("/API", "/api/v1", true), Some(4));
        assert_eq!(prefix_len("/API", "/api/v1", false), None);
        assert_eq!(prefix_len("/api/v1/long", "/api", true), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any path the client can send against any prefix, either case rule: no panic, and a
        /// match covers exactly the prefix's bytes, which end on a character boundary.
        #[test]
        fn prefixes_match_any_path_without_panicking(
            path in "/[a-zA-Z0-9\u{e9}\u{c9}\u{1f600}%/._~-]{0,24}",
            prefix in "/[a-zA-Z\u{e9}\u{c9}/]{0,6}",
            ignore_case: bool,
        ) {
            let matcher = StringMatcher::Prefix(prefix.clone());
            let matched = string_matches(&matcher, &path, ignore_case);
            let len = prefix_len(&prefix, &path, ignore_case);
            proptest::prop_assert_eq!(matched, len.is_some());
            if let Some(len) = len {
                proptest::prop_assert!(path.is_char_boundary(len));
                proptest::prop_assert!(path[..len].eq_ignore_ascii_case(&prefix));
            }
            proptest::prop_assert_eq!(
                string_matches(&StringMatcher::Exact(prefix.clone()), &path, ignore_case),
                if ignore_case { prefix.eq_ignore_ascii_case(&path) } else { prefix == path }
            );
        }
    }
}
