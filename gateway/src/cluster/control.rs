//! A cluster's control task: the one owner of everything about the cluster that changes. It
//! takes endpoint sets from discovery, trips from the request path and the results of active
//! probes, runs the pure [`Ejections`] state machine, and publishes a new [`ClusterState`]
//! whenever the routable set changes.
//!
//! Off the request path: a request only reads what this task publishes and sends it trips;
//! nothing here is awaited by a request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use super::ClusterSpec;
use super::probe::Prober;
use super::state::{ClusterState, EndpointState, build_state};
use crate::balancer::Policy;
use crate::endpoint::EndpointSet;
use crate::health::active::{ActiveCheck, ProbeState};
use crate::health::{Ejections, OutlierPolicy};
use crate::metrics::{ClusterLabels, Metrics};

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
}

impl Control {
    /// The control of the cluster `spec` describes, publishing to `state`.
    pub(super) fn new(
        spec: &ClusterSpec,
        state: Arc<ArcSwap<ClusterState>>,
        metrics: Arc<Metrics>,
        labels: ClusterLabels,
    ) -> Self {
        Self {
            state,
            policy: spec.policy,
            ejections: Ejections::new(spec.outlier.clone().unwrap_or_else(never_eject)),
            endpoints: Vec::new(),
            metrics,
            labels,
            trip_policy: spec.outlier.clone(),
            active: spec.active.clone(),
            http2: spec.pool.http2,
            probes: HashMap::new(),
        }
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
                Some((addr, passed)) = probe_rx.recv() => self.probed(addr, passed),
            }
        }
    }

    /// Takes a new endpoint set from discovery, keeping the state (counters, in flight) of the
    /// endpoints still in it.
    pub(super) fn set_endpoints(&mut self, set: &EndpointSet) {
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

/// Outlier detection that never trips (no `outlierDetection` in the DestinationRule).
fn never_eject() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: None,
        consecutive_gateway: None,
        ..OutlierPolicy::default()
    }
}
