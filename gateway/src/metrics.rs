//! The gateway's Prometheus metrics: typed label sets, registered once at start-up.
//!
//! Label values are `Arc<str>` handles owned by the snapshot (route, cluster and endpoint names
//! are built once per config or endpoint change), so recording a request clones pointers and
//! builds no string. [`Metrics::count_request`] also skips the family's lock and SipHash of
//! the label strings: each thread caches counter handles by label *identity* (pointers).
//! An endpoint's request series live while a running cluster holds it (`endpoints.rs`).
//!
//! It may not import the request path: the request path reports to it.

mod endpoints;
mod sharded;

pub use endpoints::EndpointHolds;
pub use sharded::ShardedHistogram;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use crate::events::Events;

/// Labels of a proxied request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// `<VirtualService>/<http route name or index>`, or `-` when nothing matched.
    pub route: Arc<str>,
    /// The cluster name (`outbound|port|subset|host`, as Envoy names them), or `-`.
    pub cluster: Arc<str>,
    /// The endpoint that answered last (`ip:port`), or `-` when none did.
    pub endpoint: Arc<str>,
    /// The status code sent to the client.
    pub code: u16,
}

/// Labels keyed by cluster only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The cluster name.
    pub cluster: Arc<str>,
}

/// How a config reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new config was valid and is serving.
    Success,
    /// The new config was rejected; the old one keeps serving.
    Failure,
}

impl EncodeLabelValue for ReloadResult {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        let text = match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

/// A persistent-session event of a cluster's request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SessionLabels {
    /// The cluster.
    pub cluster: Arc<str>,
    /// `honoured` (sent to its endpoint), `issued` (a request without one), `refreshed`,
    /// `reissued` (its endpoint left, is ejected, or failed and the retry went elsewhere), or
    /// `ignored_<reason>` (garbled, forged, expired, future: placed as one without).
    pub event: &'static str,
}

/// Labels of the reload counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// How it ended.
    pub result: ReloadResult,
}

/// Labels of an endpoint's cache answers (`x-cache: hit|miss` on its responses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// The cluster.
    pub cluster: Arc<str>,
    /// The endpoint that answered.
    pub endpoint: Arc<str>,
    /// `hit` (a warm call) or `miss` (a cold one).
    pub result: &'static str,
}

/// Labels of a TLS certificate refresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TlsRefreshLabels {
    /// `namespace/gateway servers[i]`.
    pub server: String,
    /// `rotated`, `recovered` or `failed`.
    pub result: &'static str,
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route, cluster, endpoint and status code.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from sending upstream to the response headers, per cluster.
    pub upstream_latency: Family<ClusterLabels, ShardedHistogram>,
    /// Retries made, per cluster.
    pub retries: Family<ClusterLabels, Counter>,
    /// Requests whose hash key (header, cookie, query parameter) was missing, so the endpoint
    /// was picked at random.
    pub hash_key_missing: Family<ClusterLabels, Counter>,
    /// Endpoints discovered, per cluster.
    pub endpoints: Family<ClusterLabels, Gauge>,
    /// Endpoints the balancer may use (not ejected), per cluster.
    pub healthy_endpoints: Family<ClusterLabels, Gauge>,
    /// Outlier ejections, per cluster.
    pub ejections: Family<ClusterLabels, Counter>,
    /// Balancer table rebuilds, per cluster.
    pub table_rebuilds: Family<ClusterLabels, Counter>,
    /// Config reloads by result.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Persistent-session events by cluster.
    pub sessions: Family<SessionLabels, Counter>,
    /// Responses that said `x-cache: hit` or `miss`, per endpoint: warm and cold calls.
    pub upstream_cache: Family<CacheLabels, Counter>,
    /// HTTPS servers' certificate files read again and found changed: rotated, recovered or
    /// failed (the old certificate serving on).
    pub tls_refreshes: Family<TlsRefreshLabels, Counter>,
    /// Share of the balancer's table whose endpoint changed at the cluster's last rebuild.
    pub table_moved_share: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    /// 1 when the last reload attempt succeeded, 0 when the running config is older than the
    /// files on disk because they were rejected.
    pub config_last_reload_ok: Gauge,
    /// The timeline the dashboard shows (not exported to Prometheus).
    pub events: Events,
    /// Tells this instance's entries apart in the per-thread counter cache (tests run several).
    id: u64,
    /// Which endpoints running clusters hold, and their request series (`endpoints.rs`).
    endpoint_index: Mutex<endpoints::Index>,
}

/// Source of [`Metrics`] ids; never reused, unlike addresses.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Most cached handles per thread; past it the cache starts over (reloads and endpoint churn
/// make new label pointers, so old entries would otherwise pile up).
const MAX_CACHED: usize = 4096;

/// Metrics id, route, cluster and endpoint label pointers, status code.
type CounterKey = (u64, usize, usize, usize, u16);

thread_local! {
    /// The value keeps the labels, so their `Arc`s (and thus the pointers in the key) stay
    /// alive, and a pointer cannot be reused by another label while it is cached.
    static REQUEST_COUNTERS: RefCell<HashMap<CounterKey, (RequestLabels, Counter), BuildHasherDefault<PointerHasher>>> =
        RefCell::new(HashMap::default());
}

/// A multiply-rotate hasher for keys made of pointers and small integers (FxHash's scheme);
/// the keys are not attacker-controlled, so SipHash's protection is not needed.
#[derive(Default)]
struct PointerHasher(u64);

impl Hasher for PointerHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
}

fn address(label: &Arc<str>) -> usize {
    Arc::as_ptr(label).cast::<u8>() as usize
}

