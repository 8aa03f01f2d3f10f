//! Checks for configurations that are valid but cannot keep a user on one replica, and the
//! weighted splits that do keep each user on one destination (info).
//!
//! Reads the model only: no I/O, no run-time state.

use super::{destinations, finding, host_matches};
use crate::config::diagnostic::{Diagnostic, Severity};
use crate::config::model::{
    Config, Destination, DestinationRule, HashKey, LoadBalancer, RouteAction, TrafficPolicy,
};

pub(super) fn check(config: &Config, out: &mut Vec<Diagnostic>) {
    cookies_without_ttl(config, out);
    weighted_splits(config, out);
    port_level_hashing(config, out);
}

/// Every load balancer of a rule with its field path: top level, per subset, per port.
fn balancers(dr: &DestinationRule) -> Vec<(String, &LoadBalancer)> {
    fn of<'a>(policy: &'a TrafficPolicy, path: &str, out: &mut Vec<(String, &'a LoadBalancer)>) {
        if let Some(lb) = &policy.load_balancer {
            out.push((format!("{path}.loadBalancer"), lb));
        }
        for (k, port) in policy.port_level_settings.iter().enumerate() {
            if let Some(lb) = &port.load_balancer {
                out.push((format!("{path}.portLevelSettings[{k}].loadBalancer"), lb));
            }
        }
    }
    let mut out = Vec::new();
    of(&dr.traffic_policy, "spec.trafficPolicy", &mut out);
    for (i, subset) in dr.subsets.iter().enumerate() {
        if let Some(policy) = &subset.traffic_policy {
            of(
                policy,
                &format!("spec.subsets[{i}].trafficPolicy"),
                &mut out,
            );
        }
    }
    out
}

fn cookies_without_ttl(config: &Config, out: &mut Vec<Diagnostic>) {
    for dr in &config.destination_rules {
        for (path, lb) in balancers(dr) {
            if let LoadBalancer::ConsistentHash {
                key: HashKey::Cookie {
                    name, ttl: None, ..
                },
                ..
            } = lb
            {
                let message = format!(
                    "httpCookie {name} has no ttl, so no cookie is ever generated: only clients that already send {name} get affinity"
                );
                let path = format!("{path}.consistentHash.httpCookie");
                out.push(
                    finding(Severity::Warning, &dr.meta, &path, message)
                        .hint("add a ttl, e.g. ttl: 3600s"),
                );
            }
        }
    }
}

/// The `consistentHash` key a destination's requests are hashed by, as the gateway resolves it
/// (`snapshot::clusters::cluster_spec`): the DestinationRule for the host (an exact one, else
/// the longest matching wildcard), its load balancer overridden by the subset's, then by the
/// port-level settings for the destination's port (its own, else its ServiceEntry's only one,
/// else 80). `None` when the destination hashes nothing.
fn hash_key<'a>(config: &'a Config, dest: &Destination) -> Option<&'a HashKey> {
    let dr = config
        .destination_rules
        .iter()
        .filter(|dr| host_matches(&dr.host, &dest.host))
        .max_by_key(|dr| {
            if dr.host == dest.host {
                usize::MAX
            } else {
                dr.host.len()
            }
        })?;
    let subset = dest
        .subset
        .as_deref()
        .and_then(|name| dr.subsets.iter().find(|s| s.name == name))
        .and_then(|s| s.traffic_policy.as_ref());
    let mut lb = dr.traffic_policy.load_balancer.as_ref();
    let mut levels = &dr.traffic_policy.port_level_settings;
    if let Some(policy) = subset {
        lb = policy.load_balancer.as_ref().or(lb);
        if !policy.port_level_settings.is_empty() {
            levels = &policy.port_level_settings;
        }
    }
    let port = dest.port.or_else(|| {
        let entry = config
            .service_entries
            .iter()
            .find(|se| se.hosts.contains(&dest.host))
            .or_else(|| {
                config
                    .service_entries
                    .iter()
                    .find(|se| se.hosts.iter().any(|h| host_matches(h, &dest.host)))
            })?;
        (entry.ports.len() == 1).then(|| entry.ports[0].number)
    });
    let port = port.unwrap_or(DEFAULT_PORT);
    if let Some(level) = levels.iter().find(|p| p.port == port) {
        lb = level.load_balancer.as_ref().or(lb);
    }
    match lb {
        Some(LoadBalancer::ConsistentHash { key, .. }) => Some(key),
        _ => None,
    }
}

