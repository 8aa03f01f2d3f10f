//! From a route destination and the config to a [`ClusterSpec`]: which endpoints (ServiceEntry
//! or DNS), which policy (DestinationRule, subset, port-level settings merged as Istio does).
//!
//! Decisions where Istio has a cluster to ask and we have only YAML and DNS:
//! - A host with no ServiceEntry is resolved by DNS (a Kubernetes headless Service, a compose
//!   network alias). Its port is the destination's `port.number`, else the ServiceEntry's only
//!   port, else 80.
//! - `consistentHash` without an algorithm builds Maglev with 65 537 slots (Istio would program
//!   a ring hash of 1024): Maglev balances better and moves fewer keys for the same memory.
//! - No `loadBalancer` at all means `LEAST_REQUEST`, Istio's default.
//! - HTTP/2 to the endpoints (cleartext, prior knowledge) when the ServiceEntry port's
//!   protocol is `HTTP2`, `GRPC` or `GRPC-WEB`, or the DestinationRule says
//!   `h2UpgradePolicy: UPGRADE`; HTTP/1.1 otherwise. A host with no ServiceEntry (a Kubernetes
//!   Service, whose port names we do not see) needs `h2UpgradePolicy: UPGRADE` for HTTP/2.
//! - Subset labels select ServiceEntry endpoints by their labels. DNS answers carry no labels,
//!   so a labelled subset of a DNS host gets every address, with a warning.

use std::net::{IpAddr, SocketAddr};

use crate::balancer::Policy;
use crate::cluster::{ClusterSpec, Source};
use crate::config::Config;
use crate::config::model::{
    ClientTls, ConnectionPool, Destination, DestinationRule, HashAlgorithm, HashKey, LoadBalancer,
    OutlierDetection, Resolution, ServiceEntry, SessionPolicy, SimpleLb, TrafficPolicy,
};
use crate::discovery::DnsTarget;
use crate::endpoint::{Endpoint, endpoint_set};
use crate::health::{DEFAULT_MAX_EJECTION_TIME, OutlierPolicy};
use crate::maglev::{MaglevError, TableSize};
use crate::ring::{RingError, RingSize};
use crate::upstream::{PoolSettings, UpstreamTls};

/// Why a destination cannot become a cluster. `gateway check` reports each of these with its
/// file and line first, so a config that reaches here with one was not checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The destination names a subset its DestinationRule does not define.
    #[error("subset {subset} of {host} is not defined")]
    UndefinedSubset {
        /// The subset named.
        subset: String,
        /// The destination host.
        host: String,
    },
    /// The destination names a subset of a host that has no DestinationRule.
    #[error("subset {subset} of {host} has no DestinationRule")]
    NoDestinationRule {
        /// The subset named.
        subset: String,
        /// The destination host.
        host: String,
    },
    /// A STATIC ServiceEntry endpoint whose address is not an IP address.
    #[error("STATIC endpoint {address} is not an IP address")]
    StaticAddress {
        /// The address as written.
        address: String,
    },
    /// `maglev.tableSize` cannot be built.
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    /// `ringHash.minimumRingSize` cannot be built.
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Port used when neither the route nor a ServiceEntry names one.
pub const DEFAULT_PORT: u16 = 80;

/// Envoy's cluster name for a destination.
pub fn cluster_name(host: &str, subset: Option<&str>, port: u16) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// Builds the spec of the cluster a destination names, and the hash key of its
/// `consistentHash` (kept apart from the spec: see [`ClusterSpec`]).
pub fn cluster_spec(
    dest: &Destination,
    config: &Config,
) -> Result<(ClusterSpec, Option<HashKey>), SpecError> {
    let entry = service_entry(config, &dest.host);
    let port = dest
        .port
        .or_else(|| entry.and_then(|se| (se.ports.len() == 1).then(|| se.ports[0].number)))
        .unwrap_or(DEFAULT_PORT);
    let rule = destination_rule(config, &dest.host);
    let subset = match (&dest.subset, rule) {
        (None, _) => None,
        (Some(name), Some(rule)) => Some(
            rule.subsets
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| SpecError::UndefinedSubset {
                    subset: name.clone(),
                    host: dest.host.clone(),
                })?,
        ),
        (Some(name), None) => {
            return Err(SpecError::NoDestinationRule {
                subset: name.clone(),
                host: dest.host.clone(),
            });
        }
    };
    let policy = effective_policy(rule, subset.and_then(|s| s.traffic_policy.as_ref()), port);
    let labels = subset.map(|s| &s.labels).filter(|l| !l.is_empty());
    let source = source(&dest.host, port, entry, labels)?;
    let (lb_policy, hash_key) = balancer_policy(policy.load_balancer.as_ref())?;
    let h2_port = entry
        .and_then(|se| se.ports.iter().find(|p| p.number == port))
        .and_then(|p| p.protocol.as_deref())
        .is_some_and(|protocol| matches!(protocol, "HTTP2" | "GRPC" | "GRPC-WEB"));
    let http2 = h2_port || policy.connection_pool.h2_upgrade == Some(true);
    let spec = ClusterSpec {
        name: cluster_name(&dest.host, dest.subset.as_deref(), port).into(),
        source,
        policy: lb_policy,
        pool: PoolSettings {
            tls: rule
                .and_then(|r| r.client_tls(dest.subset.as_deref(), port))
                .map(|ClientTls::Simple(settings)| UpstreamTls {
                    settings: settings.clone(),
                    host: dest.host.clone(),
                }),
            ..pool_settings(&policy.connection_pool, http2)
        },
        outlier: policy.outlier_detection.as_ref().map(outlier_policy),
        active: None,
    };
    Ok((spec, hash_key))
}

