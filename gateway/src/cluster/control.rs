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
//!
//! It also tells the timeline ([`crate::events`]) what changed — endpoints added and removed,
//! ejected and back, checks failing and passing — once the change is published, with the share
//! of the table it moved, and keeps the state it replaced for the admin lookup's "before".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};

use super::probe::Prober;
use super::state::{self, ClusterState, EndpointState, moved_share};
use super::stats::{EndpointStats, Health};
use super::{ClusterSpec, EventGate, Previous};
use crate::balancer::Policy;
use crate::endpoint::EndpointSet;
use crate::events::Kind;
use crate::health::active::{ActiveCheck, ProbeState};
use crate::health::{Ejections, OutlierPolicy, Trip};
use crate::metrics::{ClusterLabels, EndpointHolds, Metrics};

/// The control task's state.
pub(super) struct Control {
    state: Arc<ArcSwap<ClusterState>>,
    previous: Arc<ArcSwapOption<Previous>>,
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
    /// Why each ejected endpoint was ejected.
    trip_reasons: HashMap<SocketAddr, &'static str>,
    /// What the timeline will be told once the next state is published.
    pending: Vec<(Kind, String)>,
    /// Holds the timeline's events until the cluster serves.
    gate: Arc<EventGate>,
}

/// At most this many changes are folded into one build: a flood of trips cannot hold the
/// table back for ever.
const MAX_FOLDED: u32 = 64;

impl Control {
    /// The control of the cluster `spec` describes, publishing to `state`.
    pub(super) fn new(
        spec: &ClusterSpec,
        gate: Arc<EventGate>,
        state: Arc<ArcSwap<ClusterState>>,
        previous: Arc<ArcSwapOption<Previous>>,
        metrics: Arc<Metrics>,
        labels: ClusterLabels,
        discovered: watch::Sender<bool>,
    ) -> Self {
        // A predecessor's endpoints (see `Cluster::start`), to carry over and compare with.
        let endpoints = state.load().endpoints.clone();
        Self {
            endpoints,
            state,
            previous,
            policy: spec.policy,
            ejections: Ejections::new(spec.outlier.clone().unwrap_or_else(never_eject)),
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
            trip_reasons: HashMap::new(),
            pending: Vec::new(),
            gate,
        }
    }

    /// A static cluster's endpoints, published before its first request (on the caller's
    /// thread: a snapshot build, itself off the accept loop).
    pub(super) fn start_static(&mut self, set: &EndpointSet) {
        self.set_endpoints(set);
        let state = state::build(self.endpoints.clone(), self.ejected(), self.policy);
        let before = self.state.load_full();
        let moved = moved_share(&before, &state);
        self.store(state, Some((before, moved)));
        self.dirty = false;
        self.discovered.send_replace(true);
    }

