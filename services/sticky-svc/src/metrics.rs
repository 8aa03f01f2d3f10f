//! Prometheus metrics: typed label sets registered once, the cache read at scrape time.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sticky_requests_total` | counter | `cache` = `hit`/`miss`/`none`, `status` = HTTP code |
//! | `sticky_first_call_cost_seconds` | histogram | |
//! | `sticky_cache_entries` | gauge | |
//! | `sticky_cache_capacity` | gauge | |
//! | `sticky_cache_evictions_total` | counter | |
//! | `sticky_first_calls_in_flight` | gauge | |
//! | `sticky_first_calls_limit` | gauge | |
//! | `sticky_first_calls_refused_total` | counter | |
//! | `sticky_first_calls_cancelled_total` | counter | |
//! | `sticky_connections_open` | gauge | |
//! | `sticky_connections_limit` | gauge | |
//! | `sticky_connections_refused_total` | counter | |
//!
//! `sticky_requests_total` counts `/ping` calls and calls to unknown paths, not health probes or
//! scrapes, so it is the workload's traffic only.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::Cache;
use crate::limits::Connections;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a call was answered from the cache.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CacheLabel {
    /// Served from the cache.
    Hit,
    /// Waited for the first-call computation.
    Miss,
    /// Refused before the cache was consulted.
    None,
}

impl CacheLabel {
    /// The label value, also sent as the `x-cache` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::None => "none",
        }
    }
}

impl EncodeLabelValue for CacheLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    cache: CacheLabel,
    status: u16,
}

/// The service's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Pre-resolved handles for the warm path, which then skips the family's lock and hashing.
    hits_ok: Counter,
    first_call_cost: Histogram,
}

impl Metrics {
    /// Registers every metric, reading `cache` and `connections` at each scrape.
    pub fn new(cache: Arc<Cache>, connections: Arc<Connections>) -> Self {
        let mut registry = Registry::with_prefix("sticky");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Workload requests by cache outcome and HTTP status",
            requests.clone(),
        );
        // Buckets around the default 5 s cost and down to a `0s` cost's scheduling noise.
        let buckets = [
            0.000_1, 0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 4.9, 5.0, 5.01, 5.1, 7.5, 10.0, 30.0,
        ];
        let first_call_cost = Histogram::new(buckets);
        registry.register(
            "first_call_cost_seconds",
            "Time the first-call computation of a user took",
            first_call_cost.clone(),
        );
        registry.register_collector(Box::new(Collected { cache, connections }));
        let hits_ok = requests
            .get_or_create(&RequestLabels {
                cache: CacheLabel::Hit,
                status: 200,
            })
            .clone();
        Self {
            registry,
            requests,
            hits_ok,
            first_call_cost,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, cache: CacheLabel, status: u16) {
        if cache == CacheLabel::Hit && status == 200 {
            self.hits_ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels { cache, status })
                .inc();
        }
    }

    /// Records how long one first-call computation took.
    pub fn first_call_cost(&self, took: Duration) {
        self.first_call_cost.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Reads the cache's and the connection limit's own counters at scrape time, so neither the
/// request path nor the accept loop updates a gauge.
#[derive(Debug)]
struct Collected {
    cache: Arc<Cache>,
    connections: Arc<Connections>,
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (cache, connections) = (&self.cache, &self.connections);
        let gauges = [
            (
                "cache_entries",
                "Users whose first call completed, held by the cache",
                cache.len(),
            ),
            (
                "cache_capacity",
                "Most completed users the cache holds",
                cache.capacity(),
            ),
            (
                "first_calls_in_flight",
                "First-call computations in progress",
                cache.pending(),
            ),
            (
                "first_calls_limit",
                "Most first-call computations in progress at once",
                cache.max_first_calls(),
            ),
            (
                "connections_open",
                "Connections being served",
                connections.open(),
            ),
            (
                "connections_limit",
                "Most connections served at once",
                connections.max(),
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)?;
        }
        let counters = [
            (
                "cache_evictions",
                "Users evicted to make room for new ones",
                cache.evictions(),
            ),
            (
                "first_calls_refused",
                "New users' first calls refused because too many were in progress",
                cache.refused(),
            ),
            (
                "first_calls_cancelled",
                "First calls cancelled because nobody waited for them during the grace",
                cache.cancelled(),
            ),
            (
                "connections_refused",
                "Connections answered 503 and closed because too many were open",
                connections.refused(),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    #[test]
    fn renders_typed_labels_and_cache_state() {
        let cache = Arc::new(Cache::new(
            NonZeroUsize::new(7).unwrap(),
            NonZeroUsize::new(3).unwrap(),
            Duration::from_secs(2),
        ));
        let connections = Arc::new(Connections::new(NonZeroUsize::new(5).unwrap()));
        let metrics = Metrics::new(cache, connections);
        metrics.request(CacheLabel::Hit, 200);
        metrics.request(CacheLabel::Hit, 200);
        metrics.request(CacheLabel::None, 400);
        metrics.first_call_cost(Duration::from_millis(5000));
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"sticky_requests_total{cache="hit",status="200"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"sticky_requests_total{cache="none",status="400"} 1"#));
        assert!(text.contains(r#"sticky_first_call_cost_seconds_bucket{le="5.0"} 1"#));
        assert!(text.contains(r#"sticky_first_call_cost_seconds_bucket{le="4.9"} 0"#));
        assert!(text.contains("sticky_cache_entries 0"));
        assert!(text.contains("sticky_cache_capacity 7"));
        assert!(text.contains("sticky_cache_evictions_total 0"));
        assert!(text.contains("sticky_first_calls_limit 3"));
        assert!(text.contains("sticky_first_calls_refused_total 0"));
        assert!(text.contains("sticky_first_calls_cancelled_total 0"));
        assert!(text.contains("sticky_connections_open 0"));
        assert!(text.contains("sticky_connections_limit 5"));
        assert!(text.contains("sticky_connections_refused_total 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
