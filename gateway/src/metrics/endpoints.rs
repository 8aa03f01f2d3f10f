//! The life of per-endpoint series: `gateway_requests_total{endpoint}` exists for the endpoints
//! some running cluster holds, and goes when the last cluster lets one go.
//!
//! Without it every address that ever existed kept its series (compose `--scale 5→0→5` hands
//! out new addresses), so a scrape grew with every scale event. Each cluster's control task
//! holds its endpoints ([`EndpointHolds`]); a (cluster, endpoint) pair no running cluster holds
//! any more has its series removed from the family.
//!
//! Two things could bring a removed series back, and neither does:
//! - a request still in flight when its endpoint left, counted afterwards: the label it carries
//!   is the departed endpoint's own `Arc<str>`, remembered as *retired* until nothing else holds
//!   it, and a retired label whose pair is not held creates no series;
//! - a thread's cached counter handle ([`super::Metrics::count_request`]): it counts into the
//!   removed counter, which no scrape sees. A new endpoint at the same address has a label of
//!   its own (another pointer), so it misses that cache and gets a fresh series.
//!
//! `gateway_upstream_cache_total{cluster,endpoint,result}` goes with the pair's request series:
//! its two counters are made when a cluster takes the endpoint in ([`Metrics::cache_counters`])
//! and kept by the endpoint's stats, which count into a removed counter after it left.
//!
//! Series of labels no cluster ever held (`-`, no endpoint answered) are left alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, MutexGuard};

use prometheus_client::metrics::counter::Counter;

use super::{CacheLabels, Metrics, RequestLabels, address};

/// (cluster, endpoint) label text.
type Pair = (Arc<str>, Arc<str>);

/// What the request counter needs to know about endpoints, behind one lock (taken when a
/// cluster's endpoints change and on a thread's first count of a label set, never per request).
#[derive(Debug, Default)]
pub(super) struct Index {
    /// How many running clusters hold each pair (a reload may run two clusters of one name).
    live: HashMap<Pair, usize>,
    /// The labels of endpoints let go, by address, kept until nothing else holds them.
    retired: HashMap<usize, Arc<str>>,
    /// The routes and codes counted for each held pair: its series, to remove.
    series: HashMap<Pair, HashSet<(Arc<str>, u16)>>,
}

impl Metrics {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.endpoint_index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counter of `labels`, created if need be; `None` when its endpoint has left (no
    /// series is made for it again).
    pub(super) fn request_counter(&self, labels: &RequestLabels) -> Option<Counter> {
        let mut index = self.index();
        let pair = (labels.cluster.clone(), labels.endpoint.clone());
        let held = index.live.contains_key(&pair);
        if !held && index.retired.contains_key(&address(&labels.endpoint)) {
            return None;
        }
        let counter = self.requests.get_or_create_owned(labels);
        if held {
            index
                .series
                .entry(pair)
                .or_default()
                .insert((labels.route.clone(), labels.code));
        }
        Some(counter)
    }

    /// The warm (`hit`) and cold (`miss`) call counters of `endpoint` in `cluster`, created
    /// if need be: series that last as long as some cluster holds the pair.
    pub fn cache_counters(&self, cluster: &Arc<str>, endpoint: &Arc<str>) -> (Counter, Counter) {
        let counter = |result| {
            self.upstream_cache.get_or_create_owned(&CacheLabels {
                cluster: cluster.clone(),
                endpoint: endpoint.clone(),
                result,
            })
        };
        (counter("hit"), counter("miss"))
    }

    /// A hold on the series of `cluster`'s endpoints, holding none yet.
    pub fn endpoint_holds(self: &Arc<Self>, cluster: Arc<str>) -> EndpointHolds {
        EndpointHolds {
            metrics: self.clone(),
            cluster,
            held: Vec::new(),
        }
    }
}

/// One running cluster's hold on its endpoints' series. Dropping it lets them all go.
#[derive(Debug)]
pub struct EndpointHolds {
    metrics: Arc<Metrics>,
    cluster: Arc<str>,
    /// The labels held, as the cluster's endpoints carry them.
    held: Vec<Arc<str>>,
}

impl EndpointHolds {
    /// Holds exactly `endpoints` (their labels) from now on. A pair let go that no other
    /// cluster holds loses its series.
    pub fn hold<'a>(&mut self, endpoints: impl IntoIterator<Item = &'a Arc<str>>) {
        let next: Vec<Arc<str>> = endpoints.into_iter().cloned().collect();
        let (held, kept): (HashSet<usize>, HashSet<usize>) = (
            self.held.iter().map(address).collect(),
            next.iter().map(address).collect(),
        );
        let metrics = self.metrics.clone();
        let mut index = metrics.index();
        for label in next.iter().filter(|label| !held.contains(&address(label))) {
            *index
                .live
                .entry((self.cluster.clone(), label.clone()))
                .or_default() += 1;
        }
        let gone: Vec<Arc<str>> = self
            .held
            .drain(..)
            .filter(|label| !kept.contains(&address(label)))
            .collect();
        for label in gone {
            self.release(&mut index, label);
        }
        // A retired label nobody else holds can no longer be counted: forget it.
        index
            .retired
            .retain(|_, label| Arc::strong_count(label) > 1);
        self.held = next;
    }