/// The traffic policy in force: the rule's, overridden field by field by the subset's, then by
/// the port-level settings for `port` (Istio's precedence).
fn effective_policy(
    rule: Option<&DestinationRule>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> TrafficPolicy {
    let mut policy = rule.map(|r| r.traffic_policy.clone()).unwrap_or_default();
    if let Some(sub) = subset {
        if sub.load_balancer.is_some() {
            policy.load_balancer = sub.load_balancer.clone();
        }
        if sub.connection_pool != ConnectionPool::default() {
            policy.connection_pool = sub.connection_pool.clone();
        }
        if sub.outlier_detection.is_some() {
            policy.outlier_detection = sub.outlier_detection.clone();
        }
        if !sub.port_level_settings.is_empty() {
            policy.port_level_settings = sub.port_level_settings.clone();
        }
    }
    if let Some(level) = policy
        .port_level_settings
        .iter()
        .find(|p| p.port == port)
        .cloned()
    {
        if level.load_balancer.is_some() {
            policy.load_balancer = level.load_balancer;
        }
        if level.connection_pool != ConnectionPool::default() {
            policy.connection_pool = level.connection_pool;
        }
        if level.outlier_detection.is_some() {
            policy.outlier_detection = level.outlier_detection;
        }
    }
    policy
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// The persistent sessions `host` has: its ServiceEntry's labels, else those of the Kubernetes
/// Service of that name in the config folder (as `gateway check` says them: the first read).
pub fn session_policy(config: &Config, host: &str) -> Option<SessionPolicy> {
    service_entry(config, host)
        .and_then(|entry| entry.session.clone())
        .or_else(|| {
            config
                .kubernetes_services
                .iter()
                .find(|svc| svc.host == host)
                .and_then(|svc| svc.session.clone())
        })
}

fn service_entry<'a>(config: &'a Config, host: &str) -> Option<&'a ServiceEntry> {
    let exact = config
        .service_entries
        .iter()
        .find(|se| se.hosts.iter().any(|h| h == host));
    exact.or_else(|| {
        config
            .service_entries
            .iter()
            .find(|se| se.hosts.iter().any(|h| host_matches(h, host)))
    })
}

/// The DestinationRule for `host`: an exact one, else the longest matching wildcard.
pub fn destination_rule<'a>(config: &'a Config, host: &str) -> Option<&'a DestinationRule> {
    config
        .destination_rules
        .iter()
        .filter(|r| host_matches(&r.host, host))
        .max_by_key(|r| {
            if r.host == host {
                usize::MAX
            } else {
                r.host.len()
            }
        })
}

fn source(
    host: &str,
    port: u16,
    entry: Option<&ServiceEntry>,
    labels: Option<&crate::config::model::Labels>,
) -> Result<Source, SpecError> {
    let Some(se) = entry else {
        if labels.is_some() {
            tracing::warn!(%host, "subset labels cannot select DNS answers; every address is used");
        }
        return Ok(Source::Dns(vec![DnsTarget {
            host: host.to_owned(),
            port,
            weight: 1,
        }]));
    };
    let service_port = se.ports.iter().find(|p| p.number == port);
    let endpoint_port = |e: &crate::config::model::Endpoint| {
        service_port
            .and_then(|sp| {
                e.ports
                    .iter()
                    .find(|(name, _)| *name == sp.name)
                    .map(|(_, p)| *p)
            })
            .or_else(|| service_port.and_then(|sp| sp.target_port))
            .unwrap_or(port)
    };
    let selected = se
        .endpoints
        .iter()
        .filter(|e| labels.is_none_or(|want| want.iter().all(|(k, v)| e.labels.get(k) == Some(v))));
    match se.resolution {
        Resolution::Static => {
            let mut endpoints = Vec::new();
            for e in selected {
                let ip: IpAddr = e.address.parse().map_err(|_| SpecError::StaticAddress {
                    address: e.address.clone(),
                })?;
                endpoints.push(Endpoint::at(
                    SocketAddr::new(ip, endpoint_port(e)),
                    e.weight.max(1),
                ));
            }
            Ok(Source::Static(endpoint_set(endpoints)))
        }
        Resolution::Dns | Resolution::DnsRoundRobin | Resolution::None => {
            let targets: Vec<DnsTarget> = selected
                .map(|e| DnsTarget {
                    host: e.address.clone(),
                    port: endpoint_port(e),
                    weight: e.weight.max(1),
                })
                .collect();
            if targets.is_empty() && se.endpoints.is_empty() {
                Ok(Source::Dns(vec![DnsTarget {
                    host: host.to_owned(),
                    port,
                    weight: 1,
                }]))
            } else {
                Ok(Source::Dns(targets))
            }
        }
    }
}

