//! The chaos thresholds, each broken on its own by a ledger of recorded calls around a pause.

use std::time::{Duration, SystemTime};

use crate::config::{Scenario, Thresholds};
use crate::ledger::{Cache, CallError, Ledger};
use crate::summary::Summary;
use crate::summary::chaos::{Record, figures};
use crate::verdict::{Verdict, Violation};

const MS: Duration = Duration::from_millis(1);
const HOSTS: [&str; 4] = ["a", "b", "c", "d"];
const USERS: u64 = 8;
const SETTLE: Duration = Duration::from_secs(5);

fn paused_at() -> SystemTime {
    humantime::parse_rfc3339("2026-12-06T10:00:00Z").unwrap()
}

/// The pause plus `seconds` (negative: before).
fn at(seconds: f64) -> SystemTime {
    let offset = Duration::from_secs_f64(seconds.abs());
    if seconds < 0.0 {
        paused_at() - offset
    } else {
        paused_at() + offset
    }
}

fn thresholds() -> Thresholds {
    Thresholds {
        max_errors: 0,
        min_stickiness: None,
        max_lost_caches: None,
        max_moved: None,
        max_warm_p99: Duration::from_millis(100),
        max_cold_overhead: Duration::from_secs(1),
        max_chaos_latency: Duration::from_secs(15),
    }
}

/// A run as it should go: users 0..8 at home on `HOSTS[user % 4]`, "a" paused from 0 s to
/// 20 s. Every second each user calls; a's users wait out the checks (2.5 s) on their first
/// call during the pause, then are cold on "b" and warm there, and back on "a" after it.
fn clean() -> Ledger {
    let ledger = Ledger::with_call_log();
    for user in 0..USERS {
        let home = HOSTS[(user % 4) as usize];
        ledger.served(user, home, Cache::Miss, MS * 200, at(-20.0));
        for second in -19..=40 {
            let sent = at(f64::from(second) + 0.01 * user as f64);
            match (home, second) {
                ("a", 0) => ledger.served(user, "b", Cache::Miss, MS * 2700, sent),
                ("a", 1 | 2) => {} // still waiting on the first call
                ("a", 3..20) => ledger.served(user, "b", Cache::Hit, MS, sent),
                _ => ledger.served(user, home, Cache::Hit, MS, sent),
            }
        }
    }
    ledger
}

fn judge(ledger: &Ledger, replica: &str) -> (Summary, Verdict) {
    let book = ledger.snapshot();
    let record = Record {
        replica: replica.to_owned(),
        paused_at: paused_at(),
        resumed_at: at(20.0),
    };
    let mut summary = Summary::new(
        Scenario::Chaos,
        "http://gateway:8080/",
        Duration::from_secs(60),
        MS * 200,
        &book,
    );
    summary.chaos = Some(figures(&book, &record, SETTLE));
    let verdict = summary.verdict(&thresholds());
    (summary, verdict)
}

#[test]
fn a_pause_the_gateway_rides_out_passes() {
    let (summary, verdict) = judge(&clean(), "a");
    assert!(verdict.passed(), "{summary}{verdict}");
    let chaos = summary.chaos.unwrap();
    assert_eq!((chaos.its_users.users, chaos.other_users.users), (2, 6));
    assert_eq!(chaos.its_users.moved, 2);
    // a's users moved away and back: the sticky thresholds are not the chaos run's.
    assert!(summary.stickiness_pct < 100.0);
}

#[test]
fn an_error_of_a_healthy_replicas_user_fails_the_run() {
    let ledger = clean();
    ledger.failed(1, CallError::Status(502), MS * 3, at(10.5));
    let (_, verdict) = judge(&ledger, "a");
    // 6 users of b, c and d, 61 calls each, and the failed one.
    assert!(
        verdict.violations.contains(&Violation::ChaosHealthyErrors {
            errors: 1,
            calls: 367
        }),
        "{verdict}"
    );
    assert!(
        verdict
            .to_string()
            .contains("1 of 367 calls of users of the replicas that kept running failed")
    );
}

