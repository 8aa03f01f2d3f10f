//! Upstream endpoints: the one type discovery finds, the balancers place, the cluster keeps
//! and the admin pages show, and the one place a set of them is checked.
//!
//! An endpoint is identified by its *hash key* (`address:port`, or a name), never by its position
//! in the list discovery returned: the consistent-hash algorithms sort by key before they build,
//! so two gateways that see the same set build the same table whatever order they saw it in.
//! An endpoint the gateway can connect to also has its socket address; one known only by name
//! (Envoy's hash on host name, simulations, tests) has none.
//!
//! A leaf: this module imports nothing of the crate, so every other module may use it.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;

/// One upstream endpoint: the key it is hashed by, its load-balancing weight and, when it is an
/// address, where to connect.
///
/// Ordered by address first (then key, then weight), so a set of discovered endpoints sorts by
/// address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Where to connect; `None` for an endpoint known only by name.
    pub addr: Option<SocketAddr>,
    /// Hash key, usually `address:port` (`10.0.0.1:8080`, `[::1]:8080`) or a host name. Also
    /// the endpoint's label in metrics and on the admin pages.
    pub key: Arc<str>,
    /// Relative weight; 0 takes the endpoint out of rotation without changing anyone's index.
    /// (ServiceEntry `endpoints[].weight`; 1 when unset.)
    pub weight: u32,
}

impl Endpoint {
    /// An endpoint with the given hash key and weight; its address is the key's when the key is
    /// a socket address.
    pub fn new(key: impl Into<Arc<str>>, weight: u32) -> Self {
        let key = key.into();
        Self {
            addr: key.parse().ok(),
            key,
            weight,
        }
    }

    /// The endpoint at `addr`, hashed by its text (`10.0.0.1:8080`), as Envoy hashes hosts.
    pub fn at(addr: SocketAddr, weight: u32) -> Self {
        Self {
            addr: Some(addr),
            key: addr.to_string().into(),
            weight,
        }
    }
}

/// An immutable endpoint set, sorted by address.
pub type EndpointSet = Arc<[Endpoint]>;

/// Sorts endpoints into a set, keeping the first of several with the same address or key.
pub fn endpoint_set(mut endpoints: Vec<Endpoint>) -> EndpointSet {
    endpoints.sort();
    endpoints.dedup_by(|a, b| a.key == b.key);
    endpoints.into()
}

/// Why a set of endpoints cannot be balanced over.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    /// A key is empty, so it cannot place the endpoint anywhere stable.
    #[error("endpoint #{index} has an empty hash key; use its address:port or a name")]
    EmptyKey {
        /// Position of the endpoint in the list given.
        index: usize,
    },
    /// Two endpoints share a key: they would take the same place in every table.
    #[error(
        "endpoint key {key:?} appears twice (#{first} and #{second}); each endpoint needs a unique hash key"
    )]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Position of its first occurrence.
        first: usize,
        /// Position of its second occurrence.
        second: usize,
    },
    /// More endpoints than a table index can hold.
    #[error("{count} endpoints given; at most {max} are supported")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Most endpoints one balancer accepts: indices are stored as `u32`.
pub const MAX_ENDPOINTS: usize = u32::MAX as usize - 1;

/// An endpoint with a non-zero weight, in hash-key order, remembering where the caller had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// Index into the caller's slice: what lookups return.
    pub index: u32,
    /// Its weight, never 0.
    pub weight: u32,
}

