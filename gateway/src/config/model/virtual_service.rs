//! `VirtualService` → routes with compiled matchers and resolved destinations.

use std::time::Duration;

use regex::Regex;

use super::{Meta, Names, Problems};
use crate::config::spec;

/// A validated `VirtualService`.
#[derive(Debug, Clone)]
pub struct VirtualService {
    /// Identity and origin.
    pub meta: Meta,
    /// `hosts`, fully qualified (`*` kept).
    pub hosts: Vec<String>,
    /// `gateways` as `namespace/name`, or `mesh`; empty means `mesh` only, as in Istio.
    pub gateways: Vec<String>,
    /// `http[]`, in order: the first route whose matches hold wins.
    pub http: Vec<HttpRoute>,
}

/// One `http[]` entry.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// Position in `http[]` (routes without a supported action are dropped, so it can skip).
    pub index: usize,
    /// `name`, for logs and metrics.
    pub name: Option<String>,
    /// `match[]`: any one of them selects the route; empty matches every request.
    pub matches: Vec<RequestMatch>,
    /// What to do with a matched request.
    pub action: RouteAction,
    /// `timeout`; `None` (or zero) means no timeout.
    pub timeout: Option<Duration>,
    /// `retries`, Istio's default when unset.
    pub retries: RetryPolicy,
    /// `headers`.
    pub headers: HeaderRules,
    /// `rewrite`.
    pub rewrite: Option<Rewrite>,
    /// `fault`.
    pub fault: Option<Fault>,
}

/// Forward (weighted) or answer directly.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// `route[]`; weights sum to 100 (a lone destination gets 100).
    Forward(Vec<WeightedDestination>),
    /// `directResponse`.
    DirectResponse {
        /// HTTP status.
        status: u16,
        /// `body.string`.
        body: Option<String>,
    },
}

/// One `route[]` entry.
#[derive(Debug, Clone)]
pub struct WeightedDestination {
    /// `destination`.
    pub destination: Destination,
    /// `weight`, 0..=100.
    pub weight: u32,
    /// `headers` applied for this destination only.
    pub headers: HeaderRules,
}

/// `destination`: the cluster a request goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Fully qualified host.
    pub host: String,
    /// `subset` name, defined by a DestinationRule for `host`.
    pub subset: Option<String>,
    /// `port.number`.
    pub port: Option<u16>,
}

/// One `match[]` entry: every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// `name`.
    pub name: Option<String>,
    /// `uri`.
    pub uri: Option<StringMatcher>,
    /// `method`.
    pub method: Option<StringMatcher>,
    /// `authority`.
    pub authority: Option<StringMatcher>,
    /// `headers`, names lowercased.
    pub headers: Vec<(String, StringMatcher)>,
    /// `queryParams`.
    pub query_params: Vec<(String, StringMatcher)>,
    /// `withoutHeaders`: none of these may match.
    pub without_headers: Vec<(String, StringMatcher)>,
    /// `ignoreUriCase`: exact/prefix `uri` compare case-insensitively.
    pub ignore_uri_case: bool,
}

/// `StringMatch`.
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex`, anchored at both ends as Envoy matches it.
    Regex(Regex),
    /// An empty `{}` on a header or query parameter: present with any value.
    Present,
}

/// `retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try; 0 disables retries.
    pub attempts: u32,
    /// `perTryTimeout`.
    pub per_try_timeout: Option<Duration>,
    /// `retryOn` conditions (Envoy names or status codes).
    pub retry_on: Vec<String>,
}

/// Istio's `retryOn` when a route sets none.
pub const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled";

impl Default for RetryPolicy {
    /// Istio's default when `retries` is unset: 2 attempts.
    fn default() -> Self {
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: DEFAULT_RETRY_ON.split(',').map(str::to_owned).collect(),
        }
    }
}

/// Envoy's `retry_on` policies that Istio accepts.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// `headers`: request and response operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// `request`.
    pub request: HeaderOperations,
    /// `response`.
    pub response: HeaderOperations,
}

/// `set`, `add`, `remove`.
#[derive(Debug, Clone, Default)]
pub struct HeaderOperations {
    /// Replace.
    pub set: Vec<(String, String)>,
    /// Append.
    pub add: Vec<(String, String)>,
    /// Remove.
    pub remove: Vec<String>,
}

