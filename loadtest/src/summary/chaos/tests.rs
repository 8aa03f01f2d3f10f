use super::*;
use crate::ledger::{CallError, Ledger};

const MS: Duration = Duration::from_millis(1);

/// 2026-12-06T10:00:00Z, the pause in these tests.
fn paused_at() -> SystemTime {
    humantime::parse_rfc3339("2026-12-06T10:00:00Z").unwrap()
}

/// `paused_at` plus `seconds` (negative: before).
fn at(seconds: f64) -> SystemTime {
    let offset = Duration::from_secs_f64(seconds.abs());
    if seconds < 0.0 {
        paused_at() - offset
    } else {
        paused_at() + offset
    }
}

fn record() -> Record {
    Record {
        replica: "a".into(),
        paused_at: paused_at(),
        resumed_at: at(20.0),
    }
}

#[test]
fn a_record_is_read_from_the_json_the_script_writes() {
    let json = r#"{"replica": "3f2a1b4c5d6e", "container": "3f2a1b4c5d6e0123",
        "paused_at": "2026-12-06T10:00:00.250Z", "resumed_at": "2026-12-06T10:00:20.500Z"}"#;
    let record = Record::parse(json).unwrap();
    assert_eq!(record.replica, "3f2a1b4c5d6e");
    assert_eq!(record.paused_at, at(0.25));
    assert_eq!(record.resumed_at, at(20.5));
}

