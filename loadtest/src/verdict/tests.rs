use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::summary::{Latency, Replicas};

fn thresholds() -> Thresholds {
    Thresholds {
        max_errors: 0,
        min_stickiness: Some(100.0),
        max_lost_caches: Some(0),
        max_moved: None,
        max_warm_p99: Duration::from_millis(100),
        max_cold_overhead: Duration::from_secs(1),
        max_chaos_latency: Duration::from_secs(15),
    }
}

fn latency(p50_ms: f64, p99_ms: f64) -> Latency {
    Latency {
        count: 10,
        p50_ms: Some(p50_ms),
        p99_ms: Some(p99_ms),
        max_ms: Some(p99_ms),
    }
}

/// A clean sticky run: 10 users, 4 hosts, all warm calls fast.
fn clean(scenario: Scenario) -> Summary {
    Summary {
        scenario,
        host: "http://x/".into(),
        duration_s: 3.0,
        users: 10,
        requests: 100,
        errors: 0,
        errors_by_kind: BTreeMap::new(),
        stickiness_pct: 100.0,
        users_moved: 0,
        users_moved_twice: 0,
        moved_pct: 0.0,
        lost_caches: 0,
        cold: latency(300.0, 301.0),
        warm: latency(0.2, 1.0),
        expected_first_call_cost_ms: 300.0,
        users_per_host: BTreeMap::new(),
        imbalance: 1.0,
        replicas: Replicas {
            before: 4,
            after: 4,
            ideal_moved_pct: 0.0,
            needless_moves: 0,
        },
        goose_thresholds: Vec::new(),
        chaos: None,
    }
}

#[test]
fn a_clean_run_passes() {
    for scenario in [Scenario::Sticky, Scenario::Rebalance, Scenario::ColdStart] {
        let verdict = clean(scenario).verdict(&thresholds());
        assert!(verdict.passed(), "{scenario:?}: {verdict}");
    }
}

#[test]
fn any_failed_request_fails_the_run() {
    let summary = Summary {
        errors: 1,
        ..clean(Scenario::Sticky)
    };
    let verdict = summary.verdict(&thresholds());
    assert!(matches!(
        verdict.violations[..],
        [Violation::Errors { errors: 1, .. }]
    ));
    assert!(verdict.to_string().contains("1 of 100 requests failed"));
}

#[test]
fn a_run_that_served_nothing_fails() {
    let summary = Summary {
        errors: 100,
        ..clean(Scenario::Sticky)
    };
    let verdict = summary.verdict(&thresholds());
    assert_eq!(verdict.violations[0], Violation::NothingServed);
}

#[test]
fn sticky_needs_every_user_on_one_host() {
    let summary = Summary {
        stickiness_pct: 90.0,
        users_moved: 1,
        ..clean(Scenario::Sticky)
    };
    let verdict = summary.verdict(&thresholds());
    assert!(matches!(
        verdict.violations[..],
        [Violation::Stickiness { moved: 1, .. }]
    ));
    assert!(
        verdict
            .to_string()
            .contains("stickiness 90.0% is below 100.0%")
    );
    // rebalance tolerates the move: it judges the moved share instead.
    let rebalance = Summary {
        scenario: Scenario::Rebalance,
        moved_pct: 10.0,
        ..summary
    };
    assert!(rebalance.verdict(&thresholds()).passed());
}

#[test]
fn sticky_counts_caches_lost_without_a_host_change() {
    let evicted = Summary {
        lost_caches: 3,
        ..clean(Scenario::Sticky)
    };
    assert_eq!(
        evicted.verdict(&thresholds()).violations,
        [Violation::LostCaches {
            lost: 3,
            allowed: 0
        }]
    );
    // Moving users lose caches by design in a rebalance: not judged there.
    let rebalance = Summary {
        scenario: Scenario::Rebalance,
        ..evicted
    };
    assert!(rebalance.verdict(&thresholds()).passed());
}

#[test]
fn rebalance_bounds_the_moved_share_by_the_ideal_plus_slack_or_the_flag() {
    let summary = Summary {
        moved_pct: 40.0,
        users_moved: 4,
        replicas: Replicas {
            before: 4,
            after: 3,
            ideal_moved_pct: 25.0,
            needless_moves: 1,
        },
        ..clean(Scenario::Rebalance)
    };
    let verdict = summary.verdict(&thresholds());
    assert!(matches!(verdict.violations[..], [Violation::Moved { max, .. }] if max == 35.0));
    let loose = Thresholds {
        max_moved: Some(50.0),
        ..thresholds()
    };
    assert!(summary.verdict(&loose).passed());
    let flapping = Summary {
        users_moved_twice: 2,
        ..summary
    };
    assert!(
        flapping
            .verdict(&loose)
            .violations
            .contains(&Violation::Flapping { users: 2 })
    );
}

#[test]
fn warm_p99_is_bounded_and_must_exist() {
    let slow = Summary {
        warm: latency(1.0, 150.0),
        ..clean(Scenario::Sticky)
    };
    assert!(matches!(
        slow.verdict(&thresholds()).violations[..],
        [Violation::WarmP99 { .. }]
    ));
    let none = Summary {
        warm: Latency {
            count: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
        },
        ..clean(Scenario::Sticky)
    };
    assert_eq!(
        none.verdict(&thresholds()).violations,
        [Violation::NoWarmCalls]
    );
}

#[test]
fn cold_start_compares_cold_calls_with_the_expected_cost() {
    let fast = Summary {
        cold: latency(12.0, 15.0),
        ..clean(Scenario::ColdStart)
    };
    assert!(matches!(
        fast.verdict(&thresholds()).violations[..],
        [Violation::ColdTooFast { .. }]
    ));
    let slow = Summary {
        cold: latency(900.0, 1400.0),
        ..clean(Scenario::ColdStart)
    };
    assert!(matches!(
        slow.verdict(&thresholds()).violations[..],
        [Violation::ColdTooSlow { .. }]
    ));
    let none = Summary {
        cold: Latency {
            count: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
        },
        ..clean(Scenario::ColdStart)
    };
    assert_eq!(
        none.verdict(&thresholds()).violations,
        [Violation::NoColdCalls]
    );
}

mod chaos;