/// `rewrite`.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// Replaces the matched `uri` prefix (or the whole path on an exact match).
    pub uri: Option<String>,
    /// Replaces the `Host`/`:authority`.
    pub authority: Option<String>,
}

/// `fault`.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// `delay`.
    pub delay: Option<FaultDelay>,
    /// `abort`.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed: Duration,
    /// Share of requests delayed, 0..=100 (100 when unset).
    pub percent: f64,
}

/// `fault.abort`.
#[derive(Debug, Clone)]
pub struct FaultAbort {
    /// `httpStatus`.
    pub status: u16,
    /// Share of requests aborted, 0..=100 (100 when unset).
    pub percent: f64,
}

pub(crate) fn virtual_service(
    spec: spec::VirtualServiceSpec,
    meta: Meta,
    names: &Names,
    p: &mut Problems,
) -> VirtualService {
    let hosts = spec.hosts.unwrap_or_default();
    if hosts.is_empty() {
        p.error("spec.hosts", "at least one host is required");
    }
    for (i, host) in hosts.iter().enumerate() {
        check_host(p, &format!("spec.hosts[{i}]"), host);
    }
    let gateways = spec
        .gateways
        .unwrap_or_default()
        .iter()
        .map(|g| gateway_ref(g, &names.namespace))
        .collect();
    let http = spec
        .http
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, route)| http_route(route, i, &meta, names, p))
        .collect();
    VirtualService {
        hosts: hosts.iter().map(|h| names.fqdn(h)).collect(),
        gateways,
        http,
        meta,
    }
}

/// A host: `*`, `*.suffix` or a name without wildcards.
pub(crate) fn check_host(p: &mut Problems, path: &str, host: &str) {
    let bad_wildcard = host.contains('*')
        && host != "*"
        && host
            .strip_prefix("*.")
            .is_none_or(|rest| rest.contains('*'));
    if host.trim().is_empty() {
        p.error(path, "host must not be empty");
    } else if bad_wildcard {
        p.error(
            path,
            format!("{host:?}: a wildcard is allowed only as the leftmost label"),
        );
    } else if host.chars().any(|c| c.is_whitespace() || c == '/') {
        p.error(path, format!("{host:?} is not a valid host name"));
    }
}

/// Istio's gateway reference: `mesh`, `ns/name`, a short name in the VirtualService's
/// namespace, or the deprecated `name.ns.svc.cluster.local`.
fn gateway_ref(reference: &str, namespace: &str) -> String {
    if reference == "mesh" || reference.contains('/') {
        return reference.to_owned();
    }
    match reference.split('.').collect::<Vec<_>>().as_slice() {
        [name] => format!("{namespace}/{name}"),
        [name, ns, ..] => format!("{ns}/{name}"),
        _ => reference.to_owned(),
    }
}

fn http_route(
    route: spec::HttpRoute,
    index: usize,
    meta: &Meta,
    names: &Names,
    p: &mut Problems,
) -> Option<HttpRoute> {
    let path = &format!("spec.http[{index}]");
    let ignored_action = ["redirect", "delegate"]
        .iter()
        .find(|f| meta.positions.contains(&format!("{path}.{f}")));
    let action = match (route.route, route.direct_response, ignored_action) {
        (Some(dests), None, None) => Some(forward(dests, path, names, p)),
        (None, Some(direct), None) => direct_response(direct, path, p),
        (None, None, Some(_)) => {
            p.warn(
                path,
                "no supported action (redirect and delegate are ignored): route dropped",
            );
            return None;
        }
        (None, None, None) => {
            p.error(
                path,
                "one of route, redirect, directResponse or delegate is required",
            );
            None
        }
        _ => {
            p.error(
                path,
                "only one of route, redirect, directResponse or delegate may be set",
            );
            None
        }
    };
    let matches = route
        .match_
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, m)| request_match(m, &format!("{path}.match[{i}]"), p))
        .collect();
    let timeout = p.duration(&format!("{path}.timeout"), route.timeout.as_deref(), true);
    let retries = route
        .retries
        .map(|r| retry_policy(r, &format!("{path}.retries"), p))
        .unwrap_or_default();
    let fault = route
        .fault
        .map(|f| fault(f, &format!("{path}.fault"), meta, p));
    Some(HttpRoute {
        index,
        name: route.name,
        matches,
        action: action?,
        timeout: timeout.filter(|t| !t.is_zero()),
        retries,
        headers: header_rules(route.headers),
        rewrite: route.rewrite.map(|r| Rewrite {
            uri: r.uri,
            authority: r.authority,
        }),
        fault,
    })
}