#[test]
fn a_record_that_makes_no_sense_is_refused_with_the_reason() {
    let parse = |replica: &str, paused: &str, resumed: &str| {
        Record::parse(&format!(
            r#"{{"replica": "{replica}", "paused_at": "{paused}", "resumed_at": "{resumed}"}}"#
        ))
    };
    let (t0, t1) = ("2026-12-06T10:00:00Z", "2026-12-06T10:00:20Z");
    assert!(matches!(
        Record::parse(r#"{"replica": "a"}"#),
        Err(RecordError::Json(_))
    ));
    assert!(matches!(
        parse("a", "2026-12-06T11:00:00+01:00", t1),
        Err(RecordError::Time {
            field: "paused_at",
            ..
        })
    ));
    assert!(matches!(
        parse("a", t0, "1765015220"),
        Err(RecordError::Time {
            field: "resumed_at",
            ..
        })
    ));
    assert_eq!(parse(" ", t0, t1), Err(RecordError::NoReplica));
    assert_eq!(parse("a", t1, t0), Err(RecordError::Order));
    assert_eq!(parse("a", t0, t0), Err(RecordError::Order));
}

#[test]
fn users_are_split_by_their_home_before_the_pause_and_calls_by_when_they_ran() {
    let ledger = Ledger::with_call_log();
    let served = |key, host, cache, latency_ms: u64, sent| {
        ledger.served(key, host, cache, MS * latency_ms as u32, at(sent));
    };
    // User 0, of "a": warm there, then moved to "b" during the pause (cold, 3 s), then home.
    served(0, "a", Cache::Miss, 200, -10.0);
    served(0, "a", Cache::Hit, 1, -1.0);
    served(0, "b", Cache::Miss, 3000, 0.5);
    served(0, "b", Cache::Hit, 1, 4.0);
    served(0, "a", Cache::Hit, 1, 21.0); // within the settle: not judged
    served(0, "a", Cache::Hit, 1, 26.0);
    // User 1, of "a": a call sent just before the pause, answered by "c" after it.
    served(1, "a", Cache::Hit, 1, -0.5);
    served(1, "c", Cache::Miss, 2900, -0.1);
    served(1, "a", Cache::Hit, 1, 30.0);
    // User 2, of "b", never disturbed; user 3, of "c", one failure during the pause.
    served(2, "b", Cache::Hit, 1, -2.0);
    served(2, "b", Cache::Hit, 1, 10.0);
    served(2, "b", Cache::Hit, 1, 30.0);
    served(3, "c", Cache::Hit, 1, -2.0);
    ledger.failed(3, CallError::Status(503), MS * 5, at(12.0));
    served(3, "c", Cache::Miss, 1, 30.0); // not warm after the settle
    // User 4 starts during the pause: no home.
    served(4, "b", Cache::Miss, 200, 1.0);
    let chaos = figures(&ledger.snapshot(), &record(), Duration::from_secs(5));

    assert_eq!(chaos.replica, "a");
    assert_eq!(chaos.paused_at, "2026-12-06T10:00:00.000Z");
    assert!((chaos.paused_s - 20.0).abs() < 1e-9);
    assert_eq!(chaos.homeless_users, 1);
    let its = chaos.its_users;
    assert_eq!((its.users, its.calls, its.errors), (2, 9, 0));
    assert_eq!(its.max_ms, Some(3000.0));
    // In flight during the pause: user 0's two calls on "b" and user 1's call sent before it.
    assert_eq!(its.during.count, 3);
    // HDR histogram, 3 significant figures.
    let during_max = its.during.max_ms.unwrap();
    assert!((3000.0..3004.0).contains(&during_max), "{during_max}");
    assert_eq!(its.moved, 2);
    assert_eq!((its.away_hosts, its.during_misses), (2, 2));
    assert_eq!((its.after_calls, its.after_astray), (2, 0));
    assert_eq!((its.after_astray_users, its.after_silent_users), (0, 0));
    let others = chaos.other_users;
    assert_eq!((others.users, others.calls, others.errors), (2, 6, 1));
    assert_eq!((others.during.count, others.moved), (2, 0));
    assert_eq!((others.after_calls, others.after_astray), (2, 1));
    assert_eq!(others.after_astray_users, 1);

    assert_eq!(chaos.slowest[0].user, 0);
    assert!((chaos.slowest[0].sent_ms - 500.0).abs() < 1e-6);
    assert_eq!(chaos.slowest[0].outcome, "b (miss)");
    assert!((chaos.slowest[1].sent_ms + 100.0).abs() < 1e-6);
    // Where each went: away at the pause, home after it.
    let stops = |user: usize| -> Vec<(i64, &str)> {
        let journey = &chaos.journeys[user];
        assert_eq!(journey.user, user as u64);
        let stops = journey.stops.iter();
        stops
            .map(|s| (s.sent_ms as i64, s.outcome.as_str()))
            .collect()
    };
    assert_eq!(stops(0), [(500, "b (miss)"), (21_000, "a (hit)")]);
    assert_eq!(stops(1), [(-100, "c (miss)"), (30_000, "a (hit)")]);
    assert_eq!(chaos.failures.len(), 1);
    assert_eq!(chaos.failures[0].outcome, "HTTP 503");
    let text = chaos.to_string();
    assert!(text.contains("user 0 sent +0.50 s from the pause: 3000.00 ms, b (miss)"));
    assert!(text.contains("1 users had no call answered before the pause"));
    assert!(text.contains("user 0: +0.50 s b (miss) 3000 ms -> +21.00 s a (hit) 1 ms"));
}

#[test]
fn a_replica_that_served_nobody_has_no_users() {
    let ledger = Ledger::with_call_log();
    ledger.served(0, "b", Cache::Hit, MS, at(-1.0));
    let record = Record {
        replica: "nobody".into(),
        ..record()
    };
    let chaos = figures(&ledger.snapshot(), &record, Duration::ZERO);
    assert_eq!(chaos.its_users.users, 0);
    assert_eq!(chaos.its_users.max_ms, None);
    assert_eq!(chaos.other_users.users, 1);
    assert!(chaos.slowest.is_empty());
    // Serialises with the times as text, the way the summary file shows them.
    let json = serde_json::to_value(&chaos).unwrap();
    assert_eq!(json["resumed_at"], "2026-12-06T10:00:20.000Z");
}
