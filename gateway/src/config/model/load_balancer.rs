//! `loadBalancer`: simple policies and consistent hashing (hash key and algorithm), with
//! Istio's and Envoy's bounds on table and ring sizes.
//!
//! Pure: spec in, model and findings out; building tables is the balancer's job, not this one's.

use std::time::Duration;

use super::Problems;
use crate::config::spec;

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
    /// `httpHeaderName`, parsed once here: the request path looks it up by name, not by text
    /// (a `&str` key is parsed into a field name on every lookup, ~300 instructions).
    Header(http::HeaderName),
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

pub(super) fn load_balancer(
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
        let at = format!("{path}.httpHeaderName");
        non_empty(p, &at, name).and_then(|n| match http::HeaderName::try_from(n.as_str()) {
            Ok(name) => Some(HashKey::Header(name)),
            Err(_) => {
                // No request carries it: as Envoy, no hash, so a random endpoint.
                p.warn(&at, format!("{n:?} is not a valid HTTP field name: no request has it, so no request is hashed"));
                None
            }
        })
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
