//! `VirtualService` → routes with compiled matchers and resolved destinations.
//!
//! Pure: spec in, model and findings out; no I/O.

use std::time::Duration;

use super::request_match::{RequestMatch, request_match};
use super::route_policy::{
    Fault, HeaderRules, RetryPolicy, Rewrite, fault, header_rules, retry_policy,
};
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
    /// `timeout`; `None`: not set (the gateway's default applies, `--route-timeout`); zero:
    /// no timeout, as Istio's `0s` turns it off.
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
        timeout,
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
    // A weight of 0 is proto3's unset: a lone destination still takes all traffic.
    let any_weight = dests.iter().any(|d| d.weight.is_some_and(|w| w != 0));
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
