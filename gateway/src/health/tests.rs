use super::*;

fn policy() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: Some(3),
        consecutive_gateway: Some(2),
        max_ejection_percent: 50,
        ..OutlierPolicy::default()
    }
}

fn hosts(n: usize) -> Ejections<String> {
    let mut e = Ejections::new(policy());
    e.set_hosts((0..n).map(|i| format!("h{i}")));
    e
}

#[test]
fn status_classification() {
    assert_eq!(Outcome::from_status(200), Outcome::Success);
    assert_eq!(Outcome::from_status(404), Outcome::Success);
    assert_eq!(Outcome::from_status(500), Outcome::ServerError);
    assert_eq!(Outcome::from_status(502), Outcome::GatewayError);
    assert_eq!(Outcome::from_status(504), Outcome::GatewayError);
    assert_eq!(Outcome::from_status(599), Outcome::ServerError);
}

#[test]
fn trips_once_on_the_threshold_and_success_resets() {
    let p = policy();
    let c = HostCounters::default();
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    assert_eq!(
        c.record(Outcome::ServerError, &p),
        Some(Trip::Consecutive5xx)
    );
    // Past the threshold it does not trip again until reset.
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    c.reset();
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    assert_eq!(c.record(Outcome::Success, &p), None);
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    assert_eq!(c.record(Outcome::ServerError, &p), None);
    assert_eq!(
        c.record(Outcome::ServerError, &p),
        Some(Trip::Consecutive5xx)
    );
}

#[test]
fn gateway_errors_and_local_failures_count_for_both() {
    let p = policy();
    let c = HostCounters::default();
    assert_eq!(c.record(Outcome::LocalFailure, &p), None);
    assert_eq!(
        c.record(Outcome::GatewayError, &p),
        Some(Trip::ConsecutiveGateway)
    );
    // A plain 500 breaks the gateway run but continues the 5xx run (3rd 5xx).
    assert_eq!(
        c.record(Outcome::ServerError, &p),
        Some(Trip::Consecutive5xx)
    );
}

#[test]
fn disabled_thresholds_never_trip() {
    let p = OutlierPolicy {
        consecutive_5xx: Some(0),
        consecutive_gateway: None,
        ..policy()
    };
    let c = HostCounters::default();
    for _ in 0..100 {
        assert_eq!(c.record(Outcome::LocalFailure, &p), None);
    }
}

#[test]
fn ejection_lasts_base_time_times_count_and_returns_on_time() {
    let mut e = hosts(4);
    let t0 = Instant::now();
    let h = "h1".to_string();
    assert!(e.on_trip(&h, t0));
    assert!(e.is_ejected(&h));
    assert!(!e.is_routable(&h));
    assert_eq!(e.next_due(), Some(t0 + Duration::from_secs(30)));
    assert_eq!(e.ejected_until(&h), e.next_due());
    assert!(e.release_due(t0 + Duration::from_secs(29)).is_empty());
    assert_eq!(e.release_due(t0 + Duration::from_secs(30)), vec![h.clone()]);
    assert_eq!(e.ejected_until(&h), None);
    assert!(e.is_routable(&h));
    // Second ejection without decay in between: twice as long.
    let t1 = t0 + Duration::from_secs(31);
    assert!(e.on_trip(&h, t1));
    assert_eq!(e.next_due(), Some(t1 + Duration::from_secs(60)));
}

#[test]
fn ejection_length_is_capped() {
    let mut e = Ejections::new(OutlierPolicy {
        max_ejection_percent: 100,
        base_ejection_time: Duration::from_secs(200),
        ..policy()
    });
    e.set_hosts(["a"]);
    let mut now = Instant::now();
    for _ in 0..3 {
        assert!(e.on_trip(&"a", now));
        let due = e.next_due().unwrap();
        assert!(due - now <= DEFAULT_MAX_EJECTION_TIME);
        now = due;
        e.release_due(now);
    }
}

#[test]
fn decay_forgives_repeat_ejections() {
    let mut e = hosts(4);
    let t0 = Instant::now();
    let h = "h0".to_string();
    e.on_trip(&h, t0);
    e.release_due(t0 + Duration::from_secs(30));
    e.decay();
    let t1 = t0 + Duration::from_secs(40);
    e.on_trip(&h, t1);
    assert_eq!(e.next_due(), Some(t1 + Duration::from_secs(30)));
}

#[test]
fn max_ejection_percent_always_allows_one_then_caps() {
    let mut e = Ejections::new(OutlierPolicy {
        max_ejection_percent: 10,
        ..policy()
    });
    e.set_hosts((0..5).map(|i| i.to_string()));
    let now = Instant::now();
    assert!(
        e.on_trip(&"0".to_string(), now),
        "one host may always be ejected"
    );
    assert!(!e.on_trip(&"1".to_string(), now), "20% ejected is over 10%");
    assert_eq!(e.ejected_count(), 1);

    let mut e = hosts(4); // 50%
    assert!(e.on_trip(&"h0".to_string(), now));
    assert!(e.on_trip(&"h1".to_string(), now));
    assert!(!e.on_trip(&"h2".to_string(), now));
}

#[test]
fn unknown_or_already_ejected_hosts_are_ignored() {
    let mut e = hosts(2);
    let now = Instant::now();
    assert!(!e.on_trip(&"nope".to_string(), now));
    assert!(e.on_trip(&"h0".to_string(), now));
    assert!(!e.on_trip(&"h0".to_string(), now));
}

#[test]
fn panic_mode_routes_to_every_host() {
    let mut e = Ejections::new(OutlierPolicy {
        max_ejection_percent: 100,
        min_health_percent: 50,
        ..policy()
    });
    e.set_hosts(["a", "b", "c", "d"]);
    let now = Instant::now();
    e.on_trip(&"a", now);
    e.on_trip(&"b", now);
    assert!(!e.in_panic(), "2 of 4 healthy is exactly 50%");
    assert!(!e.is_routable(&"a"));
    e.on_trip(&"c", now);
    assert!(e.in_panic());
    assert!(e.is_routable(&"a") && e.is_routable(&"c"));
}

#[test]
fn endpoint_set_changes_keep_state_of_survivors() {
    let mut e = hosts(3);
    let now = Instant::now();
    e.on_trip(&"h0".to_string(), now);
    e.set_hosts(["h0".to_string(), "h2".to_string(), "h9".to_string()]);
    assert!(e.is_ejected(&"h0".to_string()));
    assert!(e.is_routable(&"h9".to_string()));
    assert!(
        !e.is_routable(&"h1".to_string()),
        "a gone host is not routable"
    );
}
