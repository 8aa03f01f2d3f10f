//! One upstream cluster at run time: its spec, its endpoints and balancer ([`state`]), its
//! connection pool ([`crate::upstream`]), and the tasks that keep the state in step with
//! discovery, outlier detection and active checks (`control`, `probe`).
//!
//! The request path reads [`Cluster::state`] (one `ArcSwap` load) and never waits for a build;
//! it reports an endpoint crossing an outlier threshold with [`Cluster::report_trip`] and goes
//! on. A snapshot build waits for a new cluster's first discovery ([`Cluster::discovered`])
//! before publishing it, so a new DNS cluster does not answer 503 until its first lookup. This
//! module may not import the request path (`crate::proxy`).

mod control;
mod probe;
pub mod state;
pub mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::balancer::Policy;
use crate::discovery::{DnsResolver, DnsTarget, RefreshBounds, watch_dns};
use crate::endpoint::EndpointSet;
use crate::events::{Events, Kind};
use crate::health::active::ActiveCheck;
use crate::health::{OutlierPolicy, Trip};
use crate::metrics::{ClusterLabels, Metrics, ShardedHistogram};
use crate::upstream::{PoolSettings, Upstream};
use control::Control;
pub use state::{ClusterState, EndpointState, build_state, moved_share};
pub use stats::{EndpointStats, Health, StatsSample};

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
///
/// What `consistentHash` hashes (the hash key) is not here: the request path reads it from the
/// route ([`crate::snapshot::Route::hash_keys`]), as Envoy keeps the hash policy on the route
/// and the algorithm on the cluster. Editing only the key keeps the running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `outbound|<port>|<subset>|<host>`, as Envoy names clusters.
    pub name: Arc<str>,
    /// Where endpoints come from.
    pub source: Source,
    /// The balancing policy.
    pub policy: Policy,
    /// The pool settings.
    pub pool: PoolSettings,
    /// Outlier detection; `None`: never eject.
    pub outlier: Option<OutlierPolicy>,
    /// Active HTTP checks; `None`: off.
    pub active: Option<ActiveCheck>,
}

/// A timeline event not yet told: its kind, text and moved share.
type HeldEvent = (Kind, String, Option<f64>);

/// The timeline events of a cluster, held while the cluster is not yet serving.
#[derive(Debug)]
pub(crate) struct EventGate {
    /// `None` once open.
    held: std::sync::Mutex<Option<Vec<HeldEvent>>>,
}

impl Default for EventGate {
    fn default() -> Self {
        Self {
            held: std::sync::Mutex::new(Some(Vec::new())),
        }
    }
}

impl EventGate {
    /// Tells `events` now if open, else holds it.
    pub(crate) fn push(
        &self,
        events: &Events,
        cluster: &str,
        kind: Kind,
        text: String,
        moved: Option<f64>,
    ) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(list) => list.push((kind, text, moved)),
            None => events.push(kind, Some(cluster), text, moved),
        }
    }

    /// Tells what was held, and opens.
    fn open(&self, events: &Events, cluster: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, text, moved) in held.take().unwrap_or_default() {
            events.push(kind, Some(cluster), text, moved);
        }
    }
}

/// A state replaced by a change of the table.
#[derive(Debug)]
pub struct Previous {
    /// The state as it was.
    pub state: Arc<ClusterState>,
    /// When it was replaced, in milliseconds since the Unix epoch.
    pub replaced_at_ms: u64,
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
    latency: OnceLock<ShardedHistogram>,
    state: Arc<ArcSwap<ClusterState>>,
    /// The state before the last change of the table, and when it changed.
    previous: Arc<ArcSwapOption<Previous>>,
    /// Holds the timeline's events until the snapshot holding this cluster is published.
    gate: Arc<EventGate>,
    /// True once the state of discovery's first answer is published.
    discovered: watch::Receiver<bool>,
    trips: mpsc::UnboundedSender<(SocketAddr, Trip)>,
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
    /// runtime (a blocking thread of one will do). The first state is published before this
    /// returns for static clusters; DNS clusters start empty and fill within one lookup
    /// ([`Cluster::discovered`]).
    ///
    /// `predecessor`: the running cluster of the same name this one replaces (a reload that
    /// changed its spec). Its endpoints carry over with their counters and stats, so the
    /// timeline says which endpoints the new spec added or removed and how much of the table
    /// moved, and the lookup's "before" is the predecessor's table.
    pub fn start(
        spec: ClusterSpec,
        resolver: &DnsResolver,
        bounds: RefreshBounds,
        metrics: Arc<Metrics>,
        predecessor: Option<&Cluster>,
    ) -> Self {
        let labels = ClusterLabels {
            cluster: spec.name.clone(),
        };
        // Never served: a static cluster publishes its own state before this returns, and a
        // snapshot waits for a DNS cluster's first build (`discovered`).
        let state = Arc::new(ArcSwap::new(
            predecessor.map_or_else(|| Arc::new(ClusterState::empty()), Cluster::state),
        ));
        let previous = Arc::new(ArcSwapOption::new(predecessor.and_then(Cluster::previous)));
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
        let (discovered_tx, discovered) = watch::channel(false);
        let gate = Arc::new(EventGate::default());
        let mut control = Control::new(
            &spec,
            gate.clone(),
            state.clone(),
            previous.clone(),
            metrics.clone(),
            labels.clone(),
            discovered_tx,
        );
        if let Source::Static(set) = &spec.source {
            // Publish before returning so a static cluster serves from its first request.
            control.start_static(set);
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
            previous,
            gate,
            discovered,
            trips,
            tasks,
            _static_endpoints: static_endpoints,
        }
    }

    /// The current state (one atomic load and reference count).
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.load_full()
    }

    /// Resolves once discovery has spoken and the state it led to is published: at once for a
    /// static cluster; for a DNS cluster once its first lookup has answered, or failed (the
    /// cluster then stays empty until one answers).
    pub async fn discovered(&self) {
        let mut discovered = self.discovered.clone();
        // An error: the control task has ended (the runtime is going away); nothing to wait for.
        let _ = discovered.wait_for(|done| *done).await;
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

    /// Says the snapshot holding this cluster is serving: the timeline events held since it
    /// started (the endpoints it added or removed) are told, and later ones as they happen. A
    /// cluster built for a reload that is then rejected never tells its events.
    pub fn published(&self) {
        self.gate.open(&self.metrics.events, &self.labels.cluster);
    }

    /// The state before the table last changed (an endpoint added, removed, ejected or
    /// back), and when: where keys went before. `None` until the table has changed once.
    pub fn previous(&self) -> Option<Arc<Previous>> {
        self.previous.load_full()
    }

    /// Reports that the endpoint at `index` of `state` crossed an outlier threshold.
    pub fn report_trip(&self, state: &ClusterState, index: usize, trip: Trip) {
        if let Some(endpoint) = state.endpoints.get(index) {
            // By address: the control task's list may have changed since this request's load.
            let _ = self.trips.send((endpoint.addr, trip));
        }
    }
}

#[cfg(test)]
mod tests;
