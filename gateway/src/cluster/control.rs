//! A cluster's control task: the one owner of everything about the cluster that changes. It
//! takes endpoint sets from discovery, trips from the request path and the results of active
//! probes, runs the pure [`Ejections`] state machine, and publishes a new [`ClusterState`]
//! whenever the routable set changes.
//!
//! Off the request path: a request only reads what this task publishes and sends it trips;
//! nothing here is awaited by a request. Nor does a build hold the thread that accepts
//! connections: a new balancer (a Maglev table: 27 ms at 65 537 slots and 100 endpoints) is
//! built on a blocking thread while this task waits. It waits for each build before the next,
//! so a later state is never overtaken by an earlier one; changes that arrive meanwhile are
//! folded into one build.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use super::ClusterSpec;
use super::probe::Prober;
use super::state::{self, ClusterState, EndpointState};
use crate::balancer::Policy;
use crate::endpoint::EndpointSet;
use crate::health::active::{ActiveCheck, ProbeState};
use crate::health::{Ejections, OutlierPolicy};
use crate::metrics::{ClusterLabels, EndpointHolds, Metrics};

/// The control task's state.
pub(super) struct Control {
    state: Arc<ArcSwap<ClusterState>>,
    policy: Policy,
    ejections: Ejections<SocketAddr>,
    endpoints: Vec<Arc<EndpointState>>,
    metrics: Arc<Metrics>,
    labels: ClusterLabels,
    trip_policy: Option<OutlierPolicy>,
    active: Option<ActiveCheck>,
    /// Probes speak the cluster's protocol (HTTP/2 or HTTP/1.1).
    http2: bool,
    probes: HashMap<SocketAddr, ProbeState>,
    /// The endpoints' metric series live while this cluster (or another) holds them.
    holds: EndpointHolds,
    /// The routable set changed since the last publish.
    dirty: bool,
    /// Discovery has sent a set since start (a DNS cluster's first lookup has ended).
    heard: bool,
    /// Turns true once the state of discovery's first set is published.
    discovered: watch::Sender<bool>,
    /// Changes taken in since the routable set last changed, folded into the next build.
    folded: u32,
}

/// At most this many changes are folded into one build: a flood of trips cannot hold the
/// table back for ever.
const MAX_FOLDED: u32 = 64;

impl Control {
    /// The control of the cluster `spec` describes, publishing to `state`.
    pub(super) fn new(
        spec: &ClusterSpec,
        state: Arc<ArcSwap<ClusterState>>,
        metrics: Arc<Metrics>,
        labels: ClusterLabels,
        discovered: watch::Sender<bool>,
    ) -> Self {
        Self {
            state,
            policy: spec.policy,
            ejections: Ejections::new(spec.outlier.clone().unwrap_or_else(never_eject)),
            endpoints: Vec::new(),
            holds: metrics.endpoint_holds(labels.cluster.clone()),
            metrics,
            labels,
            trip_policy: spec.outlier.clone(),
            active: spec.active.clone(),
            http2: spec.pool.http2,
            probes: HashMap::new(),
            dirty: false,
            heard: false,
            discovered,
            folded: 0,
        }
    }

    /// A static cluster's endpoints, published before its first request (on the caller's
    /// thread: a snapshot build, itself off the accept loop).
    pub(super) fn start_static(&mut self, set: &EndpointSet) {
        self.set_endpoints(set);
        let state = state::build(self.endpoints.clone(), self.ejected(), self.policy);
        self.store(state);
        self.dirty = false;
        self.discovered.send_replace(true);
    }

    /// Runs until discovery's channel closes or the cluster aborts it (dropped).
    pub(super) async fn run(
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
        let prober = self
            .active
            .as_ref()
            .map(|check| Prober::new(check.clone(), self.http2));
        loop {
            let due = self.ejections.next_due();
            let release = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            if self.dirty {
                self.folded += 1;
            }
            // Biased: whatever is ready is taken in before a build, so a burst of changes
            // (several trips, a probe round) costs one build.
            tokio::select! {
                biased;
                () = std::future::ready(()), if self.dirty && self.folded > MAX_FOLDED => {
                    self.publish().await;
                }
                changed = endpoints_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let set = endpoints_rx.borrow_and_update().clone();
                    self.heard = true;
                    self.set_endpoints(&set);
                }
                Some(addr) = trips_rx.recv() => self.trip(addr),
                Some((addr, passed)) = probe_rx.recv() => self.probed(addr, passed),
                () = release => {
                    if self.ejections.release_due(Instant::now()) {
                        self.dirty = true;
                    }
                }
                _ = decay.tick() => self.ejections.decay(),
                _ = probe_tick.tick(), if prober.is_some() => {
                    if let Some(prober) = &prober {
                        for endpoint in &self.endpoints {
                            let probe = prober.clone().probe(endpoint.addr, endpoint.authority.clone());
                            let (tx, addr) = (probe_tx.clone(), endpoint.addr);
                            tokio::spawn(async move {
                                let _ = tx.send((addr, probe.await));
                            });
                        }
                    }
                }
                () = std::future::ready(()), if self.dirty => self.publish().await,
            }
        }
    }

    /// Takes a new endpoint set from discovery, keeping the state (counters, in flight) of the
    /// endpoints still in it.
    fn set_endpoints(&mut self, set: &EndpointSet) {
        let previous = std::mem::take(&mut self.endpoints);
        self.endpoints = set
            .iter()
            .filter_map(|e| Some((e.addr?, e.weight)))
            .map(|(addr, weight)| {
                previous
                    .iter()
                    .find(|p| p.addr == addr && p.weight() == weight)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointState::new(addr, weight)))
            })
            .collect();
        self.ejections
            .set_hosts(self.endpoints.iter().map(|e| e.addr));
        self.holds.hold(self.endpoints.iter().map(|e| e.label()));
        self.metrics
            .endpoints
            .get_or_create(&self.labels)
            .set(self.endpoints.len() as i64);
        self.dirty = true;
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
            self.dirty = true;
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
            self.dirty = true;
        }
    }

    /// Which endpoints the balancer must leave out (parallel to `endpoints`).
    fn ejected(&self) -> Vec<bool> {
        self.endpoints
            .iter()
            .map(|e| {
                !(self.ejections.is_routable(&e.addr)
                    && self.probes.get(&e.addr).is_none_or(ProbeState::is_healthy))
            })
            .collect()
    }

    /// Builds the state of the endpoints as they are now on a blocking thread, and publishes
    /// it once built. Awaited before anything else changes, so states are published in order.
    async fn publish(&mut self) {
        self.dirty = false;
        self.folded = 0;
        let (endpoints, ejected, policy) = (self.endpoints.clone(), self.ejected(), self.policy);
        let outs = ejected.clone();
        let built =
            tokio::task::spawn_blocking(move || state::build(endpoints, ejected, policy)).await;
        match built {
            Ok(state) => {
                self.store(state);
                // After the new state is out: a request waiting on an endpoint that just went
                // out moves at once, and picks in the table without it (its user's new home).
                for (endpoint, out) in self.endpoints.iter().zip(&outs) {
                    endpoint.set_out(*out);
                }
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => return,
        }
        if self.heard {
            self.discovered
                .send_if_modified(|done| !std::mem::replace(done, true));
        }
    }

    fn store(&self, state: ClusterState) {
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

/// Outlier detection that never trips (no `outlierDetection` in the DestinationRule).
fn never_eject() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: None,
        consecutive_gateway: None,
        ..OutlierPolicy::default()
    }
}