/// Checks `endpoints` and returns those with a non-zero weight sorted by hash key.
///
/// Keys must be non-empty and unique (checked over all endpoints, weight 0 included, because a
/// duplicate is a configuration mistake whatever the weight).
pub(crate) fn sorted_members(endpoints: &[Endpoint]) -> Result<Vec<Member>, EndpointError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(EndpointError::TooMany {
            count: endpoints.len(),
            max: MAX_ENDPOINTS,
        });
    }
    if let Some(index) = endpoints.iter().position(|e| e.key.is_empty()) {
        return Err(EndpointError::EmptyKey { index });
    }
    let mut order: Vec<u32> = (0..endpoints.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| endpoints[a as usize].key.cmp(&endpoints[b as usize].key));
    if let Some(pair) = order
        .windows(2)
        .find(|w| endpoints[w[0] as usize].key == endpoints[w[1] as usize].key)
    {
        let (first, second) = (pair[0].min(pair[1]) as usize, pair[0].max(pair[1]) as usize);
        return Err(EndpointError::DuplicateKey {
            key: endpoints[first].key.to_string(),
            first,
            second,
        });
    }
    Ok(order
        .into_iter()
        .filter_map(|index| {
            let weight = endpoints[index as usize].weight;
            (weight > 0).then_some(Member { index, weight })
        })
        .collect())
}

/// Whether every member is in `excluded`, i.e. no pick can succeed for this request.
///
/// O(|excluded|²) on the tiny slice of endpoints already tried, with no allocation; members are
/// not scanned, so this stays cheap for large sets.
pub(crate) fn all_excluded(
    member_count: usize,
    excluded: &[usize],
    is_member: impl Fn(usize) -> bool,
) -> bool {
    if excluded.len() < member_count {
        return false;
    }
    let distinct_members = excluded
        .iter()
        .enumerate()
        .filter(|&(i, &e)| is_member(e) && !excluded[..i].contains(&e))
        .count();
    distinct_members >= member_count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[(&str, u32)]) -> Vec<Endpoint> {
        list.iter().map(|&(k, w)| Endpoint::new(k, w)).collect()
    }

    #[test]
    fn members_come_sorted_by_key_with_caller_indices_and_without_zero_weights() {
        let members = sorted_members(&eps(&[("c", 1), ("a", 2), ("b", 0)])).unwrap();
        assert_eq!(
            members,
            vec![
                Member {
                    index: 1,
                    weight: 2
                },
                Member {
                    index: 0,
                    weight: 1
                }
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_naming_both_positions() {
        let err = sorted_members(&eps(&[("x", 1), ("y", 1), ("x", 0)])).unwrap_err();
        assert_eq!(
            err,
            EndpointError::DuplicateKey {
                key: "x".into(),
                first: 0,
                second: 2
            }
        );
        assert!(err.to_string().contains("\"x\" appears twice"));
    }

    #[test]
    fn empty_keys_are_rejected() {
        let err = sorted_members(&eps(&[("x", 1), ("", 1)])).unwrap_err();
        assert_eq!(err, EndpointError::EmptyKey { index: 1 });
    }

    #[test]
    fn an_address_key_is_an_address() {
        let e = Endpoint::new("10.0.0.1:8080", 2);
        assert_eq!(e, Endpoint::at("10.0.0.1:8080".parse().unwrap(), 2));
        assert_eq!(Endpoint::new("pod-a", 1).addr, None);
    }

    #[test]
    fn sets_are_sorted_by_address_and_deduplicated() {
        let e = |a: &str| Endpoint::at(a.parse().unwrap(), 1);
        let set = endpoint_set(vec![
            e("10.0.0.10:80"),
            e("10.0.0.2:80"),
            e("10.0.0.1:80"),
            e("10.0.0.2:80"),
        ]);
        assert_eq!(
            &*set,
            &[e("10.0.0.1:80"), e("10.0.0.2:80"), e("10.0.0.10:80")]
        );
    }

    #[test]
    fn all_excluded_counts_distinct_members_only() {
        let member = |e: usize| e < 3;
        assert!(!all_excluded(3, &[0, 1], member));
        assert!(!all_excluded(3, &[0, 1, 1], member));
        assert!(!all_excluded(3, &[0, 1, 7], member));
        assert!(all_excluded(3, &[2, 0, 1], member));
        assert!(all_excluded(0, &[], member));
    }
}
