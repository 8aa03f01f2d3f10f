//! Passive outlier detection, as Istio's `outlierDetection` programs Envoy's outlier detector.
//!
//! Split in two so the request path never takes a lock:
//!
//! - [`HostCounters`] lives beside each endpoint and is updated with atomics by the request that
//!   saw the outcome. It only answers "did this outcome just cross a threshold?" ([`Trip`]).
//! - [`Ejections`] is a pure state machine owned by the control task: it decides whether a trip
//!   ejects the host (max ejection percent), when an ejected host comes back (base ejection time ×
//!   how often it was ejected, capped), and which hosts the balancer may use (min health percent).
//!   Time is passed in, so tests drive it without sleeping.
//!
//! Active HTTP checks, optional, are in [`active`].
//!
//! Differences from Envoy, on purpose: an ejected host returns exactly when its time is up (the
//! driver asks [`Ejections::next_due`]) instead of at the next `interval` sweep, so a short
//! `baseEjectionTime` is not stretched by a long `interval`.

pub mod active;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Envoy's cap on one ejection when `max_ejection_time` is not set (Istio does not expose it).
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// The thresholds of one cluster's outlier detection (Istio `outlierDetection`, defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Consecutive 5xx (gateway errors and local failures included) that eject; `None` or 0: off.
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504 or local failures that eject; `None` or 0: off.
    pub consecutive_gateway: Option<u32>,
    /// How often ejection multipliers decay (Istio `interval`, default 10 s).
    pub interval: Duration,
    /// The first ejection's length; the n-th lasts n × this (Istio `baseEjectionTime`, 30 s).
    pub base_ejection_time: Duration,
    /// The longest one ejection may last.
    pub max_ejection_time: Duration,
    /// No new ejection once this share of hosts is ejected (Istio default 10); one host can
    /// always be ejected, as in Envoy.
    pub max_ejection_percent: u32,
    /// Below this share of healthy hosts, route to all hosts, ejected or not (Envoy's panic
    /// threshold; Istio default 0: never).
    pub min_health_percent: u32,
}

impl Default for OutlierPolicy {
    /// Istio's defaults for an `outlierDetection` block with no fields set.
    fn default() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

/// What one attempt against an endpoint ended with, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any response below 500.
    Success,
    /// A 5xx other than 502, 503, 504.
    ServerError,
    /// 502, 503 or 504 from the upstream.
    GatewayError,
    /// No response: connect failure, reset, timeout. Counts as a gateway error, as in Envoy
    /// without `splitExternalLocalOriginErrors`.
    LocalFailure,
}

impl Outcome {
    /// Classifies an upstream response status.
    pub fn from_status(status: u16) -> Self {
        match status {
            502..=504 => Outcome::GatewayError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

/// Which threshold an outcome crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    /// `consecutive5xxErrors` reached.
    Consecutive5xx,
    /// `consecutiveGatewayErrors` reached.
    ConsecutiveGateway,
}

/// Per-endpoint consecutive-error counters, updated lock-free on the request path.
#[derive(Debug, Default)]
pub struct HostCounters {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
}

impl HostCounters {
    /// Records one outcome; returns the threshold it crossed, exactly once per crossing.
    pub fn record(&self, outcome: Outcome, policy: &OutlierPolicy) -> Option<Trip> {
        match outcome {
            Outcome::Success => {
                // Load first: a healthy host under load would otherwise write its cache line on
                // every request.
                if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                    self.consecutive_5xx.store(0, Ordering::Relaxed);
                }
                if self.consecutive_gateway.load(Ordering::Relaxed) != 0 {
                    self.consecutive_gateway.store(0, Ordering::Relaxed);
                }
                None
            }
            Outcome::ServerError => {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                bump(&self.consecutive_5xx, policy.consecutive_5xx).then_some(Trip::Consecutive5xx)
            }
            Outcome::GatewayError | Outcome::LocalFailure => {
                let gw = bump(&self.consecutive_gateway, policy.consecutive_gateway);
                let any = bump(&self.consecutive_5xx, policy.consecutive_5xx);
                if gw {
                    Some(Trip::ConsecutiveGateway)
                } else if any {
                    Some(Trip::Consecutive5xx)
                } else {
                    None
                }
            }
        }
    }

    /// Clears both counters (done when the host is ejected, so it starts afresh on return).
    pub fn reset(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
    }
}

/// Adds one to a counter; true when it lands exactly on an enabled threshold.
fn bump(counter: &AtomicU32, threshold: Option<u32>) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    matches!(threshold, Some(t) if t > 0 && n == t)
}

