//! The `sticky` scenario through the real gateway (in process, loopback): the article's
//! DestinationRule passes; the same stack with `ROUND_ROBIN` fails with a stickiness error.
//! This is the short load CI runs on every submission.

use std::net::SocketAddr;

use loadtest::{Scenario, Violation, run};

use crate::gateway_stack::{RunningGateway, static_config};
use crate::stack::{COST, exclusive, replica, short_config};

/// Starts 5 replicas and the gateway in front of them (the gateway tests' own stack: a STATIC
/// ServiceEntry, the article's VirtualService, a DestinationRule with this `loadBalancer`
/// body). Keep the returned gateway alive for the test; the replicas stop with its runtime.
async fn stack(load_balancer: &str) -> RunningGateway {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..5 {
        addrs.push(replica(format!("svc-{i}"), COST).await.addr);
    }
    RunningGateway::start(&static_config(&addrs, load_balancer), None).await
}

fn config(url: &str, users: usize, seconds: u64) -> loadtest::Config {
    short_config(url, Scenario::Sticky, users, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_through_the_gateway_stay_sticky() {
    let _guard = exclusive().await;
    let gateway = stack("      consistentHash: {httpHeaderName: x-user}").await;
    let config = config(&format!("http://{}", gateway.addr), 50, 10);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(verdict.passed(), "{summary}{verdict}");
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.cold.count, 50, "each user paid the cost once");
    assert_eq!(summary.users_per_host.len(), 5, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_robin_gateway_fails_the_stickiness_check() {
    let _guard = exclusive().await;
    let gateway = stack("      simple: ROUND_ROBIN").await;
    let config = config(&format!("http://{}", gateway.addr), 20, 3);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(!verdict.passed());
    assert!(
        verdict
            .violations
            .iter()
            .any(|v| matches!(v, Violation::Stickiness { .. })),
        "{verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_keep_a_round_robin_gateway_sticky() {
    let _guard = exclusive().await;
    // The same round robin, the host labelled for persistent sessions: every user's first call
    // is placed by round robin, and the session the goose user sends back holds it there.
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..5 {
        addrs.push(replica(format!("svc-{i}"), COST).await.addr);
    }
    let yaml = static_config(&addrs, "      simple: ROUND_ROBIN").replacen(
        "metadata: {name: sticky-svc}",
        "metadata: {name: sticky-svc, labels: {istio.io/persistent-session-header: x-session}}",
        1,
    );
    assert!(yaml.contains("persistent-session-header"), "{yaml}");
    let gateway = RunningGateway::start(&yaml, None).await;
    let config = config(&format!("http://{}", gateway.addr), 20, 3);
    let summary = run(&config).await.unwrap();
    let verdict = summary.verdict(&config.thresholds);
    eprint!("{summary}{verdict}");
    assert!(verdict.passed(), "{summary}{verdict}");
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.cold.count, 20, "each user paid the cost once");
}
