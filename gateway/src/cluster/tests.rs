use std::time::Duration;

use prometheus_client::registry::Registry;

use super::*;
use crate::balancer::PickContext;
use crate::endpoint::{Endpoint, endpoint_set};
use crate::maglev::TableSize;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 8080))
}

fn spec(n: u8, outlier: Option<OutlierPolicy>) -> ClusterSpec {
    let endpoints = (1..=n).map(|i| Endpoint::at(addr(i), 1)).collect();
    ClusterSpec {
        name: "outbound|8080||svc.test".into(),
        source: Source::Static(endpoint_set(endpoints)),
        policy: Policy::Maglev(TableSize::DEFAULT),
        pool: PoolSettings::default(),
        outlier,
        active: None,
    }
}

fn start(spec: ClusterSpec) -> Cluster {
    let resolver = DnsResolver::with_name_server("127.0.0.1:9".parse().unwrap());
    Cluster::start(
        spec,
        &resolver,
        RefreshBounds::default(),
        Metrics::new(&mut Registry::default()),
        None,
    )
}

fn pick(state: &ClusterState, key: &str) -> SocketAddr {
    let ctx = PickContext::new(7).key_hash(Some(crate::hash::key_hash(key.as_bytes())));
    let p = state
        .balancer
        .as_ref()
        .expect("a balancer")
        .pick(&ctx)
        .unwrap();
    state.endpoints[p.endpoint].addr
}

