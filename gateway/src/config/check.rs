//! `gateway check`: analysis across resources, beyond what validating one document can see.
//!
//! `istioctl analyze` is the anchor; this is stricter where Istio fails silently. A
//! DestinationRule whose host matches nothing is an error here (Istio ignores it without a
//! word — the seed article has exactly this bug), and so is anything that leaves a reference
//! dangling. Configurations that are valid but cannot keep users sticky are warnings.
//!
//! Analysis only: it reads the model and adds findings, never changes the model or touches files.

mod affinity;
mod sessions;

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostic::{Diagnostic, Severity, near_miss};
use super::model::{
    Config, DestinationRule, Gateway, Meta, RouteAction, VirtualService, host_overlap,
};

/// Every finding of the analysis, in resource order.
pub fn check(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    duplicates(config, &mut out);
    destination_rule_hosts(config, &mut out);
    gateway_references(config, &mut out);
    subset_references(config, &mut out);
    destination_ports(config, &mut out);
    affinity::check(config, &mut out);
    sessions::check(config, &mut out);
    out
}

/// A finding about field `path` of resource `meta`.
fn finding(severity: Severity, meta: &Meta, path: &str, message: String) -> Diagnostic {
    Diagnostic::new(severity, meta.location_of(path), message)
        .resource(meta.resource())
        .path(path)
}

/// Every `route[]` destination of a VirtualService with its field path.
fn destinations(
    vs: &VirtualService,
) -> impl Iterator<Item = (String, &super::model::WeightedDestination)> {
    vs.http.iter().flat_map(|route| {
        let dests = match &route.action {
            RouteAction::Forward(dests) => dests.as_slice(),
            RouteAction::DirectResponse { .. } => &[],
        };
        dests.iter().enumerate().map(move |(j, d)| {
            (
                format!("spec.http[{}].route[{j}].destination", route.index),
                d,
            )
        })
    })
}

/// Istio host matching: equal, or a `*.suffix` wildcard covering the other name.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    host_overlap(pattern, host).is_some()
}

fn duplicates(config: &Config, out: &mut Vec<Diagnostic>) {
    let metas = config
        .gateways
        .iter()
        .map(|r| &r.meta)
        .chain(config.virtual_services.iter().map(|r| &r.meta))
        .chain(config.destination_rules.iter().map(|r| &r.meta))
        .chain(config.service_entries.iter().map(|r| &r.meta));
    let mut seen: BTreeMap<(super::model::Kind, &str, &str), &Meta> = BTreeMap::new();
    for meta in metas {
        let key = (meta.kind, meta.namespace.as_str(), meta.name.as_str());
        if let Some(first) = seen.get(&key) {
            let message = format!(
                "{} is defined twice in namespace {} (first at {}); kubectl apply would keep only the last",
                meta.resource(),
                meta.namespace,
                first.location_of("metadata.name")
            );
            out.push(finding(Severity::Error, meta, "metadata.name", message));
        } else {
            seen.insert(key, meta);
        }
    }
}

/// Hosts that exist: route destinations, ServiceEntry hosts and Kubernetes Services.
fn known_hosts(config: &Config) -> BTreeSet<String> {
    let mut hosts: BTreeSet<String> = config
        .virtual_services
        .iter()
        .flat_map(|vs| destinations(vs).map(|(_, d)| d.destination.host.clone()))
        .collect();
    hosts.extend(
        config
            .service_entries
            .iter()
            .flat_map(|se| se.hosts.iter().cloned()),
    );
    hosts.extend(
        config
            .kubernetes_services
            .iter()
            .map(|svc| svc.host.clone()),
    );
    hosts
}

fn destination_rule_hosts(config: &Config, out: &mut Vec<Diagnostic>) {
    let known = known_hosts(config);
    let mut by_host: BTreeMap<&str, &DestinationRule> = BTreeMap::new();
    for dr in &config.destination_rules {
        if !known.iter().any(|h| host_matches(&dr.host, h)) {
            let message = format!(
                "host {} matches no VirtualService destination, ServiceEntry or Service here: the rule applies to nothing, and Istio ignores it silently",
                dr.host
            );
            let mut d = finding(Severity::Error, &dr.meta, "spec.host", message);
            if let Some(best) = near_miss(&dr.host, known.iter().map(String::as_str)) {
                d = d.hint(format!("did you mean {best}?"));
            }
            out.push(d);
        }
        if let Some(first) = by_host.get(dr.host.as_str()) {
            let message = format!(
                "a second DestinationRule for {} (first: {} at {}); only one takes effect",
                dr.host,
                first.meta.resource(),
                first.meta.location_of("spec.host")
            );
            out.push(finding(Severity::Error, &dr.meta, "spec.host", message));
        } else {
            by_host.insert(&dr.host, dr);
        }
    }
}

