//! Checks for configurations that are valid but cannot keep a user on one replica.
//!
//! Reads the model only: no I/O, no run-time state.

use super::{destinations, finding, host_matches};
use crate::config::diagnostic::{Diagnostic, Severity};
use crate::config::model::{
    Config, DestinationRule, HashKey, LoadBalancer, RouteAction, TrafficPolicy,
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

/// The load balancer that applies to `host`/`subset` without a port: the subset's, else the
/// rule's top-level one.
fn effective<'a>(config: &'a Config, host: &str, subset: Option<&str>) -> Option<&'a LoadBalancer> {
    let dr = config
        .destination_rules
        .iter()
        .find(|dr| host_matches(&dr.host, host))?;
    subset
        .and_then(|name| dr.subsets.iter().find(|s| s.name == name))
        .and_then(|s| s.traffic_policy.as_ref())
        .and_then(|p| p.load_balancer.as_ref())
        .or(dr.traffic_policy.load_balancer.as_ref())
}

fn weighted_splits(config: &Config, out: &mut Vec<Diagnostic>) {
    for vs in &config.virtual_services {
        for route in &vs.http {
            let RouteAction::Forward(dests) = &route.action else {
                continue;
            };
            let split: Vec<_> = dests.iter().filter(|d| d.weight > 0).collect();
            if split.len() < 2 {
                continue;
            }
            let hashed = split.iter().find(|d| {
                let dest = &d.destination;
                matches!(
                    effective(config, &dest.host, dest.subset.as_deref()),
                    Some(LoadBalancer::ConsistentHash { .. })
                )
            });
            if let Some(d) = hashed {
                let message = format!(
                    "consistentHash on {} cannot hold: this route splits traffic by weight first, per request, so a user moves between destinations",
                    d.destination.host
                );
                let path = format!("spec.http[{}].route", route.index);
                out.push(finding(Severity::Warning, &vs.meta, &path, message));
            }
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
