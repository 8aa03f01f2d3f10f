//! Pass or fail: a [`Summary`] held to the configured [`Thresholds`].
//!
//! Goose itself exits 0 even when every request failed, so the verdict is ours, computed from
//! our own counters; each broken threshold is one [`Violation`] with a sentence saying what
//! was seen and what was allowed.
//!
//! `chaos` adds its own thresholds, judged on the figures of [`crate::summary::chaos`]: the
//! users of the replicas that kept running see no error; no call of the paused replica's users
//! takes longer than `--max-chaos-latency`; after the resume and a settle time, every user is
//! back on its own replica and finds its cache warm.
//!
//! Fifth in the crate's line of modules: it may import `config`, `ledger`, `scenario` and
//! `summary`, and may not import `runner`.

use std::fmt;

use thiserror::Error;

use crate::config::{DEFAULT_MOVED_SLACK_PCT, Scenario, Thresholds};
use crate::summary::Summary;
use crate::summary::chaos::Chaos;

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
    /// `chaos` without the figures of a pause.
    #[error("-s chaos without a chaos record: nothing says which replica was paused, or when")]
    ChaosMissing,
    /// No user had the paused replica as home.
    #[error(
        "no user was answered by the paused replica {replica} before the pause: a wrong name, or a pause before the users were warm"
    )]
    ChaosReplicaUnknown {
        /// The name the record gave.
        replica: String,
    },
    /// Users whose home is not known.
    #[error(
        "{users} users had no call answered before the pause, so their replica is not known: pause once every user is warm (hatching plus one first-call cost)"
    )]
    ChaosNotWarm {
        /// Users without a call before the pause.
        users: usize,
    },
    /// The call log left calls out.
    #[error(
        "the call log was full and left {dropped} calls out: run -s chaos shorter or with fewer users"
    )]
    ChaosLogFull {
        /// Calls left out.
        dropped: u64,
    },
    /// Users of the replicas that kept running saw errors.
    #[error(
        "{errors} of {calls} calls of users of the replicas that kept running failed (allowed: 0)"
    )]
    ChaosHealthyErrors {
        /// Their failed calls.
        errors: u64,
        /// Their calls.
        calls: u64,
    },
    /// A call of the paused replica's users took too long.
    #[error(
        "a call of the paused replica's users took {max_ms:.0} ms from its start, above the bound of {bound_ms:.0} ms"
    )]
    ChaosTooSlow {
        /// The slowest.
        max_ms: f64,
        /// `--max-chaos-latency`.
        bound_ms: f64,
    },
    /// After the resume and the settle, calls not answered at home from the cache.
    #[error(
        "{calls} calls of {users} users (of them {its_users} of the paused replica's) sent {settle_s:.1} s or more after the resume were not answered by the user's own replica from its cache"
    )]
    ChaosNotHome {
        /// Such calls.
        calls: u64,
        /// Users with such a call.
        users: usize,
        /// Of them, users of the paused replica.
        its_users: usize,
        /// The settle time.
        settle_s: f64,
    },
    /// Users without a call after the settle: their return is not shown.
    #[error(
        "{users} users made no call {settle_s:.1} s or more after the resume, so their return is not shown: run longer past the resume"
    )]
    ChaosNoCallAfter {
        /// Such users.
        users: usize,
        /// The settle time.
        settle_s: f64,
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
                Scenario::Sticky | Scenario::Rebalance | Scenario::Chaos => {
                    self.judge_users(thresholds, &mut violations)
                }
                Scenario::ColdStart => self.judge_cold(thresholds, &mut violations),
            }
        }
        if self.scenario == Scenario::Chaos {
            match &self.chaos {
                Some(chaos) => judge_chaos(chaos, thresholds, &mut violations),
                None => violations.push(Violation::ChaosMissing),
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

/// The chaos thresholds, each checked whatever the others found.
fn judge_chaos(chaos: &Chaos, thresholds: &Thresholds, violations: &mut Vec<Violation>) {
    let (its, others) = (&chaos.its_users, &chaos.other_users);
    if its.users == 0 {
        violations.push(Violation::ChaosReplicaUnknown {
            replica: chaos.replica.clone(),
        });
    }
    if chaos.homeless_users > 0 {
        violations.push(Violation::ChaosNotWarm {
            users: chaos.homeless_users,
        });
    }
    if chaos.calls_dropped > 0 {
        violations.push(Violation::ChaosLogFull {
            dropped: chaos.calls_dropped,
        });
    }
    if others.errors > 0 {
        violations.push(Violation::ChaosHealthyErrors {
            errors: others.errors,
            calls: others.calls,
        });
    }
    let bound_ms = thresholds.max_chaos_latency.as_secs_f64() * 1000.0;
    if let Some(max_ms) = its.max_ms
        && max_ms > bound_ms
    {
        violations.push(Violation::ChaosTooSlow { max_ms, bound_ms });
    }
    let astray = its.after_astray + others.after_astray;
    if astray > 0 {
        violations.push(Violation::ChaosNotHome {
            calls: astray,
            users: its.after_astray_users + others.after_astray_users,
            its_users: its.after_astray_users,
            settle_s: chaos.settle_s,
        });
    }
    let silent = its.after_silent_users + others.after_silent_users;
    if silent > 0 {
        violations.push(Violation::ChaosNoCallAfter {
            users: silent,
            settle_s: chaos.settle_s,
        });
    }
}

#[cfg(test)]
mod tests;
