//! A latency histogram counted per worker thread.
//!
//! `prometheus_client`'s `Histogram` takes a mutex at every observation; with two or more
//! workers observing the same cluster's latency, the mutex and the counts move between their
//! CPUs at every request. Here each worker adds to counts of its own (atomics in a cache line
//! no other worker writes), and a scrape adds the workers' counts up. Envoy keeps its
//! histograms per worker thread and merges them the same way. The `_count` written is the sum of
//! the buckets, so it always matches them; the `_sum` is kept in nanoseconds.
//!
//! It may not import the request path; it knows worker threads only by [`crate::worker::index`].

use std::fmt;
use std::iter::once;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::worker;

/// A histogram of seconds; clones share the counts.
#[derive(Debug, Clone)]
pub struct ShardedHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending; the last bucket (`+Inf`) has none.
    bounds: Box<[f64]>,
    shards: Box<[Shard]>,
}

/// One worker's counts.
#[derive(Debug)]
#[repr(align(64))]
struct Shard {
    /// Per bucket (not cumulative), `+Inf` last.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl ShardedHistogram {
    /// Buckets with these upper bounds (non-finite ones dropped) and `+Inf`, one set of counts
    /// per worker thread.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        Self::with_shards(bounds, worker::count())
    }

    fn with_shards(bounds: impl IntoIterator<Item = f64>, shards: usize) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().filter(|b| b.is_finite()).collect();
        let shards = (0..shards.max(1))
            .map(|_| Shard {
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            })
            .collect();
        Self {
            inner: Arc::new(Inner { bounds, shards }),
        }
    }

    /// Counts one observation of `seconds` in the calling worker's counts.
    pub fn observe(&self, seconds: f64) {
        let Inner { bounds, shards } = &*self.inner;
        let shard = &shards[worker::index() % shards.len()];
        let bucket = if seconds.is_nan() {
            bounds.len()
        } else {
            bounds.partition_point(|bound| *bound < seconds)
        };
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // `as` saturates: a negative or NaN value adds nothing to the sum.
        shard
            .sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let Inner { bounds, shards } = &*self.inner;
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .copied()
            .chain(once(f64::INFINITY))
            .map(|bound| (bound, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for shard in shards {
            for (total, count) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 += count.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(sum_nanos as f64 / 1e9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    fn render(metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static) -> String {
        let mut registry = Registry::default();
        registry.register("latency_seconds", "latency", metric);
        crate::metrics::render(&registry)
    }

    #[test]
    fn renders_what_prometheus_clients_histogram_renders_for_the_same_observations() {
        let bounds = || exponential_buckets(0.000_05, 2.0, 20);
        let sharded = ShardedHistogram::with_shards(bounds(), 3);
        let plain = Histogram::new(bounds());
        // Values on and between bounds, below the first and above the last; added from
        // several threads, each its own worker.
        let values = [
            0.000_01, 0.000_05, 0.000_07, 0.001, 0.002_5, 0.1, 3.0, 100.0, 0.000_05,
        ];
        std::thread::scope(|scope| {
            for (index, chunk) in values.chunks(3).enumerate() {
                let sharded = sharded.clone();
                scope.spawn(move || {
                    crate::worker::enter(index);
                    chunk.iter().for_each(|v| sharded.observe(*v));
                });
            }
        });
        values.iter().for_each(|v| plain.observe(*v));
        let spread = sharded
            .inner
            .shards
            .iter()
            .filter(|shard| shard.buckets.iter().any(|n| n.load(Ordering::Relaxed) > 0));
        assert_eq!(spread.count(), 3, "each worker counted in its own shard");
        assert_eq!(render(sharded), render(plain));
    }
}
