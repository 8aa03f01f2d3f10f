//! One upstream cluster at run time: its endpoints, its balancer, its pool, and the background
//! task that keeps the balancer in step with discovery and outlier detection.
//!
//! The request path reads [`Cluster::state`] (one `ArcSwap` load) and never waits for a build.
//! The control task owns everything that changes: it receives endpoint sets from discovery and
//! trips from the request path, runs the pure [`Ejections`] state machine, and publishes a new
//! [`ClusterState`] whenever the routable set changes. Ejected endpoints stay in the endpoint
//! list with weight 0 in the balancer, so indices are stable and, with Maglev, only their keys
//! move (as Envoy rebuilds its table from the healthy hosts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::uri::Authority;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::balancer::{self, Balancer, InFlight, Policy};
use crate::config::model::HashKey;
use crate::discovery::{DnsResolver, DnsTarget, EndpointSet, RefreshBounds, watch_dns};
use crate::health::active::{ActiveCheck, ProbeState};
use crate::health::{Ejections, HostCounters, OutlierPolicy};
use crate::metrics::{ClusterLabels, Metrics};
use crate::proxy::upstream::{PoolSettings, Upstream};

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fixed set (ServiceEntry `STATIC`).
    Static(EndpointSet),
    /// DNS names, re-resolved on their TTL.
    Dns(Vec<DnsTarget>),
}

/// Everything that defines a cluster. Two equal specs make the same cluster, so a config reload
/// that leaves a cluster's spec alone keeps the running cluster (its pool, its ejections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `outbound|<port>|<subset>|<host>`, as Envoy names clusters.
    pub name: Arc<str>,
    /// Where endpoints come from.
    pub source: Source,
    /// The balancing policy.
    pub policy: Policy,
    /// What `consistentHash` hashes, when the policy is a hash.
    pub hash_key: Option<HashKey>,
    /// The pool settings.
    pub pool: PoolSettings,
    /// Outlier detection; `None`: never eject.
    pub outlier: Option<OutlierPolicy>,
    /// Active HTTP checks; `None`: off.
    pub active: Option<ActiveCheck>,
}

/// One endpoint, shared across rebuilds so its counters survive them.
#[derive(Debug)]
pub struct EndpointShared {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once.
    pub authority: Authority,
    /// `addr` as a metric label and hash key, built once.
    pub label: Arc<str>,
    /// Balancing weight.
    pub weight: u32,
    /// Consecutive-error counters for outlier detection.
    pub counters: HostCounters,
    /// Requests in flight, for `LEAST_REQUEST` and the admin page.
    pub in_flight: AtomicU32,
}

/// What the request path reads: the endpoints and a balancer over the routable ones.
#[derive(Debug)]
pub struct ClusterState {
    /// Every discovered endpoint, sorted by address. Balancer indices point here.
    pub endpoints: Vec<Arc<EndpointShared>>,
    /// Parallel to `endpoints`: whether outlier detection has it out.
    pub ejected: Vec<bool>,
    /// Over the endpoints not ejected; `None` when there is none or the build failed.
    pub balancer: Option<Balancer>,
}