#[test]
fn an_error_of_the_paused_replicas_user_fails_the_run_too() {
    let ledger = clean();
    ledger.failed(0, CallError::Timeout, Duration::from_secs(14), at(1.0));
    let (_, verdict) = judge(&ledger, "a");
    // Not a healthy replica's error, but no request may fail at all.
    assert!(matches!(
        verdict.violations[..],
        [Violation::Errors { errors: 1, .. }]
    ));
}

#[test]
fn a_call_of_the_paused_replicas_users_over_the_bound_fails_the_run() {
    let ledger = clean();
    ledger.served(4, "c", Cache::Miss, MS * 15_100, at(0.2));
    let (_, verdict) = judge(&ledger, "a");
    assert_eq!(
        verdict.violations,
        [Violation::ChaosTooSlow {
            max_ms: 15_100.0,
            bound_ms: 15_000.0
        }]
    );
    // Up to the bound is fine.
    let ledger = clean();
    ledger.served(4, "c", Cache::Miss, MS * 15_000, at(0.2));
    assert!(judge(&ledger, "a").1.passed());
}

#[test]
fn a_user_not_home_or_not_warm_after_the_settle_fails_the_run() {
    // Still on the neighbour after the settle.
    let ledger = clean();
    ledger.served(0, "b", Cache::Hit, MS, at(25.5));
    let (_, verdict) = judge(&ledger, "a");
    assert_eq!(
        verdict.violations,
        [Violation::ChaosNotHome {
            calls: 1,
            users: 1,
            its_users: 1,
            settle_s: 5.0
        }]
    );
    // Home, but its cache is gone (a replica restarted rather than resumed).
    let ledger = clean();
    ledger.served(4, "a", Cache::Miss, MS * 200, at(30.5));
    let (_, verdict) = judge(&ledger, "a");
    assert!(
        matches!(
            verdict.violations[..],
            [Violation::ChaosNotHome { its_users: 1, .. }]
        ),
        "{verdict}"
    );
    // Within the settle, a user may still be away.
    let ledger = clean();
    ledger.served(0, "b", Cache::Hit, MS, at(24.5));
    assert!(judge(&ledger, "a").1.passed());
}

#[test]
fn a_user_without_a_call_after_the_settle_fails_the_run() {
    let ledger = Ledger::with_call_log();
    for user in 0..USERS {
        let home = HOSTS[(user % 4) as usize];
        ledger.served(user, home, Cache::Miss, MS * 200, at(-5.0));
        // The load ended at the resume: nobody's return is shown.
        ledger.served(user, home, Cache::Hit, MS, at(-1.0));
    }
    let (_, verdict) = judge(&ledger, "a");
    assert_eq!(
        verdict.violations,
        [Violation::ChaosNoCallAfter {
            users: 8,
            settle_s: 5.0
        }]
    );
}

#[test]
fn a_replica_nobody_was_served_by_or_users_not_yet_warm_fail_the_run() {
    let (_, verdict) = judge(&clean(), "e");
    assert!(
        verdict
            .violations
            .contains(&Violation::ChaosReplicaUnknown {
                replica: "e".into()
            }),
        "{verdict}"
    );
    let ledger = clean();
    ledger.served(99, "b", Cache::Miss, MS * 200, at(1.0));
    ledger.served(99, "b", Cache::Hit, MS, at(30.0));
    let (_, verdict) = judge(&ledger, "a");
    assert_eq!(verdict.violations, [Violation::ChaosNotWarm { users: 1 }]);
}

#[test]
fn a_chaos_run_without_its_record_fails() {
    let book = clean().snapshot();
    let summary = Summary::new(Scenario::Chaos, "http://x/", Duration::ZERO, MS, &book);
    assert_eq!(
        summary.verdict(&thresholds()).violations,
        [Violation::ChaosMissing]
    );
}