fn balancer_policy(lb: Option<&LoadBalancer>) -> Result<(Policy, Option<HashKey>), SpecError> {
    Ok(match lb {
        None => (Policy::LEAST_REQUEST, None),
        Some(LoadBalancer::Simple(simple)) => (
            match simple {
                SimpleLb::Unspecified | SimpleLb::LeastRequest => Policy::LEAST_REQUEST,
                SimpleLb::RoundRobin => Policy::RoundRobin,
                SimpleLb::Random => Policy::Random,
                // A gateway has no original destination to pass through to.
                SimpleLb::Passthrough => Policy::RoundRobin,
            },
            None,
        ),
        Some(LoadBalancer::ConsistentHash { key, algorithm }) => {
            let policy = match algorithm {
                HashAlgorithm::Maglev { table_size } => {
                    Policy::Maglev(TableSize::new(*table_size)?)
                }
                HashAlgorithm::RingHash { minimum_ring_size } => {
                    Policy::RingHash(RingSize::new(*minimum_ring_size)?)
                }
                HashAlgorithm::Default => Policy::Maglev(TableSize::DEFAULT),
            };
            (policy, Some(key.clone()))
        }
    })
}

/// Envoy's circuit-breaker defaults, applied where the DestinationRule sets no limit (Istio
/// raises them to 2^32 − 1, which bounds nothing): connections, pending requests and requests
/// per cluster, each 1024. Past them a request gets 503 at once, never a queue without end.
pub const DEFAULT_CIRCUIT_BREAKER: u32 = 1024;

fn pool_settings(pool: &ConnectionPool, http2: bool) -> PoolSettings {
    // Envoy's circuit breakers: `http2MaxRequests` bounds the requests in flight to any
    // cluster ("applicable to both HTTP/1.1 and HTTP2"); HTTP/1.1 ones also wait for one of
    // `maxConnections` connections in a queue of `http1MaxPendingRequests`.
    let limit = |set: Option<u32>| set.unwrap_or(DEFAULT_CIRCUIT_BREAKER) as usize;
    let requests = limit(pool.http2_max_requests);
    let connections = limit(pool.max_connections);
    let max_in_flight = if http2 {
        requests
    } else {
        (connections + limit(pool.http1_max_pending_requests)).min(requests)
    };
    PoolSettings {
        connect_timeout: pool.connect_timeout,
        idle_timeout: pool.idle_timeout,
        max_in_flight: Some(max_in_flight),
        http2,
        max_requests_per_connection: pool.max_requests_per_connection,
        max_connections: (!http2).then_some(connections),
        // The gateway's, not the DestinationRule's: set where the snapshot is built.
        response_idle_timeout: None,
        // The DestinationRule's `tls`: set by the caller, which knows the destination.
        tls: None,
    }
}

fn outlier_policy(od: &OutlierDetection) -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: Some(od.consecutive_5xx_errors),
        consecutive_gateway: od.consecutive_gateway_errors,
        interval: od.interval,
        base_ejection_time: od.base_ejection_time,
        max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
        max_ejection_percent: od.max_ejection_percent,
        min_health_percent: od.min_health_percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No `connectionPool`: Envoy's 1024s, not Istio's unbounded 2^32 − 1.
    #[test]
    fn circuit_breakers_default_to_envoys_1024() {
        let none = pool_settings(&ConnectionPool::default(), false);
        assert_eq!(none.max_in_flight, Some(1024));
        assert_eq!(none.max_connections, Some(1024));
        assert_eq!(
            pool_settings(&ConnectionPool::default(), true).max_in_flight,
            Some(1024)
        );
        let set = ConnectionPool {
            max_connections: Some(10),
            http1_max_pending_requests: Some(5),
            ..ConnectionPool::default()
        };
        let set = pool_settings(&set, false);
        assert_eq!(
            (set.max_in_flight, set.max_connections),
            (Some(15), Some(10))
        );
    }
}