impl ClusterState {
    fn empty() -> Self {
        Self {
            endpoints: Vec::new(),
            ejected: Vec::new(),
            balancer: None,
        }
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

/// A running cluster. Dropping it stops its discovery and control tasks.
#[derive(Debug)]
pub struct Cluster {
    /// Its definition.
    pub spec: ClusterSpec,
    /// Its pool.
    pub upstream: Upstream,
    /// Its label in metrics.
    pub labels: ClusterLabels,
    metrics: Arc<Metrics>,
    /// This cluster's series of `upstream_latency`, looked up on first use (not at start, so
    /// a cluster that never forwarded shows no series, as before), then kept: observing skips
    /// the family's lock and label hashing.
    latency: OnceLock<crate::metrics::ShardedHistogram>,
    state: Arc<ArcSwap<ClusterState>>,
    trips: mpsc::UnboundedSender<SocketAddr>,
    tasks: Vec<AbortHandle>,
    /// Keeps a static cluster's endpoint channel open for the control task.
    _static_endpoints: Option<watch::Sender<EndpointSet>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// Starts a cluster: discovery (for DNS), and the control task. Must run inside a Tokio
    /// runtime. The first state is published before this returns for static clusters; DNS
    /// clusters start empty and fill within one lookup.
    pub fn start(
        spec: ClusterSpec,
        resolver: &DnsResolver,
        bounds: RefreshBounds,
        metrics: Arc<Metrics>,
    ) -> Self {
        let labels = ClusterLabels {
            cluster: spec.name.clone(),
        };
        let state = Arc::new(ArcSwap::from_pointee(ClusterState::empty()));
        let (trips, trips_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let mut static_endpoints = None;
        let endpoints_rx = match &spec.source {
            Source::Static(set) => {
                let (tx, rx) = watch::channel(set.clone());
                static_endpoints = Some(tx);
                rx
            }
            Source::Dns(targets) => {
                let (tx, rx) = watch::channel(EndpointSet::from(Vec::new()));
                let watch = watch_dns(resolver.clone(), targets.clone(), bounds, tx);
                tasks.push(tokio::spawn(watch).abort_handle());
                rx
            }
        };
        let mut control = Control {
            state: state.clone(),
            policy: spec.policy,
            ejections: Ejections::new(spec.outlier.clone().unwrap_or_else(never_eject)),
            endpoints: Vec::new(),
            metrics: metrics.clone(),
            labels: labels.clone(),
            trip_policy: spec.outlier.clone(),
            active: spec.active.clone(),
            http2: spec.pool.http2,
            probes: HashMap::new(),
        };
        if let Source::Static(set) = &spec.source {
            // Publish before returning so a static cluster serves from its first request.
            control.set_endpoints(set);
        }
        tasks.push(tokio::spawn(control.run(endpoints_rx, trips_rx)).abort_handle());
        let upstream = Upstream::new(&spec.pool);
        Self {
            spec,
            upstream,
            labels,
            metrics,
            latency: OnceLock::new(),
            state,
            trips,
            tasks,
            _static_endpoints: static_endpoints,
        }
    }

    /// The current state (one atomic load and reference count).
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.load_full()
    }

    /// Records the time one attempt waited for response headers.
    pub fn observe_latency(&self, seconds: f64) {
        self.latency
            .get_or_init(|| {
                self.metrics
                    .upstream_latency
                    .get_or_create(&self.labels)
                    .clone()
            })
            .observe(seconds);
    }

    /// Reports that the endpoint at `index` of `state` crossed an outlier threshold.
    pub fn report_trip(&self, state: &ClusterState, index: usize) {
        if let Some(endpoint) = state.endpoints.get(index) {
            // By address: the control task's list may have changed since this request's load.
            let _ = self.trips.send(endpoint.addr);
        }
    }
}

/// Outlier detection that never trips (no `outlierDetection` in the DestinationRule).
fn never_eject() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: None,
        consecutive_gateway: None,
        ..OutlierPolicy::default()
    }
}

struct Control {
    state: Arc<ArcSwap<ClusterState>>,
    policy: Policy,
    ejections: Ejections<SocketAddr>,
    endpoints: Vec<Arc<EndpointShared>>,
    metrics: Arc<Metrics>,
    labels: ClusterLabels,
    trip_policy: Option<OutlierPolicy>,
    active: Option<ActiveCheck>,
    /// Probes speak the cluster's protocol (HTTP/2 or HTTP/1.1).
    http2: bool,
    probes: HashMap<SocketAddr, ProbeState>,
}