fn forward(
    dests: Vec<spec::HttpRouteDestination>,
    path: &str,
    names: &Names,
    p: &mut Problems,
) -> RouteAction {
    if dests.is_empty() {
        p.error(
            format!("{path}.route"),
            "at least one destination is required",
        );
    }
    let any_weight = dests.iter().any(|d| d.weight.is_some());
    let mut out = Vec::with_capacity(dests.len());
    for (i, d) in dests.into_iter().enumerate() {
        let at = format!("{path}.route[{i}]");
        let weight = match d.weight {
            Some(w) if !(0..=100).contains(&w) => {
                p.error(
                    format!("{at}.weight"),
                    format!("{w} is out of range 0..100"),
                );
                0
            }
            Some(w) => u32::try_from(w).unwrap_or(0),
            None => 0,
        };
        let Some(destination) = destination(d.destination, &format!("{at}.destination"), names, p)
        else {
            continue;
        };
        out.push(WeightedDestination {
            destination,
            weight,
            headers: header_rules(d.headers),
        });
    }
    if out.len() == 1 && !any_weight {
        out[0].weight = 100;
    }
    let sum: u32 = out.iter().map(|d| d.weight).sum();
    if !out.is_empty() && sum != 100 {
        p.error(
            format!("{path}.route"),
            format!("weights sum to {sum}, not 100"),
        );
    }
    RouteAction::Forward(out)
}

fn destination(
    d: Option<spec::Destination>,
    path: &str,
    names: &Names,
    p: &mut Problems,
) -> Option<Destination> {
    let Some(d) = d else {
        p.error(path, "destination is required");
        return None;
    };
    let Some(host) = d.host.filter(|h| !h.trim().is_empty()) else {
        p.error(format!("{path}.host"), "host is required");
        return None;
    };
    check_host(p, &format!("{path}.host"), &host);
    let port_path = format!("{path}.port.number");
    let port = p.port(&port_path, d.port.and_then(|port| port.number));
    Some(Destination {
        host: names.fqdn(&host),
        subset: d.subset.filter(|s| !s.is_empty()),
        port,
    })
}

fn direct_response(
    d: spec::HttpDirectResponse,
    path: &str,
    p: &mut Problems,
) -> Option<RouteAction> {
    let status = d.status.unwrap_or(0);
    match u16::try_from(status) {
        Ok(status) if (200..=599).contains(&status) => Some(RouteAction::DirectResponse {
            status,
            body: d.body.and_then(|b| b.string),
        }),
        _ => {
            let rule = format!("status {status} is out of range 200..599");
            p.error(format!("{path}.directResponse.status"), rule);
            None
        }
    }
}

fn request_match(m: spec::HttpMatchRequest, path: &str, p: &mut Problems) -> RequestMatch {
    let one = |field: &str, s: Option<spec::StringMatch>, p: &mut Problems| {
        s.and_then(|s| string_matcher(s, &format!("{path}.{field}"), false, p))
    };
    let uri = one("uri", m.uri, p);
    let method = one("method", m.method, p);
    let authority = one("authority", m.authority, p);
    let mut map = |field: &str,
                   entries: Option<std::collections::BTreeMap<String, spec::StringMatch>>,
                   lower: bool| {
        entries
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, s)| {
                let matcher = string_matcher(s, &format!("{path}.{field}.{name}"), true, p)?;
                let name = if lower {
                    name.to_ascii_lowercase()
                } else {
                    name
                };
                Some((name, matcher))
            })
            .collect::<Vec<_>>()
    };
    RequestMatch {
        name: m.name,
        uri,
        method,
        authority,
        headers: map("headers", m.headers, true),
        query_params: map("queryParams", m.query_params, false),
        without_headers: map("withoutHeaders", m.without_headers, true),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
    }
}

