//! What the request path reads of a cluster: its endpoints as they are at run time and a
//! balancer over the routable ones, built whole by the cluster's control task and published
//! with one `ArcSwap::store`.
//!
//! Builds only: no task, no I/O, no clock. Ejected endpoints stay in the list with weight 0 in
//! the balancer, so indices are stable and, with Maglev, only their keys move (as Envoy rebuilds
//! its table from the healthy hosts).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use http::uri::Authority;
use tokio::sync::Notify;

use super::stats::EndpointStats;
use crate::balancer::{Balancer, InFlight, Policy};
use crate::endpoint::Endpoint;
use crate::health::HostCounters;
use crate::session::{EndpointId, SessionKeys};

/// One endpoint at run time: the endpoint, and what the request path counts for it. Shared
/// across rebuilds, so its counters survive them.
#[derive(Debug)]
pub struct EndpointState {
    /// The endpoint: its key (also its label in metrics and on the admin pages) and weight.
    pub endpoint: Endpoint,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once.
    pub authority: Authority,
    /// Consecutive-error counters for outlier detection.
    pub counters: HostCounters,
    /// Requests in flight, for `LEAST_REQUEST` and the admin page.
    pub in_flight: AtomicU32,
    /// Out of rotation (ejected, or failing its active checks), as the control task last said.
    out: AtomicBool,
    /// Woken when the endpoint goes out: requests waiting on it may go elsewhere at once.
    went_out: Notify,
    /// Responses, cold and warm calls, name, users, health: what the dashboard shows.
    pub stats: EndpointStats,
}

impl EndpointState {
    /// The run-time state of the endpoint at `addr`, with fresh counters.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        let endpoint = Endpoint::at(addr, weight);
        let authority =
            Authority::try_from(&*endpoint.key).expect("a socket address is a valid authority");
        Self {
            endpoint,
            addr,
            authority,
            counters: HostCounters::default(),
            in_flight: AtomicU32::new(0),
            out: AtomicBool::new(false),
            went_out: Notify::new(),
            stats: EndpointStats::default(),
        }
    }

    /// The same, with these stats (counting into a cluster's metric series).
    pub fn with_stats(mut self, stats: EndpointStats) -> Self {
        self.stats = stats;
        self
    }

    /// Its key: the metric label, the admin pages' name, the hash key.
    pub fn label(&self) -> &Arc<str> {
        &self.endpoint.key
    }

    /// Marks it in or out of rotation; going out wakes [`EndpointState::went_out`]'s waiters.
    pub fn set_out(&self, out: bool) {
        if self.out.swap(out, Ordering::AcqRel) != out && out {
            self.went_out.notify_waiters();
        }
    }

    /// Whether it is out of rotation now.
    pub fn is_out(&self) -> bool {
        self.out.load(Ordering::Acquire)
    }

    /// Resolves when the endpoint is, or goes, out of rotation (checked after registering, so
    /// a change in between is not missed).
    pub async fn went_out(&self) {
        let notified = self.went_out.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.out.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Its balancing weight.
    pub fn weight(&self) -> u32 {
        self.endpoint.weight
    }
}

/// What the request path reads: the endpoints and a balancer over the routable ones.
#[derive(Debug)]
pub struct ClusterState {
    /// Every discovered endpoint, sorted by address. Balancer indices point here.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Parallel to `endpoints`: whether outlier detection has it out.
    pub ejected: Vec<bool>,
    /// Over the endpoints not ejected; `None` when there is none or the build failed.
    pub balancer: Option<Balancer>,
    /// Per session key, parallel to `endpoints`: each endpoint's persistent-session id, made
    /// at the first session this state sees (the keys do not change while the process runs).
    pub session_ids: OnceLock<Vec<Vec<EndpointId>>>,
}

impl ClusterState {
    /// No endpoint, no balancer: what a cluster serves (503) before discovery answers.
    pub fn empty() -> Self {
        Self {
            endpoints: Vec::new(),
            ejected: Vec::new(),
            balancer: None,
            session_ids: OnceLock::new(),
        }
    }

    /// The endpoint persistent session `id` (made with key `key_index` of `keys`, for cluster
    /// `cluster`) names, if it is here and may be sent to (not ejected, not out of rotation).
    pub fn session_endpoint(
        &self,
        keys: &SessionKeys,
        cluster: &str,
        key_index: usize,
        id: EndpointId,
    ) -> Option<usize> {
        let ids = self.session_ids.get_or_init(|| {
            (0..keys.len())
                .map(|k| {
                    self.endpoints
                        .iter()
                        .map(|e| keys.endpoint_id(k, cluster, e.label()))
                        .collect()
                })
                .collect()
        });
        let index = ids.get(key_index)?.iter().position(|e| *e == id)?;
        let endpoint = &self.endpoints[index];
        (!self.ejected[index] && !endpoint.is_out() && endpoint.weight() > 0).then_some(index)
    }

    /// How many endpoints the balancer may pick.
    pub fn routable(&self) -> usize {
        self.balancer.as_ref().map_or(0, Balancer::len)
    }
}

impl InFlight for ClusterState {
    fn in_flight(&self, endpoint: usize) -> u32 {
        self.endpoints
            .get(endpoint)
            .map_or(0, |e| e.in_flight.load(Ordering::Relaxed))
    }
}

/// Share of the hashing table whose endpoint (by key) differs from `before`'s to `after`'s:
/// the users a change moved. `None` unless both are Maglev tables of one size.
pub fn moved_share(before: &ClusterState, after: &ClusterState) -> Option<f64> {
    let old = before.balancer.as_ref()?.maglev()?;
    let new = after.balancer.as_ref()?.maglev()?;
    if old.size() != new.size() {
        return None;
    }
    let size = old.size() as usize;
    let moved = (0..size)
        .filter(|&slot| {
            before.endpoints[old.slot(slot)].label() != after.endpoints[new.slot(slot)].label()
        })
        .count();
    Some(moved as f64 / size as f64)
}

/// Builds a state: a balancer over `endpoints` where unroutable ones weigh 0.
pub fn build_state(
    endpoints: &[Arc<EndpointState>],
    policy: Policy,
    routable: impl Fn(&SocketAddr) -> bool,
) -> ClusterState {
    let ejected = endpoints.iter().map(|e| !routable(&e.addr)).collect();
    build(endpoints.to_vec(), ejected, policy)
}

/// [`build_state`] with the unroutable endpoints already known (`ejected`, parallel to
/// `endpoints`): owns what it reads, so it can run on a blocking thread.
pub(super) fn build(
    endpoints: Vec<Arc<EndpointState>>,
    ejected: Vec<bool>,
    policy: Policy,
) -> ClusterState {
    let weighted: Vec<Endpoint> = endpoints
        .iter()
        .zip(&ejected)
        .map(|(e, out)| Endpoint {
            weight: if *out { 0 } else { e.weight() },
            ..e.endpoint.clone()
        })
        .collect();
    let balancer = match Balancer::new(&weighted, policy, fastrand::u64(..)) {
        Ok(b) if !b.is_empty() => Some(b),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the balancer; the cluster has no endpoint");
            None
        }
    };
    ClusterState {
        endpoints,
        ejected,
        balancer,
        session_ids: OnceLock::new(),
    }
}