    fn release(&self, index: &mut Index, label: Arc<str>) {
        let pair = (self.cluster.clone(), label.clone());
        index.retired.insert(address(&label), label);
        let Some(count) = index.live.get_mut(&pair) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        index.live.remove(&pair);
        let (cluster, endpoint) = pair;
        for result in ["hit", "miss"] {
            self.metrics.upstream_cache.remove(&CacheLabels {
                cluster: cluster.clone(),
                endpoint: endpoint.clone(),
                result,
            });
        }
        for (route, code) in index
            .series
            .remove(&(cluster.clone(), endpoint.clone()))
            .unwrap_or_default()
        {
            self.metrics.requests.remove(&RequestLabels {
                route,
                cluster: cluster.clone(),
                endpoint: endpoint.clone(),
                code,
            });
        }
    }
}

impl Drop for EndpointHolds {
    fn drop(&mut self) {
        self.hold(&[]);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::render;

    fn labels(endpoint: &Arc<str>, code: u16) -> RequestLabels {
        RequestLabels {
            route: "vs/0".into(),
            cluster: "c".into(),
            endpoint: endpoint.clone(),
            code,
        }
    }

    fn series(endpoint: &str) -> String {
        format!("gateway_requests_total{{route=\"vs/0\",cluster=\"c\",endpoint=\"{endpoint}\"")
    }

    #[test]
    fn an_endpoint_that_leaves_takes_its_series_and_one_at_its_address_later_counts_anew() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let (a, b): (Arc<str>, Arc<str>) = ("10.0.0.1:80".into(), "10.0.0.2:80".into());
        let mut holds = metrics.endpoint_holds("c".into());
        holds.hold([&a, &b]);
        let (to_a, to_b) = (labels(&a, 200), labels(&b, 200));
        metrics.count_request(&to_a);
        metrics.count_request(&to_b);
        assert!(render(&registry).contains(&series("10.0.0.2:80")));

        holds.hold([&a]);
        let text = render(&registry);
        assert!(!text.contains(&series("10.0.0.2:80")), "{text}");
        assert!(text.contains(&series("10.0.0.1:80")), "{text}");

        // Requests in flight when it left: through this thread's cached handle, and a label
        // set the cache has not seen. Neither brings the series back.
        metrics.count_request(&to_b);
        metrics.count_request(&labels(&b, 503));
        assert!(!render(&registry).contains(&series("10.0.0.2:80")));

        // The address comes back as a new endpoint (a new label): it counts from zero.
        let b_again: Arc<str> = "10.0.0.2:80".into();
        holds.hold([&a, &b_again]);
        metrics.count_request(&labels(&b_again, 200));
        let text = render(&registry);
        assert!(
            text.contains(&format!("{},code=\"200\"}} 1", series("10.0.0.2:80"))),
            "{text}"
        );

        let (hits, _) = metrics.cache_counters(&"c".into(), &a);
        hits.inc();
        assert!(render(&registry).contains(
            "gateway_upstream_cache_total{cluster=\"c\",endpoint=\"10.0.0.1:80\",result=\"hit\"} 1"
        ));
        drop(holds);
        let text = render(&registry);
        assert!(!text.contains("10.0.0."), "no cluster holds any: {text}");
    }

    #[test]
    fn a_pair_two_clusters_hold_keeps_its_series_until_both_let_go() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        // A reload runs the old and the new cluster of one name side by side for a while.
        let (old, new): (Arc<str>, Arc<str>) = ("10.0.0.1:80".into(), "10.0.0.1:80".into());
        let mut before = metrics.endpoint_holds("c".into());
        let mut after = metrics.endpoint_holds("c".into());
        before.hold([&old]);
        after.hold([&new]);
        metrics.count_request(&labels(&old, 200));
        drop(before);
        assert!(render(&registry).contains(&series("10.0.0.1:80")));
        // The old cluster's label still counts while the pair is held.
        metrics.count_request(&labels(&old, 204));
        assert!(render(&registry).contains("code=\"204\"} 1"));
        after.hold([]);
        assert!(!render(&registry).contains("10.0.0.1"));
    }
}
