//! `DestinationRule` → per-host traffic policy: load balancer, connection pool, outlier
//! detection, subsets and per-port overrides.

use std::time::Duration;

use super::{Labels, Meta, Names, Problems};
use crate::config::spec;

/// A validated `DestinationRule`.
#[derive(Debug, Clone)]
pub struct DestinationRule {
    /// Identity and origin.
    pub meta: Meta,
    /// `host`, fully qualified.
    pub host: String,
    /// `trafficPolicy` (defaults when unset).
    pub traffic_policy: TrafficPolicy,
    /// `subsets[]`.
    pub subsets: Vec<Subset>,
}

/// `subsets[]` entry.
#[derive(Debug, Clone)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels` an endpoint must carry to belong to the subset.
    pub labels: Labels,
    /// `trafficPolicy`, overriding the rule's own where set.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, Default)]
pub struct TrafficPolicy {
    /// `loadBalancer`; `None` leaves the gateway's default.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`, with Istio's defaults.
    pub connection_pool: ConnectionPool,
    /// `outlierDetection`; `None` means no ejection, as in Istio.
    pub outlier_detection: Option<OutlierDetection>,
    /// `portLevelSettings[]`.
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// `portLevelSettings[]` entry.
#[derive(Debug, Clone)]
pub struct PortTrafficPolicy {
    /// `port.number`.
    pub port: u16,
    /// `loadBalancer`.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`.
    pub connection_pool: ConnectionPool,
    /// `outlierDetection`.
    pub outlier_detection: Option<OutlierDetection>,
}

/// `loadBalancer`: the `simple` | `consistentHash` oneof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadBalancer {
    /// `simple`.
    Simple(SimpleLb),
    /// `consistentHash`.
    ConsistentHash {
        /// What to hash.
        key: HashKey,
        /// How to map hashes to endpoints.
        algorithm: HashAlgorithm,
    },
}

/// `simple` values (`LEAST_CONN` is read as its replacement `LEAST_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimpleLb {
    /// `UNSPECIFIED`: the gateway's default.
    Unspecified,
    /// `ROUND_ROBIN`.
    RoundRobin,
    /// `LEAST_REQUEST` (and the deprecated `LEAST_CONN`).
    LeastRequest,
    /// `RANDOM`.
    Random,
    /// `PASSTHROUGH`: to the address the client asked for.
    Passthrough,
}

/// The hash key oneof of `consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName`, lowercased.
    Header(String),
    /// `httpCookie`.
    Cookie {
        /// `name`.
        name: String,
        /// `path` for a generated cookie.
        path: Option<String>,
        /// `ttl`: with it, a missing cookie is generated; without it, none is.
        ttl: Option<Duration>,
    },
    /// `useSourceIp: true`.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// The hash algorithm oneof of `consistentHash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// `maglev`; `table_size` is prime and below 5,000,011.
    Maglev {
        /// Slots in the lookup table.
        table_size: u64,
    },
    /// `ringHash` (or the deprecated top-level `minimumRingSize`).
    RingHash {
        /// Minimum number of ring entries.
        minimum_ring_size: u64,
    },
    /// Neither set: Istio programs a ring hash of 1024; the gateway picks its own default.
    Default,
}

/// Maglev table size when `maglev: {}` leaves it unset (Envoy's default).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65_537;
/// Envoy's upper bound (exclusive) on the Maglev table size.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;
/// Istio's ring size when `ringHash: {}` leaves it unset.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// Envoy's bound on ring sizes.
pub const MAX_RING_SIZE: u64 = 8_388_608;

/// `connectionPool`, with Istio's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPool {
    /// `tcp.connectTimeout` (10s).
    pub connect_timeout: Duration,
    /// `tcp.maxConnections` (unlimited).
    pub max_connections: Option<u32>,
    /// `http.http1MaxPendingRequests` (unlimited).
    pub http1_max_pending_requests: Option<u32>,
    /// `http.maxRequestsPerConnection` (unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// `http.idleTimeout` (1h).
    pub idle_timeout: Duration,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_connections: None,
            http1_max_pending_requests: None,
            max_requests_per_connection: None,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// `outlierDetection`, with Istio's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (5); 0 disables.
    pub consecutive_5xx_errors: u32,
    /// `consecutiveGatewayErrors` (off).
    pub consecutive_gateway_errors: Option<u32>,
    /// `interval` (10s).
    pub interval: Duration,
    /// `baseEjectionTime` (30s).
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (10).
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (0).
    pub min_health_percent: u32,
}

