//! A sticky canary under load, through the real gateway: four replicas, `svc-0`/`svc-1` subset
//! v1 and `svc-2`/`svc-3` subset v2, a route splitting 90/10 on a DestinationRule hashing
//! `x-user`; once the users are placed, the weights become 80/20 (a live reload). Goose's
//! `rebalance` verdict judges the whole run: hash-only, at most 12% of users moved and none twice
//! (the ideal is 10%: the users whose bucket changed hands); with persistent sessions, none.

use std::net::SocketAddr;
use std::time::Duration;

use loadtest::{Scenario, Summary, run};

use crate::gateway_stack::{RunningGateway, canary_config, wait_for};
use crate::stack::{exclusive, replica, short_config};

/// The canary config, labelled for persistent sessions when `sessions`.
fn canary(addrs: &[SocketAddr], v1_weight: u32, sessions: bool) -> String {
    let labels = if sessions {
        "istio.io/persistent-session-header: x-session"
    } else {
        ""
    };
    canary_config(&addrs[..2], &addrs[2..], v1_weight, labels)
}

/// Proxied requests so far, from the gateway's `/metrics`.
async fn requests(admin: SocketAddr) -> u64 {
    let http = crate::gateway_stack::Http::new();
    let metrics = http.get(admin, "/metrics", None).await.body;
    metrics
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// 100 users for 6 s on a 90/10 split that becomes 80/20 once they have made 300 calls (every
/// user placed); returns the run's summary, judged with `max_moved`.
async fn weight_change_under_load(sessions: bool, max_moved: f64) -> Summary {
    let mut addrs = Vec::new();
    for i in 0..4 {
        addrs.push(replica(format!("svc-{i}"), crate::stack::COST).await.addr);
    }
    let gateway = RunningGateway::start(&canary(&addrs, 90, sessions), None).await;
    let mut config = short_config(
        &format!("http://{}", gateway.addr),
        Scenario::Rebalance,
        100,
        6,
    );
    config.thresholds.max_moved = Some(max_moved);
    let admin = gateway.admin;
    let change = async {
        wait_for(
            "300 calls: every user placed",
            Duration::from_secs(30),
            async || {
                let n = requests(admin).await;
                if n >= 300 { Ok(()) } else { Err(n) }
            },
        )
        .await;
        gateway.write_config(&canary(&addrs, 80, sessions));
        let http = crate::gateway_stack::Http::new();
        wait_for(
            "the 80/20 split served",
            Duration::from_secs(10),
            async || {
                let page = http.get(admin, "/config", None).await.body;
                if page.contains("\"weight\": 80") {
                    Ok(())
                } else {
                    Err(page)
                }
            },
        )
        .await;
    };
    let (summary, ()) = tokio::join!(run(&config), change);
    let summary = summary.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(verdict.passed(), "{summary}{verdict}");
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_weight_change_moves_only_the_users_whose_bucket_changed() {
    let _guard = exclusive().await;
    let summary = weight_change_under_load(false, 12.0).await;
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.users_moved_twice, 0, "each moved user moved once");
    assert!(
        summary.users_moved > 0,
        "the weight change moved someone: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_persistent_sessions_a_canary_weight_change_moves_nobody() {
    let _guard = exclusive().await;
    let summary = weight_change_under_load(true, 0.0).await;
    assert_eq!(
        (summary.errors, summary.users_moved, summary.lost_caches),
        (0, 0, 0)
    );
}
