//! The numbers a run is judged by, printed at the end and written as JSON.
//!
//! Durations are milliseconds in JSON (`*_ms`), shares are percentages (`*_pct`).
//!
//! Fourth in the crate's line of modules: it may import `config`, `ledger` and `scenario`, and
//! may not import `verdict` or `runner`; judging a summary is `verdict`'s business. [`chaos`]
//! holds the figures of a run during which a replica was paused.

pub mod chaos;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::Scenario;
use crate::ledger::Book;

/// A latency distribution of one kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// Median, ms; `None` without calls.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Slowest, ms.
    pub max_ms: Option<f64>,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| Some(micros as f64 / 1000.0);
        if histogram.is_empty() {
            return Self {
                count: 0,
                p50_ms: None,
                p99_ms: None,
                max_ms: None,
            };
        }
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// How the set of hosts changed between the users' first and last calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Replicas {
    /// Hosts that served the users' first calls.
    pub before: usize,
    /// Hosts that served the users' last calls.
    pub after: usize,
    /// The least share of users a change from `before` to `after` hosts must move:
    /// `|after - before| / max(before, after)` (5 → 4: 20%).
    pub ideal_moved_pct: f64,
    /// Users that moved between two hosts that served both before and after: moves a
    /// consistent hash should not make (the Envoy/Istio complaint of every scale event).
    pub needless_moves: usize,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The target.
    pub host: String,
    /// Wall time of the goose run, starting and stopping users included, seconds.
    pub duration_s: f64,
    /// Keys (users) with at least one served call.
    pub users: usize,
    /// Calls made: served plus failed.
    pub requests: u64,
    /// Calls that failed: transport errors, non-2xx, answers without sticky-svc's headers.
    pub errors: u64,
    /// Failed calls by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Users served by exactly one host, percent of users.
    pub stickiness_pct: f64,
    /// Users served by more than one host.
    pub users_moved: usize,
    /// Users that changed host more than once.
    pub users_moved_twice: usize,
    /// `users_moved` as a percent of users.
    pub moved_pct: f64,
    /// Misses after a user's first call: caches lost to a host change or an eviction.
    pub lost_caches: u64,
    /// Calls that paid the first-call cost (`x-cache: miss`).
    pub cold: Latency,
    /// Calls answered from the cache (`x-cache: hit`).
    pub warm: Latency,
    /// The first-call cost the run was told to expect, ms.
    pub expected_first_call_cost_ms: f64,
    /// Users by the host of their last call.
    pub users_per_host: BTreeMap<String, usize>,
    /// Most users on one host over the mean per host (1.0 is perfectly even).
    pub imbalance: f64,
    /// How the host set changed during the run.
    pub replicas: Replicas,
    /// Goose's own threshold rules and whether each held.
    pub goose_thresholds: Vec<GooseThreshold>,
    /// `chaos`: what the users saw around the pause of one replica.
    pub chaos: Option<chaos::Chaos>,
}

/// One of goose's threshold rules, as its report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GooseThreshold {
    /// The rule, such as `error-rate<=0%`.
    pub rule: String,
    /// What goose observed.
    pub observed: String,
    /// Whether it held.
    pub passed: bool,
}

impl Summary {
    /// Folds a run's ledger into the summary.
    pub fn new(
        scenario: Scenario,
        host: &str,
        duration: Duration,
        expected_cost: Duration,
        book: &Book,
    ) -> Self {
        let users = book.tracks.len();
        let moved = book.tracks.values().filter(|t| t.moves() > 0).count();
        let moved_twice = book.tracks.values().filter(|t| t.moves() > 1).count();
        let mut users_per_host = BTreeMap::new();
        for track in book.tracks.values() {
            if let Some(&last) = track.hosts.last() {
                let name = book
                    .hosts
                    .get(usize::from(last))
                    .cloned()
                    .unwrap_or_default();
                *users_per_host.entry(name).or_insert(0) += 1;
            }
        }
        let imbalance = match users_per_host.values().max() {
            Some(&max) if users > 0 => max as f64 * users_per_host.len() as f64 / users as f64,
            _ => 0.0,
        };
        Self {
            scenario,
            host: host.to_owned(),
            duration_s: duration.as_secs_f64(),
            users,
            requests: book.requests + book.errors,
            errors: book.errors,
            errors_by_kind: book.errors_by_kind.clone(),
            stickiness_pct: percent(users - moved, users),
            users_moved: moved,
            users_moved_twice: moved_twice,
            moved_pct: percent(moved, users),
            lost_caches: book.tracks.values().map(|t| t.lost_caches).sum(),
            cold: Latency::of(&book.cold),
            warm: Latency::of(&book.warm),
            expected_first_call_cost_ms: expected_cost.as_secs_f64() * 1000.0,
            users_per_host,
            imbalance,
            replicas: replicas(book),
            goose_thresholds: Vec::new(),
            chaos: None,
        }
    }
}