#[derive(Debug, Clone, Default)]
struct HostState {
    ejected_until: Option<Instant>,
    /// How many ejections in a row; decays by one per healthy `interval`.
    times_ejected: u32,
}

/// The ejection state of one cluster's hosts, keyed by the endpoint's identity.
#[derive(Debug, Clone)]
pub struct Ejections<K> {
    policy: OutlierPolicy,
    hosts: HashMap<K, HostState>,
}

impl<K: Eq + Hash + Clone> Ejections<K> {
    /// No hosts yet.
    pub fn new(policy: OutlierPolicy) -> Self {
        Self {
            policy,
            hosts: HashMap::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &OutlierPolicy {
        &self.policy
    }

    /// Replaces the policy (config reload); ejections in progress keep their end time.
    pub fn set_policy(&mut self, policy: OutlierPolicy) {
        self.policy = policy;
    }

    /// Follows a new endpoint set from discovery: hosts that stay keep their state (an ejected
    /// host does not come back just because DNS answered again), gone hosts are forgotten.
    pub fn set_hosts<I: IntoIterator<Item = K>>(&mut self, keys: I) {
        let mut next = HashMap::new();
        for key in keys {
            let state = self.hosts.remove(&key).unwrap_or_default();
            next.insert(key, state);
        }
        self.hosts = next;
    }

    /// Acts on a trip: ejects the host unless the max ejection percent forbids it. True when the
    /// routable set changed.
    pub fn on_trip(&mut self, key: &K, now: Instant) -> bool {
        let total = self.hosts.len();
        let ejected = self.ejected_count();
        let policy = &self.policy;
        let Some(state) = self.hosts.get_mut(key) else {
            return false;
        };
        if state.ejected_until.is_some() {
            return false;
        }
        // Envoy's rule: compare the share already ejected, so one host can always go.
        if ejected * 100 >= policy.max_ejection_percent as usize * total {
            return false;
        }
        state.times_ejected = state.times_ejected.saturating_add(1);
        let cap = policy.max_ejection_time.max(policy.base_ejection_time);
        let length = policy
            .base_ejection_time
            .saturating_mul(state.times_ejected)
            .min(cap);
        state.ejected_until = Some(now + length);
        true
    }

    /// Returns hosts whose ejection is over, and says which (none: the routable set is the
    /// same).
    pub fn release_due(&mut self, now: Instant) -> Vec<K> {
        let mut released = Vec::new();
        for (key, state) in &mut self.hosts {
            if state.ejected_until.is_some_and(|until| until <= now) {
                state.ejected_until = None;
                released.push(key.clone());
            }
        }
        released
    }

    /// The periodic `interval` tick: hosts that stayed healthy a whole interval have their
    /// ejection count lowered by one, so a host that recovers for good is forgiven over time.
    pub fn decay(&mut self) {
        for state in self.hosts.values_mut() {
            if state.ejected_until.is_none() && state.times_ejected > 0 {
                state.times_ejected -= 1;
            }
        }
    }

    /// When the next ejected host is due back, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.hosts.values().filter_map(|s| s.ejected_until).min()
    }

    /// When this host's ejection ends, if it is ejected.
    pub fn ejected_until(&self, key: &K) -> Option<Instant> {
        self.hosts.get(key).and_then(|s| s.ejected_until)
    }

    /// Whether this host is ejected now.
    pub fn is_ejected(&self, key: &K) -> bool {
        self.hosts
            .get(key)
            .is_some_and(|s| s.ejected_until.is_some())
    }

    /// How many hosts are ejected.
    pub fn ejected_count(&self) -> usize {
        self.hosts
            .values()
            .filter(|s| s.ejected_until.is_some())
            .count()
    }

    /// Whether the balancer may use this host: it is not ejected, or the cluster is in panic
    /// (fewer healthy hosts than `minHealthPercent`), where every host is used.
    pub fn is_routable(&self, key: &K) -> bool {
        self.hosts.contains_key(key) && (self.in_panic() || !self.is_ejected(key))
    }

    /// True when the healthy share is below `minHealthPercent`.
    pub fn in_panic(&self) -> bool {
        let total = self.hosts.len();
        let healthy = total - self.ejected_count();
        total > 0 && healthy * 100 < self.policy.min_health_percent as usize * total
    }
}

#[cfg(test)]
mod tests;
