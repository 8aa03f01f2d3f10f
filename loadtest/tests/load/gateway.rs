//! The `sticky` scenario through the real gateway (in process, loopback): the article's
//! DestinationRule passes; the same stack with `ROUND_ROBIN` fails with a stickiness error.
//! This is the short load CI runs on every submission.

use std::path::PathBuf;
use std::time::Duration;

use gateway::config::LoadOptions;
use gateway::control::{Gateway, RunOptions};
use gateway::discovery::RefreshBounds;
use gateway::proxy::ProxySettings;
use gateway::proxy::listener::Limits;
use loadtest::{Scenario, Violation, run};

use crate::stack::{COST, exclusive, replica, scratch};

/// Starts 5 replicas and a gateway whose DestinationRule has this `loadBalancer` body;
/// returns the gateway's URL. Everything stops with the test's runtime.
async fn stack(load_balancer: &str, name: &str) -> String {
    let mut endpoints = String::new();
    for i in 0..5 {
        let upstream = replica(format!("svc-{i}"), COST).await;
        endpoints.push_str(&format!(
            "  - address: {}\n    ports: {{http: {}}}\n",
            upstream.addr.ip(),
            upstream.addr.port()
        ));
    }
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: sticky-svc}}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: sticky-svc}}
spec:
  hosts: ['*']
  http:
  - route:
    - destination: {{host: sticky-svc.default.svc.cluster.local, port: {{number: 8080}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: sticky-svc}}
spec:
  host: sticky-svc.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      {load_balancer}
"#
    );
    let dir: PathBuf = scratch(name);
    std::fs::write(dir.join("istio.yaml"), yaml).unwrap();
    let options = RunOptions {
        config: vec![dir],
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        load: LoadOptions::default(),
        gateway: None,
        dns_server: Some("127.0.0.1:9".parse().unwrap()),
        dns_refresh: RefreshBounds::default(),
        limits: Limits::default(),
        proxy: ProxySettings::default(),
        reload_poll: Duration::from_secs(5),
        active: None,
    };
    let gateway = Gateway::bind(options).await.expect("the gateway starts");
    let url = format!("http://{}", gateway.listen_addr());
    tokio::spawn(gateway.serve(std::future::pending()));
    url
}

fn config(url: &str, users: usize, seconds: u64) -> loadtest::Config {
    let mut config = loadtest::Config::new(url).unwrap();
    config.scenario = Scenario::Sticky;
    config.users = users;
    config.run_time = Duration::from_secs(seconds);
    config.hatch_rate = 200.0;
    config.first_call_cost = COST;
    config.pause = Duration::from_millis(50);
    // Routing is judged here, not speed (a debug build on shared cores).
    config.thresholds.max_warm_p99 = Duration::from_secs(2);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_through_the_gateway_stay_sticky() {
    let _guard = exclusive().await;
    let url = stack("consistentHash: {httpHeaderName: x-user}", "gateway-sticky").await;
    let config = config(&url, 50, 10);
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
    let url = stack("simple: ROUND_ROBIN", "gateway-round-robin").await;
    let config = config(&url, 20, 3);
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