fn string_matcher(
    s: spec::StringMatch,
    path: &str,
    empty_means_present: bool,
    p: &mut Problems,
) -> Option<StringMatcher> {
    match (s.exact, s.prefix, s.regex) {
        (Some(e), None, None) => Some(StringMatcher::Exact(e)),
        (None, Some(prefix), None) => Some(StringMatcher::Prefix(prefix)),
        (None, None, Some(re)) => {
            // Envoy (and so Istio) runs RE2 and matches the whole value; the `regex` crate
            // shares RE2's syntax and linear-time guarantee, so anchoring is all that differs.
            match Regex::new(&format!("^(?:{re})$")) {
                Ok(compiled) => Some(StringMatcher::Regex(compiled)),
                Err(e) => {
                    let text = e.to_string();
                    let last = text.lines().last().unwrap_or_default();
                    let why = last.trim_start_matches("error: ").to_owned();
                    p.error(
                        format!("{path}.regex"),
                        format!("regex {re:?} does not compile: {why}"),
                    );
                    None
                }
            }
        }
        (None, None, None) if empty_means_present => Some(StringMatcher::Present),
        (None, None, None) => {
            p.error(path, "one of exact, prefix or regex is required");
            None
        }
        _ => {
            p.error(path, "only one of exact, prefix or regex may be set");
            None
        }
    }
}

fn retry_policy(r: spec::HttpRetry, path: &str, p: &mut Problems) -> RetryPolicy {
    let attempts = p
        .count(&format!("{path}.attempts"), r.attempts)
        .unwrap_or(0);
    let per_try_timeout = p.duration(
        &format!("{path}.perTryTimeout"),
        r.per_try_timeout.as_deref(),
        false,
    );
    let retry_on = match r.retry_on {
        None => RetryPolicy::default().retry_on,
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|c| {
                let known = RETRY_ON.contains(c)
                    || c.parse::<u16>()
                        .is_ok_and(|code| (100..=599).contains(&code));
                if !known {
                    p.error(
                        format!("{path}.retryOn"),
                        format!("{c:?} is not a retry condition"),
                    );
                }
                known
            })
            .map(str::to_owned)
            .collect(),
    };
    RetryPolicy {
        attempts,
        per_try_timeout,
        retry_on,
    }
}

fn fault(f: spec::HttpFaultInjection, path: &str, meta: &Meta, p: &mut Problems) -> Fault {
    let delay = f.delay.and_then(|d| {
        let at = format!("{path}.delay");
        let percent = fault_percent(d.percent, d.percentage, &at, p);
        match p.duration(&format!("{at}.fixedDelay"), d.fixed_delay.as_deref(), false) {
            Some(fixed) => Some(FaultDelay { fixed, percent }),
            None if meta.positions.contains(&format!("{at}.exponentialDelay")) => None,
            None if d.fixed_delay.is_none() => {
                p.error(format!("{at}.fixedDelay"), "fixedDelay is required");
                None
            }
            None => None,
        }
    });
    let abort = f.abort.and_then(|a| {
        let at = format!("{path}.abort");
        let percent = fault_percent(None, a.percentage, &at, p);
        match a.http_status {
            Some(status @ 200..=599) => Some(FaultAbort {
                status: u16::try_from(status).unwrap_or(500),
                percent,
            }),
            Some(status) => {
                let rule = format!("{status} is out of range 200..599");
                p.error(format!("{at}.httpStatus"), rule);
                None
            }
            None if ["grpcStatus", "http2Error"]
                .iter()
                .any(|f| meta.positions.contains(&format!("{at}.{f}"))) =>
            {
                None
            }
            None => {
                p.error(format!("{at}.httpStatus"), "httpStatus is required");
                None
            }
        }
    });
    Fault { delay, abort }
}

fn fault_percent(
    percent: Option<i64>,
    percentage: Option<spec::Percent>,
    path: &str,
    p: &mut Problems,
) -> f64 {
    let legacy = percent.map(|v| v as f64);
    let value = percentage.and_then(|v| v.value).or(legacy);
    let field = if legacy.is_some() {
        "percent"
    } else {
        "percentage.value"
    };
    p.percent(&format!("{path}.{field}"), value)
        .unwrap_or(100.0)
}

fn header_rules(h: Option<spec::Headers>) -> HeaderRules {
    let ops = |o: Option<spec::HeaderOperations>| {
        let o = o.unwrap_or_default();
        HeaderOperations {
            set: o.set.unwrap_or_default().into_iter().collect(),
            add: o.add.unwrap_or_default().into_iter().collect(),
            remove: o.remove.unwrap_or_default(),
        }
    };
    let h = h.unwrap_or_default();
    HeaderRules {
        request: ops(h.request),
        response: ops(h.response),
    }
}
