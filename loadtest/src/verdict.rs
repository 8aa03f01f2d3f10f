//! Pass or fail: a [`Summary`] held to the configured [`Thresholds`].
//!
//! Goose itself exits 0 even when every request failed, so the verdict is ours, computed from
//! our own counters; each broken threshold is one [`Violation`] with a sentence saying what
//! was seen and what was allowed.
//!
//! Fifth in the crate's line of modules: it may import `config`, `ledger`, `scenario` and
//! `summary`, and may not import `runner`.

use std::fmt;

use thiserror::Error;

use crate::config::{DEFAULT_MOVED_SLACK_PCT, Scenario, Thresholds};
use crate::summary::Summary;

/// A broken threshold.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Violation {
    /// No call was served at all.
    #[error("no request was served: is the target up and is it sticky-svc behind the gateway?")]
    NothingServed,
    /// Calls failed.
    #[error("{errors} of {requests} requests failed (allowed: {allowed})")]
    Errors {
        /// Failed calls.
        errors: u64,
        /// All calls.
        requests: u64,
        /// Allowed failures.
        allowed: u64,
    },
    /// Users were served by more than one host.
    #[error(
        "stickiness {pct:.1}% is below {min:.1}%: {moved} of {users} users were served by more than one host"
    )]
    Stickiness {
        /// Observed stickiness.
        pct: f64,
        /// Required stickiness.
        min: f64,
        /// Users that moved.
        moved: usize,
        /// All users.
        users: usize,
    },
    /// Users paid the first-call cost again without changing host.
    #[error(
        "{lost} calls lost their cache after the user's first call (allowed: {allowed}): a replica restarted or evicted users"
    )]
    LostCaches {
        /// Misses after first calls.
        lost: u64,
        /// Allowed.
        allowed: u64,
    },
    /// Too many users moved during a rebalance.
    #[error(
        "{pct:.1}% of users moved, above the bound of {max:.1}% (ideal for {before} -> {after} hosts: {ideal:.1}%)"
    )]
    Moved {
        /// Observed share.
        pct: f64,
        /// Allowed share.
        max: f64,
        /// Ideal share.
        ideal: f64,
        /// Hosts before.
        before: usize,
        /// Hosts after.
        after: usize,
    },
    /// Users changed host more than once during a rebalance.
    #[error(
        "{users} users changed host more than once; a rebalance should move a user at most once"
    )]
    Flapping {
        /// Users that moved twice or more.
        users: usize,
    },
    /// No warm call to judge the cache by.
    #[error("no call was answered from the cache: run longer than the first-call cost")]
    NoWarmCalls,
    /// Warm calls too slow.
    #[error("warm p99 {p99_ms:.2} ms is above the bound of {max_ms:.2} ms")]
    WarmP99 {
        /// Observed.
        p99_ms: f64,
        /// Allowed.
        max_ms: f64,
    },
    /// `cold-start` saw no cold call.
    #[error("no cold call was made: every new user was answered from a cache")]
    NoColdCalls,
    /// Cold calls faster than the cost the service is said to have.
    #[error(
        "cold p50 {p50_ms:.2} ms is below the expected first-call cost {expected_ms:.2} ms: check --first-call-cost"
    )]
    ColdTooFast {
        /// Observed.
        p50_ms: f64,
        /// Expected.
        expected_ms: f64,
    },
    /// Cold calls much slower than the cost.
    #[error("cold p99 {p99_ms:.2} ms is above the first-call cost plus overhead, {max_ms:.2} ms")]
    ColdTooSlow {
        /// Observed.
        p99_ms: f64,
        /// Allowed.
        max_ms: f64,
    },
}

/// Every threshold a run broke; empty when it passed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The broken thresholds, in the order they were checked.
    pub violations: Vec<Violation>,
}

impl Verdict {
    /// Whether every threshold held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return writeln!(f, "PASS: every threshold held");
        }
        writeln!(f, "FAIL: {} threshold(s) broken", self.violations.len())?;
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        Ok(())
    }
}

impl Summary {
    /// Judges the run against `thresholds`.
    pub fn verdict(&self, thresholds: &Thresholds) -> Verdict {
        let mut violations = Vec::new();
        let served = self.requests - self.errors;
        if served == 0 {
            violations.push(Violation::NothingServed);
        }
        if self.errors > thresholds.max_errors {
            violations.push(Violation::Errors {
                errors: self.errors,
                requests: self.requests,
                allowed: thresholds.max_errors,
            });
        }
        if served > 0 {
            match self.scenario {
                Scenario::Sticky | Scenario::Rebalance => {
                    self.judge_users(thresholds, &mut violations)
                }
                Scenario::ColdStart => self.judge_cold(thresholds, &mut violations),
            }
        }
        Verdict { violations }
    }

    fn judge_users(&self, thresholds: &Thresholds, violations: &mut Vec<Violation>) {
        if self.scenario == Scenario::Sticky
            && let Some(min) = thresholds.min_stickiness
            && self.stickiness_pct < min
        {
            violations.push(Violation::Stickiness {
                pct: self.stickiness_pct,
                min,
                moved: self.users_moved,
                users: self.users,
            });
        }
        if self.scenario == Scenario::Sticky
            && let Some(allowed) = thresholds.max_lost_caches
            && self.lost_caches > allowed
        {
            violations.push(Violation::LostCaches {
                lost: self.lost_caches,
                allowed,
            });
        }
        if self.scenario == Scenario::Rebalance {
            let ideal = self.replicas.ideal_moved_pct;
            let max = thresholds
                .max_moved
                .unwrap_or((ideal + DEFAULT_MOVED_SLACK_PCT).min(100.0));
            if self.moved_pct > max {
                violations.push(Violation::Moved {
                    pct: self.moved_pct,
                    max,
                    ideal,
                    before: self.replicas.before,
                    after: self.replicas.after,
                });
            }
            if self.users_moved_twice > 0 {
                violations.push(Violation::Flapping {
                    users: self.users_moved_twice,
                });
            }
        }
        match self.warm.p99_ms {
            None => violations.push(Violation::NoWarmCalls),
            Some(p99_ms) => {
                let max_ms = thresholds.max_warm_p99.as_secs_f64() * 1000.0;
                if p99_ms > max_ms {
                    violations.push(Violation::WarmP99 { p99_ms, max_ms });
                }
            }
        }
    }

    fn judge_cold(&self, thresholds: &Thresholds, violations: &mut Vec<Violation>) {
        let (Some(p50_ms), Some(p99_ms)) = (self.cold.p50_ms, self.cold.p99_ms) else {
            violations.push(Violation::NoColdCalls);
            return;
        };
        let expected_ms = self.expected_first_call_cost_ms;
        if p50_ms < expected_ms {
            violations.push(Violation::ColdTooFast {
                p50_ms,
                expected_ms,
            });
        }
        let max_ms = expected_ms + thresholds.max_cold_overhead.as_secs_f64() * 1000.0;
        if p99_ms > max_ms {
            violations.push(Violation::ColdTooSlow { p99_ms, max_ms });
        }
    }
}

#[cfg(test)]
mod tests;