fn gateway_references(config: &Config, out: &mut Vec<Diagnostic>) {
    let defined: BTreeMap<String, &Gateway> = config
        .gateways
        .iter()
        .map(|g| (g.meta.qualified_name(), g))
        .collect();
    for vs in &config.virtual_services {
        if vs.gateways.iter().all(|g| g == "mesh") {
            let message = "bound to the mesh only, so no gateway serves it".to_owned();
            let path = if vs.gateways.is_empty() {
                "spec.hosts"
            } else {
                "spec.gateways"
            };
            out.push(finding(Severity::Warning, &vs.meta, path, message));
        }
        for (i, gateway) in vs.gateways.iter().enumerate() {
            if gateway == "mesh" {
                continue;
            }
            if let Some(g) = defined.get(gateway) {
                uncovered_hosts(vs, g, out);
                continue;
            }
            let message = format!("Gateway {gateway} is not defined");
            let mut d = finding(
                Severity::Error,
                &vs.meta,
                &format!("spec.gateways[{i}]"),
                message,
            );
            if let Some(best) = near_miss(gateway, defined.keys().map(String::as_str)) {
                d = d.hint(format!("did you mean {best}?"));
            }
            out.push(d);
        }
    }
}

/// Hosts of a VirtualService that none of its Gateway's servers accepts: requests for them
/// never reach the route (istioctl analyze's IST0132), as the gateway serves a bound
/// VirtualService only for the hosts it shares with the servers (`Gateway::served_hosts`).
fn uncovered_hosts(vs: &VirtualService, gateway: &Gateway, out: &mut Vec<Diagnostic>) {
    // Server hosts `ns/host` and `./host` admit only VirtualServices of that namespace.
    let served: Vec<&str> = gateway.hosts_for(&vs.meta.namespace).collect();
    for (i, host) in vs.hosts.iter().enumerate() {
        if !served.iter().any(|s| host_matches(s, host)) {
            let accepted = if served.is_empty() {
                format!(
                    "its servers admit no host of namespace {}",
                    vs.meta.namespace
                )
            } else {
                format!("its servers accept {}", served.join(", "))
            };
            let message = format!(
                "host {host} is not served by Gateway {}/{} ({accepted})",
                gateway.meta.namespace, gateway.meta.name,
            );
            out.push(finding(
                Severity::Warning,
                &vs.meta,
                &format!("spec.hosts[{i}]"),
                message,
            ));
        }
    }
}

/// Destination ports against the ports a ServiceEntry declares for that host.
fn destination_ports(config: &Config, out: &mut Vec<Diagnostic>) {
    for vs in &config.virtual_services {
        for (path, d) in destinations(vs) {
            let host = &d.destination.host;
            let Some(se) = config
                .service_entries
                .iter()
                .find(|se| se.hosts.contains(host))
            else {
                continue;
            };
            let ports: Vec<String> = se.ports.iter().map(|p| p.number.to_string()).collect();
            match d.destination.port {
                Some(port) if !se.ports.iter().any(|p| p.number == port) => {
                    let message = format!(
                        "port {port} is not a port of {host} ({} declares {})",
                        se.meta.resource(),
                        ports.join(", ")
                    );
                    out.push(finding(
                        Severity::Error,
                        &vs.meta,
                        &format!("{path}.port.number"),
                        message,
                    ));
                }
                None if se.ports.len() > 1 => {
                    let message = format!(
                        "{host} has several ports ({}), so the destination must name one",
                        ports.join(", ")
                    );
                    out.push(finding(Severity::Error, &vs.meta, &path, message));
                }
                _ => {}
            }
        }
    }
}

fn subset_references(config: &Config, out: &mut Vec<Diagnostic>) {
    for vs in &config.virtual_services {
        for (path, d) in destinations(vs) {
            let Some(subset) = &d.destination.subset else {
                continue;
            };
            let host = &d.destination.host;
            let rules: Vec<&DestinationRule> = config
                .destination_rules
                .iter()
                .filter(|dr| host_matches(&dr.host, host))
                .collect();
            if rules
                .iter()
                .any(|dr| dr.subsets.iter().any(|s| &s.name == subset))
            {
                continue;
            }
            let message = if rules.is_empty() {
                format!("subset {subset} of {host} is not defined: no DestinationRule for {host}")
            } else {
                format!("subset {subset} is not defined by any DestinationRule for {host}")
            };
            let names = rules
                .iter()
                .flat_map(|dr| dr.subsets.iter().map(|s| s.name.as_str()));
            let mut diag = finding(
                Severity::Error,
                &vs.meta,
                &format!("{path}.subset"),
                message,
            );
            if let Some(best) = near_miss(subset, names) {
                diag = diag.hint(format!("did you mean {best}?"));
            }
            out.push(diag);
        }
    }
}