pub(crate) fn destination_rule(
    spec: spec::DestinationRuleSpec,
    meta: Meta,
    names: &Names,
    p: &mut Problems,
) -> DestinationRule {
    let host = match spec.host.filter(|h| !h.trim().is_empty()) {
        Some(h) => {
            super::virtual_service::check_host(p, "spec.host", &h);
            names.fqdn(&h)
        }
        None => {
            p.error("spec.host", "host is required");
            String::new()
        }
    };
    let top_policy = spec
        .traffic_policy
        .map(|t| traffic_policy(t, "spec.trafficPolicy", p))
        .unwrap_or_default();
    let mut subsets: Vec<Subset> = Vec::new();
    for (i, s) in spec.subsets.unwrap_or_default().into_iter().enumerate() {
        let at = format!("spec.subsets[{i}]");
        let name = s.name.unwrap_or_default();
        if name.is_empty() {
            p.error(format!("{at}.name"), "name is required");
        } else if subsets.iter().any(|other| other.name == name) {
            p.error(
                format!("{at}.name"),
                format!("subset {name:?} is defined twice"),
            );
        }
        let policy = s
            .traffic_policy
            .map(|t| traffic_policy(t, &format!("{at}.trafficPolicy"), p));
        subsets.push(Subset {
            name,
            labels: s.labels.unwrap_or_default(),
            traffic_policy: policy,
        });
    }
    DestinationRule {
        meta,
        host,
        traffic_policy: top_policy,
        subsets,
    }
}

fn traffic_policy(t: spec::TrafficPolicy, path: &str, p: &mut Problems) -> TrafficPolicy {
    let mut port_level_settings: Vec<PortTrafficPolicy> = Vec::new();
    for (i, s) in t
        .port_level_settings
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let at = format!("{path}.portLevelSettings[{i}]");
        let number = s.port.and_then(|port| port.number);
        let Some(port) = p.port(&format!("{at}.port.number"), number) else {
            if number.is_none() {
                p.error(format!("{at}.port.number"), "port number is required");
            }
            continue;
        };
        if port_level_settings.iter().any(|other| other.port == port) {
            p.error(
                format!("{at}.port.number"),
                format!("port {port} is set twice"),
            );
        }
        port_level_settings.push(PortTrafficPolicy {
            port,
            load_balancer: s
                .load_balancer
                .and_then(|l| load_balancer(l, &format!("{at}.loadBalancer"), p)),
            connection_pool: connection_pool(s.connection_pool, &format!("{at}.connectionPool"), p),
            outlier_detection: s
                .outlier_detection
                .map(|o| outlier_detection(o, &format!("{at}.outlierDetection"), p)),
        });
    }
    TrafficPolicy {
        load_balancer: t
            .load_balancer
            .and_then(|l| load_balancer(l, &format!("{path}.loadBalancer"), p)),
        connection_pool: connection_pool(t.connection_pool, &format!("{path}.connectionPool"), p),
        outlier_detection: t
            .outlier_detection
            .map(|o| outlier_detection(o, &format!("{path}.outlierDetection"), p)),
        port_level_settings,
    }
}

fn load_balancer(
    l: spec::LoadBalancerSettings,
    path: &str,
    p: &mut Problems,
) -> Option<LoadBalancer> {
    match (l.simple, l.consistent_hash) {
        (Some(_), Some(_)) => {
            p.error(path, "only one of simple or consistentHash may be set");
            None
        }
        (Some(simple), None) => {
            let at = format!("{path}.simple");
            let lb = match simple.as_str() {
                "UNSPECIFIED" => SimpleLb::Unspecified,
                "ROUND_ROBIN" => SimpleLb::RoundRobin,
                "LEAST_REQUEST" => SimpleLb::LeastRequest,
                "LEAST_CONN" => {
                    p.warn(at, "LEAST_CONN is deprecated; read as LEAST_REQUEST");
                    SimpleLb::LeastRequest
                }
                "RANDOM" => SimpleLb::Random,
                "PASSTHROUGH" => SimpleLb::Passthrough,
                other => {
                    let rule = format!(
                        "{other:?} is not one of UNSPECIFIED, ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH"
                    );
                    p.error(at, rule);
                    return None;
                }
            };
            Some(LoadBalancer::Simple(lb))
        }
        (None, Some(hash)) => consistent_hash(hash, &format!("{path}.consistentHash"), p),
        (None, None) => None,
    }
}