impl Control {
    async fn run(
        mut self,
        mut endpoints_rx: watch::Receiver<EndpointSet>,
        mut trips_rx: mpsc::UnboundedReceiver<SocketAddr>,
    ) {
        let interval = self
            .ejections
            .policy()
            .interval
            .max(Duration::from_millis(100));
        let mut decay = tokio::time::interval(interval);
        decay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probe_every = self
            .active
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.interval);
        let mut probe_tick = tokio::time::interval(probe_every);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (probe_tx, mut probe_rx) = mpsc::unbounded_channel::<(SocketAddr, bool)>();
        let prober = self.active.as_ref().map(|c| {
            Upstream::new(&PoolSettings {
                connect_timeout: c.timeout,
                http2: self.http2,
                ..PoolSettings::default()
            })
        });
        loop {
            let due = self.ejections.next_due();
            let release = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = endpoints_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let set = endpoints_rx.borrow_and_update().clone();
                    self.set_endpoints(&set);
                }
                Some(addr) = trips_rx.recv() => self.trip(addr),
                () = release => {
                    if self.ejections.release_due(Instant::now()) {
                        self.publish();
                    }
                }
                _ = decay.tick() => self.ejections.decay(),
                _ = probe_tick.tick(), if self.active.is_some() => {
                    if let (Some(check), Some(prober)) = (&self.active, &prober) {
                        for endpoint in &self.endpoints {
                            let probe = probe(prober.clone(), endpoint.addr, endpoint.authority.clone(), check.clone());
                            let (tx, addr) = (probe_tx.clone(), endpoint.addr);
                            tokio::spawn(async move {
                                let _ = tx.send((addr, probe.await));
                            });
                        }
                    }
                }
                Some((addr, passed)) = probe_rx.recv() => self.probed(addr, passed),
            }
        }
    }

    fn set_endpoints(&mut self, set: &EndpointSet) {
        let previous = std::mem::take(&mut self.endpoints);
        self.endpoints = set
            .iter()
            .map(|e| {
                previous
                    .iter()
                    .find(|p| p.addr == e.addr && p.weight == e.weight)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(endpoint(e.addr, e.weight)))
            })
            .collect();
        self.ejections
            .set_hosts(self.endpoints.iter().map(|e| e.addr));
        self.metrics
            .endpoints
            .get_or_create(&self.labels)
            .set(self.endpoints.len() as i64);
        self.publish();
    }

    fn trip(&mut self, addr: SocketAddr) {
        let Some(endpoint) = self.endpoints.iter().find(|e| e.addr == addr) else {
            return;
        };
        if self.trip_policy.is_none() {
            return;
        }
        endpoint.counters.reset();
        if self.ejections.on_trip(&addr, Instant::now()) {
            tracing::warn!(cluster = %self.labels.cluster, endpoint = %addr, "endpoint ejected");
            self.metrics.ejections.get_or_create(&self.labels).inc();
            self.publish();
        }
    }

    fn probed(&mut self, addr: SocketAddr, passed: bool) {
        let Some(check) = &self.active else { return };
        if !self.endpoints.iter().any(|e| e.addr == addr) {
            return;
        }
        let state = self.probes.entry(addr).or_default();
        if state.observe(passed, check) {
            let healthy = state.is_healthy();
            tracing::warn!(cluster = %self.labels.cluster, endpoint = %addr, healthy, "active health check changed");
            self.publish();
        }
    }

    fn publish(&self) {
        let state = build_state(&self.endpoints, self.policy, |addr| {
            self.ejections.is_routable(addr)
                && self.probes.get(addr).is_none_or(ProbeState::is_healthy)
        });
        self.metrics
            .healthy_endpoints
            .get_or_create(&self.labels)
            .set(state.routable() as i64);
        self.metrics
            .table_rebuilds
            .get_or_create(&self.labels)
            .inc();
        self.state.store(Arc::new(state));
    }
}

/// One active check: GET `check.path`; a 2xx within `check.timeout` passes.
async fn probe(
    prober: Upstream,
    addr: SocketAddr,
    authority: Authority,
    check: ActiveCheck,
) -> bool {
    let Ok(request) = http::Request::get(check.path.as_str())
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "sticky-gateway-health-check")
        .body(crate::proxy::full(bytes::Bytes::new()))
    else {
        return false;
    };
    match tokio::time::timeout(check.timeout, prober.send(addr, &authority, request)).await {
        Ok(Ok(response)) => response.status().is_success(),
        _ => false,
    }
}

fn endpoint(addr: SocketAddr, weight: u32) -> EndpointShared {
    let label: Arc<str> = addr.to_string().into();
    let authority = Authority::try_from(&*label).expect("a socket address is a valid authority");
    EndpointShared {
        addr,
        authority,
        label,
        weight,
        counters: HostCounters::default(),
        in_flight: AtomicU32::new(0),
    }
}

/// Builds a state: a balancer over `endpoints` where unroutable ones weigh 0.
pub fn build_state(
    endpoints: &[Arc<EndpointShared>],
    policy: Policy,
    routable: impl Fn(&SocketAddr) -> bool,
) -> ClusterState {
    let ejected: Vec<bool> = endpoints.iter().map(|e| !routable(&e.addr)).collect();
    let weighted: Vec<balancer::Endpoint> = endpoints
        .iter()
        .zip(&ejected)
        .map(|(e, out)| balancer::Endpoint::new(&*e.label, if *out { 0 } else { e.weight }))
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
        endpoints: endpoints.to_vec(),
        ejected,
        balancer,
    }
}

#[cfg(test)]
mod tests;