/// Port of a destination that names none and has no ServiceEntry with one port (as the
/// gateway's `snapshot::clusters::DEFAULT_PORT`).
const DEFAULT_PORT: u16 = 80;

/// A hash key as `consistentHash` writes it.
fn describe(key: &HashKey) -> String {
    match key {
        HashKey::Header(name) => format!("httpHeaderName {name}"),
        HashKey::Cookie { name, .. } => format!("httpCookie {name}"),
        HashKey::SourceIp => "useSourceIp".to_owned(),
        HashKey::QueryParameter(name) => format!("httpQueryParameterName {name}"),
    }
}

/// Weighted splits in front of hashed destinations. When every destination of weight above 0
/// hashes on the same key, the gateway picks the destination by that key too (a sticky split,
/// `proxy/route.rs`): said at info level. Otherwise it draws the destination at random per
/// request, as Istio does, and a user moves between destinations whatever their hash says
/// (istio/istio#17181): a warning. A split where nothing hashes promises no affinity: silent.
fn weighted_splits(config: &Config, out: &mut Vec<Diagnostic>) {
    for vs in &config.virtual_services {
        for route in &vs.http {
            let RouteAction::Forward(dests) = &route.action else {
                continue;
            };
            let split: Vec<(usize, &Destination, Option<&HashKey>)> = dests
                .iter()
                .enumerate()
                .filter(|(_, d)| d.weight > 0)
                .map(|(j, d)| (j, &d.destination, hash_key(config, &d.destination)))
                .collect();
            if split.len() < 2 {
                continue;
            }
            let Some(&(hashed, dest, Some(key))) = split.iter().find(|(_, _, k)| k.is_some())
            else {
                continue;
            };
            let path = format!("spec.http[{}].route", route.index);
            let odd = split.iter().find(|(_, _, k)| *k != Some(key));
            let Some(&(other, _, other_key)) = odd else {
                let message = format!(
                    "every weighted destination hashes on {}, so the split is sticky: each user stays on one destination while the weights stay; a weight change moves only the users whose bucket changed",
                    describe(key)
                );
                out.push(finding(Severity::Info, &vs.meta, &path, message));
                continue;
            };
            let other_key = other_key.map_or_else(|| "nothing".to_owned(), describe);
            let message = format!(
                "consistentHash on {} cannot hold across this split: route[{hashed}] hashes on {} but route[{other}] on {other_key}, so the destination is drawn at random per request and a user moves between destinations",
                dest.host,
                describe(key),
            );
            out.push(
                finding(Severity::Warning, &vs.meta, &path, message).hint(
                    "hash every weighted destination on the same key: the split then keeps each user on one destination",
                ),
            );
        }
    }
}

fn port_level_hashing(config: &Config, out: &mut Vec<Diagnostic>) {
    for vs in &config.virtual_services {
        for (path, d) in destinations(vs) {
            if d.destination.port.is_some() {
                continue;
            }
            let host = &d.destination.host;
            let Some(dr) = config
                .destination_rules
                .iter()
                .find(|dr| host_matches(&dr.host, host))
            else {
                continue;
            };
            let hashed_port = dr
                .traffic_policy
                .port_level_settings
                .iter()
                .find(|p| matches!(p.load_balancer, Some(LoadBalancer::ConsistentHash { .. })));
            if let Some(port) = hashed_port {
                let message = format!(
                    "{} hashes consistently on port {} only, but this destination names no port, so the rule's default policy applies (istio/istio#41257)",
                    dr.meta.resource(),
                    port.port
                );
                out.push(
                    finding(Severity::Warning, &vs.meta, &path, message)
                        .hint(format!("set port.number: {}", port.port)),
                );
            }
        }
    }
}