fn consistent_hash(
    h: spec::ConsistentHashLb,
    path: &str,
    p: &mut Problems,
) -> Option<LoadBalancer> {
    let set: Vec<&str> = [
        ("httpHeaderName", h.http_header_name.is_some()),
        ("httpCookie", h.http_cookie.is_some()),
        ("useSourceIp", h.use_source_ip.is_some()),
        (
            "httpQueryParameterName",
            h.http_query_parameter_name.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if set.len() > 1 {
        let rule = format!("only one hash key may be set, found {}", set.join(" and "));
        p.error(path, rule);
        return None;
    }
    let key = if let Some(name) = h.http_header_name {
        non_empty(p, &format!("{path}.httpHeaderName"), name)
            .map(|n| HashKey::Header(n.to_ascii_lowercase()))
    } else if let Some(cookie) = h.http_cookie {
        let at = format!("{path}.httpCookie");
        let ttl = p.duration(&format!("{at}.ttl"), cookie.ttl.as_deref(), true);
        non_empty(p, &format!("{at}.name"), cookie.name.unwrap_or_default()).map(|name| {
            HashKey::Cookie {
                name,
                path: cookie.path,
                ttl,
            }
        })
    } else if let Some(source_ip) = h.use_source_ip {
        if !source_ip {
            p.error(format!("{path}.useSourceIp"), "false selects no hash key");
        }
        source_ip.then_some(HashKey::SourceIp)
    } else if let Some(name) = h.http_query_parameter_name {
        non_empty(p, &format!("{path}.httpQueryParameterName"), name).map(HashKey::QueryParameter)
    } else {
        let rule = "a hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName";
        p.error(path, rule);
        None
    };
    let algorithm = match (h.ring_hash, h.maglev, h.minimum_ring_size) {
        (Some(_), Some(_), _) => {
            p.error(path, "only one of ringHash or maglev may be set");
            None
        }
        (_, Some(_), Some(_)) | (Some(_), _, Some(_)) => {
            let rule = "the deprecated minimumRingSize cannot be combined with ringHash or maglev";
            p.error(format!("{path}.minimumRingSize"), rule);
            None
        }
        (None, Some(m), None) => maglev(m.table_size, &format!("{path}.maglev.tableSize"), p),
        (Some(r), None, None) => ring(
            r.minimum_ring_size,
            &format!("{path}.ringHash.minimumRingSize"),
            p,
        ),
        (None, None, Some(size)) => {
            let at = format!("{path}.minimumRingSize");
            p.warn(&at, "deprecated: use ringHash.minimumRingSize");
            ring(Some(size), &at, p)
        }
        (None, None, None) => Some(HashAlgorithm::Default),
    };
    Some(LoadBalancer::ConsistentHash {
        key: key?,
        algorithm: algorithm?,
    })
}

fn maglev(size: Option<u64>, path: &str, p: &mut Problems) -> Option<HashAlgorithm> {
    let table_size = size
        .filter(|s| *s != 0)
        .unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE);
    if table_size >= MAX_MAGLEV_TABLE_SIZE {
        p.error(
            path,
            format!("{table_size} must be below {MAX_MAGLEV_TABLE_SIZE}"),
        );
        None
    } else if !is_prime(table_size) {
        p.error(path, format!("{table_size} is not prime"));
        None
    } else {
        Some(HashAlgorithm::Maglev { table_size })
    }
}

fn ring(size: Option<u64>, path: &str, p: &mut Problems) -> Option<HashAlgorithm> {
    let minimum_ring_size = size
        .filter(|s| *s != 0)
        .unwrap_or(DEFAULT_MINIMUM_RING_SIZE);
    if minimum_ring_size > MAX_RING_SIZE {
        p.error(
            path,
            format!("{minimum_ring_size} is above Envoy's limit {MAX_RING_SIZE}"),
        );
        return None;
    }
    Some(HashAlgorithm::RingHash { minimum_ring_size })
}

/// Trial division: table sizes are below 5,000,011, so at most ~1,100 divisions.
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn non_empty(p: &mut Problems, path: &str, value: String) -> Option<String> {
    if value.trim().is_empty() {
        p.error(path, "must not be empty");
        None
    } else {
        Some(value)
    }
}

fn connection_pool(
    c: Option<spec::ConnectionPoolSettings>,
    path: &str,
    p: &mut Problems,
) -> ConnectionPool {
    let mut pool = ConnectionPool::default();
    let Some(c) = c else { return pool };
    if let Some(tcp) = c.tcp {
        pool.max_connections = p.count(&format!("{path}.tcp.maxConnections"), tcp.max_connections);
        let at = format!("{path}.tcp.connectTimeout");
        if let Some(d) = p.duration(&at, tcp.connect_timeout.as_deref(), false) {
            pool.connect_timeout = d;
        }
    }
    if let Some(http) = c.http {
        let at = format!("{path}.http");
        pool.http1_max_pending_requests = p.count(
            &format!("{at}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        pool.max_requests_per_connection = p.count(
            &format!("{at}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        if let Some(d) = p.duration(
            &format!("{at}.idleTimeout"),
            http.idle_timeout.as_deref(),
            false,
        ) {
            pool.idle_timeout = d;
        }
    }
    pool
}

fn outlier_detection(o: spec::OutlierDetection, path: &str, p: &mut Problems) -> OutlierDetection {
    let percent = |p: &mut Problems, field: &str, v: Option<i64>, default: u32| {
        p.percent(&format!("{path}.{field}"), v.map(|v| v as f64))
            .map_or(default, |v| v as u32)
    };
    let interval = p.duration(&format!("{path}.interval"), o.interval.as_deref(), false);
    let base = p.duration(
        &format!("{path}.baseEjectionTime"),
        o.base_ejection_time.as_deref(),
        false,
    );
    OutlierDetection {
        consecutive_5xx_errors: o.consecutive_5xx_errors.unwrap_or(5),
        consecutive_gateway_errors: o.consecutive_gateway_errors,
        interval: interval.unwrap_or(Duration::from_secs(10)),
        base_ejection_time: base.unwrap_or(Duration::from_secs(30)),
        max_ejection_percent: percent(p, "maxEjectionPercent", o.max_ejection_percent, 10),
        min_health_percent: percent(p, "minHealthPercent", o.min_health_percent, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::is_prime;

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(655_373));
        assert!(is_prime(2));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
        assert!(!is_prime(0));
        assert!(!is_prime(9));
    }
}
