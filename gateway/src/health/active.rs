//! Active HTTP health checks (`--health-check-path`): every `interval` the gateway GETs the path
//! on each endpoint; `unhealthy_threshold` failures in a row take it out of the balancer,
//! `healthy_threshold` successes in a row bring it back. A 2xx answer within `timeout` passes.
//!
//! New endpoints start healthy: discovery already reports ready replicas (a Kubernetes headless
//! Service lists ready pods only), and a fresh replica should take its users at once.

use std::time::Duration;

/// The flags of active checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    /// Path to GET, e.g. `/healthz`.
    pub path: String,
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// A check slower than this fails.
    pub timeout: Duration,
    /// Failures in a row that mark an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Successes in a row that mark it healthy again.
    pub healthy_threshold: u32,
}

/// One endpoint's active-check state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeState {
    healthy: bool,
    run: u32,
}

impl Default for ProbeState {
    fn default() -> Self {
        Self {
            healthy: true,
            run: 0,
        }
    }
}

impl ProbeState {
    /// Whether the endpoint passes.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check; true when the endpoint changed between healthy and unhealthy.
    pub fn observe(&mut self, passed: bool, check: &ActiveCheck) -> bool {
        if passed == self.healthy {
            self.run = 0;
            return false;
        }
        self.run += 1;
        let threshold = if self.healthy {
            check.unhealthy_threshold
        } else {
            check.healthy_threshold
        };
        if self.run >= threshold.max(1) {
            self.healthy = passed;
            self.run = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> ActiveCheck {
        ActiveCheck {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 3,
        }
    }

    #[test]
    fn thresholds_in_a_row() {
        let c = check();
        let mut s = ProbeState::default();
        assert!(s.is_healthy());
        assert!(!s.observe(false, &c));
        assert!(!s.observe(true, &c), "a success breaks the run");
        assert!(!s.observe(false, &c));
        assert!(s.observe(false, &c), "two failures in a row");
        assert!(!s.is_healthy());
        assert!(!s.observe(true, &c));
        assert!(!s.observe(true, &c));
        assert!(s.observe(true, &c), "three successes in a row");
        assert!(s.is_healthy());
    }
}