async fn wait_until(cluster: &Cluster, what: &str, ok: impl Fn(&ClusterState) -> bool) {
    for _ in 0..200 {
        if ok(&cluster.state()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_static_cluster_serves_at_once() {
    let cluster = start(spec(5, None));
    let state = cluster.state();
    assert_eq!(state.endpoints.len(), 5);
    assert_eq!(state.routable(), 5);
    assert_eq!(
        pick(&state, "ricky"),
        pick(&cluster.state(), "ricky"),
        "stable"
    );
}

#[tokio::test]
async fn a_trip_ejects_only_that_endpoint_and_it_returns() {
    let outlier = OutlierPolicy {
        consecutive_5xx: Some(1),
        base_ejection_time: Duration::from_millis(300),
        max_ejection_percent: 100,
        ..OutlierPolicy::default()
    };
    let cluster = start(spec(5, Some(outlier)));
    let before = cluster.state();
    let users: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    let home: Vec<SocketAddr> = users.iter().map(|u| pick(&before, u)).collect();
    let victim = before
        .endpoints
        .iter()
        .position(|e| e.addr == home[0])
        .unwrap();

    cluster.report_trip(&before, victim, gateway_trip());
    wait_until(&cluster, "the ejection", |s| s.routable() == 4).await;
    let during = cluster.state();
    assert!(during.ejected[victim]);
    for (user, was) in users.iter().zip(&home) {
        let now = pick(&during, user);
        assert_ne!(now, home[0], "nobody is sent to the ejected endpoint");
        if *was != home[0] {
            assert_eq!(now, *was, "{user} moved although its endpoint is healthy");
        }
    }

    wait_until(&cluster, "the return", |s| s.routable() == 5).await;
    let after = cluster.state();
    for (user, was) in users.iter().zip(&home) {
        assert_eq!(pick(&after, user), *was, "{user} is home again");
    }
}

#[tokio::test(start_paused = true)]
async fn trips_without_outlier_detection_change_nothing() {
    let cluster = start(spec(3, None));
    let state = cluster.state();
    for _ in 0..10 {
        cluster.report_trip(&state, 0, gateway_trip());
    }
    // The clock is paused: it moves on only once every task is idle (a blocking build in
    // progress holds it), so when this returns the control task has handled every trip.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        Arc::ptr_eq(&state, &cluster.state()),
        "no new state published"
    );
    assert_eq!(cluster.state().routable(), 3);
}

#[test]
fn ejected_endpoints_weigh_zero_but_keep_their_index() {
    let endpoints: Vec<_> = (1..=3)
        .map(|i| Arc::new(EndpointState::new(addr(i), 1)))
        .collect();
    let state = build_state(&endpoints, Policy::RoundRobin, |a| *a != addr(2));
    assert_eq!(state.endpoints.len(), 3);
    assert_eq!(state.ejected, [false, true, false]);
    assert_eq!(state.routable(), 2);
    let none = build_state(&endpoints, Policy::RoundRobin, |_| false);
    assert!(none.balancer.is_none());
}

#[tokio::test]
async fn a_new_table_is_built_off_the_event_loop_while_the_old_one_serves() {
    let outlier = OutlierPolicy {
        consecutive_5xx: Some(1),
        base_ejection_time: Duration::from_secs(3600),
        max_ejection_percent: 100,
        ..OutlierPolicy::default()
    };
    // A table that takes a while to fill (two million slots).
    let spec = ClusterSpec {
        policy: Policy::Maglev(TableSize::new(2_000_003).unwrap()),
        ..spec(50, Some(outlier))
    };
    let metrics = Metrics::new(&mut Registry::default());
    let resolver = DnsResolver::with_name_server("127.0.0.1:9".parse().unwrap());
    let cluster = Cluster::start(
        spec,
        &resolver,
        RefreshBounds::default(),
        metrics.clone(),
        None,
    );
    let before = cluster.state();
    cluster.report_trip(&before, 0, gateway_trip());
    // The control task counts the ejection, then builds the table without it. This test's
    // task shares the control task's only thread: it runs meanwhile only if the build does not
    // hold that thread.
    let ejections = || {
        metrics
            .ejections
            .get(&cluster.labels)
            .map_or(0, |counter| counter.get())
    };
    while ejections() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        cluster.state().routable(),
        50,
        "the old table serves while the new one is built"
    );
    for _ in 0..3000 {
        if cluster.state().routable() == 49 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the new table was never published");
}

fn gateway_trip() -> crate::health::Trip {
    crate::health::Trip::ConsecutiveGateway
}

#[tokio::test]
async fn a_successor_tells_what_it_changed_only_once_published_and_keeps_the_stats() {
    let resolver = DnsResolver::with_name_server("127.0.0.1:9".parse().unwrap());
    let metrics = Metrics::new(&mut Registry::default());
    let start = |spec, predecessor| {
        Cluster::start(
            spec,
            &resolver,
            RefreshBounds::default(),
            metrics.clone(),
            predecessor,
        )
    };
    let first = start(spec(5, None), None);
    first.published();
    let kinds = || -> Vec<String> {
        metrics
            .events
            .history()
            .iter()
            .map(|e| format!("{:?} {}", e.kind, e.text))
            .collect()
    };
    assert_eq!(kinds().len(), 1, "{:?}", kinds());
    first.state().endpoints[0]
        .stats
        .answered(&http::HeaderMap::new(), None);

    // A reload drops the fifth endpoint: a new cluster of that name, built from the first.
    let second = start(spec(4, None), Some(&first));
    assert_eq!(
        kinds().len(),
        1,
        "nothing told before it serves: {:?}",
        kinds()
    );
    second.published();
    let told = kinds();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].starts_with("Removed 127.0.0.5:8080 removed"),
        "{told:?}"
    );
    let moved = metrics.events.history()[1].moved.unwrap();
    assert!((0.15..0.25).contains(&moved), "{moved}");
    // The kept endpoints are the same states: their counts go on.
    assert_eq!(second.state().endpoints[0].stats.sample().responses, 1);
    assert!(Arc::ptr_eq(
        &first.state().endpoints[0],
        &second.state().endpoints[0]
    ));
    // Where keys went before: the first cluster's table.
    let before = second.previous().expect("the table changed");
    assert_eq!(before.state.endpoints.len(), 5);

    // Built for a reload that is then rejected: never published, never told.
    let _rejected = start(spec(3, None), Some(&second));
    assert_eq!(kinds().len(), 2, "{:?}", kinds());
}