impl Metrics {
    /// Creates the metrics and registers them under the `gateway_` prefix.
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(|| {
                ShardedHistogram::new(exponential_buckets(0.000_05, 2.0, 20))
            }),
            retries: Family::default(),
            hash_key_missing: Family::default(),
            endpoints: Family::default(),
            healthy_endpoints: Family::default(),
            ejections: Family::default(),
            table_rebuilds: Family::default(),
            reloads: Family::default(),
            sessions: Family::default(),
            upstream_cache: Family::default(),
            tls_refreshes: Family::default(),
            table_moved_share: Family::default(),
            config_last_reload_ok: Gauge::default(),
            events: Events::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            endpoint_index: Mutex::default(),
        };
        let r = registry.sub_registry_with_prefix("gateway");
        r.register(
            "requests",
            "Requests by route, cluster, endpoint and status",
            metrics.requests.clone(),
        );
        r.register(
            "upstream_latency_seconds",
            "Upstream time to response headers",
            metrics.upstream_latency.clone(),
        );
        r.register("retries", "Retries made", metrics.retries.clone());
        r.register(
            "hash_key_missing",
            "Requests with no hash key, sent to a random endpoint",
            metrics.hash_key_missing.clone(),
        );
        r.register(
            "endpoints",
            "Endpoints discovered",
            metrics.endpoints.clone(),
        );
        r.register(
            "healthy_endpoints",
            "Endpoints in the balancer (not ejected)",
            metrics.healthy_endpoints.clone(),
        );
        r.register("ejections", "Outlier ejections", metrics.ejections.clone());
        r.register(
            "table_rebuilds",
            "Balancer table rebuilds",
            metrics.table_rebuilds.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads by result",
            metrics.reloads.clone(),
        );
        r.register(
            "sessions",
            "Persistent-session events by cluster: honoured, issued, refreshed, reissued, ignored_<reason>",
            metrics.sessions.clone(),
        );
        r.register(
            "upstream_cache",
            "Responses with x-cache: hit (warm) or miss (cold), per endpoint",
            metrics.upstream_cache.clone(),
        );
        r.register(
            "tls_certificate_refreshes",
            "HTTPS servers' certificate files found changed: rotated, recovered, or failed (the old one serving on)",
            metrics.tls_refreshes.clone(),
        );
        r.register(
            "table_moved_share",
            "Share of the balancer table that changed endpoint at the last rebuild",
            metrics.table_moved_share.clone(),
        );
        r.register(
            "config_last_reload_ok",
            "1 when the last config reload succeeded",
            metrics.config_last_reload_ok.clone(),
        );
        Arc::new(metrics)
    }

    /// Counts one proxied request. Same as `requests.get_or_create(labels).inc()`, but a
    /// repeated label set costs a pointer-keyed lookup in a per-thread cache instead of the
    /// family's lock and a SipHash of the label strings (the cached handle shares the family
    /// entry's atomic). A series removed because its endpoint left (`endpoints.rs`) is not
    /// made again by a late request of that endpoint: a cached handle counts into the removed
    /// counter, and an uncached label set of it is not counted.
    pub fn count_request(&self, labels: &RequestLabels) {
        let key = (
            self.id,
            address(&labels.route),
            address(&labels.cluster),
            address(&labels.endpoint),
            labels.code,
        );
        REQUEST_COUNTERS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((_, counter)) = cache.get(&key) {
                counter.inc();
                return;
            }
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            let Some(counter) = self.request_counter(labels) else {
                return;
            };
            counter.inc();
            cache.insert(key, (labels.clone(), counter));
        });
    }

    /// Counts one reload.
    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        self.config_last_reload_ok
            .set(i64::from(result == ReloadResult::Success));
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_typed_labels() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        let labels = RequestLabels {
            route: "sticky-svc/0".into(),
            cluster: "outbound|8080||sticky-svc.default.svc.cluster.local".into(),
            endpoint: "10.0.0.1:8080".into(),
            code: 200,
        };
        m.requests.get_or_create(&labels).inc();
        m.reloaded(ReloadResult::Failure);
        let text = render(&registry);
        assert!(text.contains(
            "gateway_requests_total{route=\"sticky-svc/0\",cluster=\"outbound|8080||sticky-svc.default.svc.cluster.local\",endpoint=\"10.0.0.1:8080\",code=\"200\"} 1"
        ), "{text}");
        assert!(
            text.contains("gateway_config_reloads_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(text.contains("gateway_config_last_reload_ok 0"), "{text}");
    }

    #[test]
    fn cached_request_counters_count_into_their_own_registry() {
        let (mut one, mut two) = (Registry::default(), Registry::default());
        let (a, b) = (Metrics::new(&mut one), Metrics::new(&mut two));
        let labels = |code| RequestLabels {
            route: "vs/0".into(),
            cluster: "c".into(),
            endpoint: "10.0.0.1:80".into(),
            code,
        };
        let ok = labels(200);
        for _ in 0..3 {
            a.count_request(&ok);
        }
        b.count_request(&ok);
        // Same strings, other pointers: another cache entry, the same series.
        a.count_request(&labels(200));
        a.count_request(&labels(503));
        let series = |code: u16| {
            format!(
                "gateway_requests_total{{route=\"vs/0\",cluster=\"c\",endpoint=\"10.0.0.1:80\",code=\"{code}\"}}"
            )
        };
        let (text_a, text_b) = (render(&one), render(&two));
        assert!(text_a.contains(&format!("{} 4", series(200))), "{text_a}");
        assert!(text_a.contains(&format!("{} 1", series(503))), "{text_a}");
        assert!(text_b.contains(&format!("{} 1", series(200))), "{text_b}");
        assert!(!text_b.contains("code=\"503\""), "{text_b}");
    }
}