    /// Runs until discovery's channel closes or the cluster aborts it (dropped).
    pub(super) async fn run(
        mut self,
        mut endpoints_rx: watch::Receiver<EndpointSet>,
        mut trips_rx: mpsc::UnboundedReceiver<(SocketAddr, Trip)>,
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
                Some((addr, trip)) = trips_rx.recv() => self.trip(addr, trip),
                Some((addr, passed)) = probe_rx.recv() => self.probed(addr, passed),
                () = release => {
                    let back = self.ejections.release_due(Instant::now());
                    if !back.is_empty() {
                        self.dirty = true;
                        let back: Vec<String> = back.iter().map(ToString::to_string).collect();
                        self.pending.push((Kind::Returned, format!("{} back from ejection", back.join(", "))));
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
        let (metrics, cluster) = (&self.metrics, &self.labels.cluster);
        self.endpoints = set
            .iter()
            .filter_map(|e| Some((e.addr?, e.weight)))
            .map(|(addr, weight)| {
                previous
                    .iter()
                    .find(|p| p.addr == addr && p.weight() == weight)
                    .cloned()
                    .unwrap_or_else(|| {
                        let endpoint = EndpointState::new(addr, weight);
                        let (hits, misses) = metrics.cache_counters(cluster, endpoint.label());
                        Arc::new(endpoint.with_stats(EndpointStats::new(hits, misses)))
                    })
            })
            .collect();
        let listed = |list: &[Arc<EndpointState>], other: &[Arc<EndpointState>]| -> Vec<String> {
            list.iter()
                .filter(|e| !other.iter().any(|o| o.addr == e.addr))
                .map(|e| e.label().to_string())
                .collect()
        };
        let (added, removed) = (
            listed(&self.endpoints, &previous),
            listed(&previous, &self.endpoints),
        );
        let total = self.endpoints.len();
        if !added.is_empty() {
            let text = format!("{} added ({total} in all)", added.join(", "));
            self.pending.push((Kind::Added, text));
        }
        if !removed.is_empty() {
            let text = format!("{} removed ({total} left)", removed.join(", "));
            self.pending.push((Kind::Removed, text));
        }
        self.trip_reasons
            .retain(|addr, _| set.iter().any(|e| e.addr == Some(*addr)));
        self.ejections
            .set_hosts(self.endpoints.iter().map(|e| e.addr));
        self.holds.hold(self.endpoints.iter().map(|e| e.label()));
        self.metrics
            .endpoints
            .get_or_create(&self.labels)
            .set(self.endpoints.len() as i64);
        self.dirty = true;
    }

    fn trip(&mut self, addr: SocketAddr, trip: Trip) {
        let Some(endpoint) = self.endpoints.iter().find(|e| e.addr == addr) else {
            return;
        };
        if self.trip_policy.is_none() {
            return;
        }
        endpoint.counters.reset();
        let now = Instant::now();
        if self.ejections.on_trip(&addr, now) {
            let reason = match trip {
                Trip::Consecutive5xx => "consecutive 5xx",
                Trip::ConsecutiveGateway => "consecutive gateway errors",
            };
            tracing::warn!(cluster = %self.labels.cluster, endpoint = %addr, reason, "endpoint ejected");
            self.metrics.ejections.get_or_create(&self.labels).inc();
            self.trip_reasons.insert(addr, reason);
            let length = self
                .ejections
                .ejected_until(&addr)
                .map_or(Duration::ZERO, |until| until - now);
            let text = format!(
                "{addr} ejected: {reason}, for {}",
                humantime::format_duration(length)
            );
            self.pending.push((Kind::Ejected, text));
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
            self.pending.push(if healthy {
                (
                    Kind::ChecksPassing,
                    format!("{addr} passes its health checks again"),
                )
            } else {
                (
                    Kind::ChecksFailing,
                    format!("{addr} fails its health checks: out of rotation"),
                )
            });
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
        let before = self.state.load_full();
        let built = tokio::task::spawn_blocking(move || {
            let after = state::build(endpoints, ejected, policy);
            let moved = moved_share(&before, &after);
            (after, before, moved)
        })
        .await;
        match built {
            Ok((state, before, moved)) => {
                self.store(state, Some((before, moved)));
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

    /// Publishes `state`; `replaced`: the state it replaces and the share of the table that
    /// moved. Then the endpoints' health and the timeline follow.
    fn store(&mut self, state: ClusterState, replaced: Option<(Arc<ClusterState>, Option<f64>)>) {
        self.metrics
            .healthy_endpoints
            .get_or_create(&self.labels)
            .set(state.routable() as i64);
        self.metrics
            .table_rebuilds
            .get_or_create(&self.labels)
            .inc();
        let mut moved = None;
        if let Some((before, share)) = replaced {
            let changed =
                share.is_none_or(|s| s > 0.0) || before.endpoints.len() != state.endpoints.len();
            // A rebuild that changed nothing (a DNS answer like the last) is not a change.
            if changed && before.balancer.is_some() {
                self.previous.store(Some(Arc::new(Previous {
                    state: before,
                    replaced_at_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                })));
                if let Some(share) = share {
                    self.metrics
                        .table_moved_share
                        .get_or_create(&self.labels)
                        .set(share);
                }
            }
            moved = share;
        }
        self.state.store(Arc::new(state));
        let ejected = self.ejected();
        for (endpoint, out) in self.endpoints.iter().zip(ejected) {
            endpoint.stats.set_health(self.health(endpoint.addr, out));
        }
        for (kind, text) in self.pending.drain(..) {
            let (events, cluster) = (&self.metrics.events, &self.labels.cluster);
            self.gate.push(events, cluster, kind, text, moved);
        }
    }

    /// What the dashboard says of the endpoint at `addr`; `out`: the balancer leaves it out.
    fn health(&self, addr: SocketAddr, out: bool) -> Health {
        if let Some(until) = self.ejections.ejected_until(&addr) {
            let reason = self.trip_reasons.get(&addr).copied().unwrap_or("ejected");
            return Health::Ejected {
                reason,
                until,
                used: !out,
            };
        }
        if out {
            Health::FailingChecks
        } else {
            Health::Healthy
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