fn replicas(book: &Book) -> Replicas {
    let firsts: BTreeSet<u16> = book
        .tracks
        .values()
        .filter_map(|t| t.hosts.first().copied())
        .collect();
    let lasts: BTreeSet<u16> = book
        .tracks
        .values()
        .filter_map(|t| t.hosts.last().copied())
        .collect();
    let (before, after) = (firsts.len(), lasts.len());
    let stayed = |host: &u16| firsts.contains(host) && lasts.contains(host);
    let needless_moves = book
        .tracks
        .values()
        .filter(|t| {
            t.hosts
                .windows(2)
                .any(|pair| stayed(&pair[0]) && stayed(&pair[1]))
        })
        .count();
    Replicas {
        before,
        after,
        ideal_moved_pct: percent(before.abs_diff(after), before.max(after)),
        needless_moves,
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms"))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "loadtest {} against {}: {} users in {:.1} s",
            self.scenario.as_str(),
            self.host,
            self.users,
            self.duration_s
        )?;
        writeln!(
            f,
            "  requests     {} ({} failed)",
            self.requests, self.errors
        )?;
        for (kind, count) in &self.errors_by_kind {
            writeln!(f, "    {count} x {kind}")?;
        }
        writeln!(
            f,
            "  stickiness   {:.1}% ({} of {} users served by more than one host, {} changed host more than once)",
            self.stickiness_pct, self.users_moved, self.users, self.users_moved_twice
        )?;
        writeln!(f, "  lost caches  {}", self.lost_caches)?;
        writeln!(
            f,
            "  cold         {} calls, p50 {}, p99 {} (expected cost {:.0} ms)",
            self.cold.count,
            ms(self.cold.p50_ms),
            ms(self.cold.p99_ms),
            self.expected_first_call_cost_ms
        )?;
        writeln!(
            f,
            "  warm         {} calls, p50 {}, p99 {}, max {}",
            self.warm.count,
            ms(self.warm.p50_ms),
            ms(self.warm.p99_ms),
            ms(self.warm.max_ms)
        )?;
        if self.users_per_host.is_empty() {
            writeln!(f, "  users/host   -")?;
        } else {
            let hosts: Vec<String> = self
                .users_per_host
                .iter()
                .map(|(host, users)| format!("{host} {users}"))
                .collect();
            writeln!(
                f,
                "  users/host   {} (max/mean {:.2})",
                hosts.join(", "),
                self.imbalance
            )?;
        }
        let r = &self.replicas;
        writeln!(
            f,
            "  replicas     {} -> {}: {:.1}% of users moved, ideal {:.1}%, {} needless moves",
            r.before, r.after, self.moved_pct, r.ideal_moved_pct, r.needless_moves
        )?;
        if let Some(chaos) = &self.chaos {
            write!(f, "{chaos}")?;
        }
        for rule in &self.goose_thresholds {
            let verdict = if rule.passed { "PASS" } else { "FAIL" };
            writeln!(
                f,
                "  goose        {} observed {}: {verdict}",
                rule.rule, rule.observed
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::ledger::{Cache, Ledger};

    const MS: Duration = Duration::from_millis(1);
    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn summary(ledger: &Ledger) -> Summary {
        Summary::new(
            Scenario::Rebalance,
            "http://x/",
            Duration::from_secs(3),
            MS * 300,
            &ledger.snapshot(),
        )
    }

    #[test]
    fn stickiness_moves_and_balance() {
        let ledger = Ledger::new();
        // Four hosts; "d" goes away and its two users move to "a" and "b" (needed moves).
        for (key, host) in [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "d")] {
            ledger.served(key, host, Cache::Miss, MS * 300, T0);
            ledger.served(key, host, Cache::Hit, MS, T0);
        }
        ledger.served(3, "a", Cache::Miss, MS * 300, T0);
        ledger.served(4, "b", Cache::Miss, MS * 300, T0);
        let s = summary(&ledger);
        assert_eq!(s.users, 5);
        assert_eq!(s.requests, 12);
        assert_eq!(s.users_moved, 2);
        assert!((s.stickiness_pct - 60.0).abs() < 1e-9);
        assert!((s.moved_pct - 40.0).abs() < 1e-9);
        assert_eq!(s.lost_caches, 2);
        assert_eq!(s.users_per_host["a"], 2);
        assert_eq!(s.users_per_host["c"], 1);
        // 3 hosts at the end, 5 users: mean 5/3, max 2.
        assert!((s.imbalance - 1.2).abs() < 1e-9);
        assert_eq!((s.replicas.before, s.replicas.after), (4, 3));
        assert!((s.replicas.ideal_moved_pct - 25.0).abs() < 1e-9);
        assert_eq!(s.replicas.needless_moves, 0);
        assert_eq!(s.cold.count, 7);
        assert_eq!(s.warm.count, 5);
        assert!(
            s.cold.p50_ms.unwrap() >= 299.0 && s.cold.p50_ms.unwrap() <= 301.0,
            "{s:?}"
        );
    }

    #[test]
    fn a_move_between_surviving_hosts_is_needless() {
        let ledger = Ledger::new();
        ledger.served(0, "a", Cache::Miss, MS, T0);
        ledger.served(1, "b", Cache::Miss, MS, T0);
        ledger.served(0, "b", Cache::Miss, MS, T0);
        ledger.served(2, "a", Cache::Miss, MS, T0);
        let s = summary(&ledger);
        assert_eq!(s.replicas.needless_moves, 1);
        assert!((s.replicas.ideal_moved_pct - 0.0).abs() < 1e-9);
    }

    #[test]
    fn an_empty_run_has_no_latencies_and_no_division_by_zero() {
        let ledger = Ledger::new();
        let s = summary(&ledger);
        assert_eq!(s.users, 0);
        assert_eq!(s.cold.p99_ms, None);
        assert!((s.stickiness_pct - 0.0).abs() < 1e-9);
        assert!(s.to_string().contains("p50 -"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["scenario"], "rebalance");
        assert!(json["warm"]["p99_ms"].is_null());
    }
}
