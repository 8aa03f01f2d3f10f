//! The control path seen from outside: when a reload publishes (a new DNS cluster only once it
//! has endpoints), what it keeps (a cluster whose hash key alone changed), where it builds
//! (never on the thread that accepts), and which metric series it lets go (endpoints that
//! left). Config reads that two passes must agree on are tested in `reload.rs`.

#[path = "support/dns.rs"]
mod dns;
#[path = "support/gated_dns.rs"]
mod gated_dns;
#[path = "support/stack.rs"]
mod stack;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gated_dns::GatedDns;
use gateway::control::Gateway;
use stack::{Answer, BY_USER, Backend, Http, RunningGateway, routing, static_config, users};
use tokio::sync::oneshot;

/// Polls `check` every 10 ms until it gives `Some`; panics naming `what` after `within`.
async fn until<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const FRESH: &str = "fresh.default.svc.cluster.local";

/// The article's routing, to `host` on `port`, with the hash key `header`.
fn routed(host: &str, port: u16, header: &str) -> String {
    routing(&BY_USER.replace("x-user", header))
        .replace("sticky-svc.default.svc.cluster.local", host)
        .replace("number: 8080", &format!("number: {port}"))
}

/// A backend on `ip`, on a port of its own.
async fn backend_on(name: &str, ip: [u8; 4]) -> Backend {
    let addr = SocketAddr::from((ip, 0));
    Backend::start(name, addr, Duration::ZERO).await
}

async fn admin_page(http: &Http, admin: SocketAddr, path: &str) -> String {
    http.get(admin, path, None).await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_dns_cluster_keeps_the_old_config_until_its_first_answer() {
    let old = backend_on("old", [127, 0, 0, 1]).await;
    let new = backend_on("new", [127, 0, 0, 2]).await;
    let dns = GatedDns::start(
        "fresh.default.svc.cluster.local.",
        vec![[127, 0, 0, 2].into()],
    )
    .await;
    let gw = RunningGateway::start(&static_config(&[old.addr], BY_USER), Some(dns.addr)).await;
    let http = Http::new();
    assert_eq!(
        http.ping(gw.addr, "ricky").await.host.as_deref(),
        Some("old")
    );

    gw.write_config(&routed(FRESH, new.addr.port(), "x-user"));
    until(
        "the new cluster's first DNS query",
        Duration::from_secs(10),
        async || (dns.queries() > 0).then_some(()),
    )
    .await;
    // The lookup waits behind the gate: the new config must not be serving yet.
    for i in 0..20 {
        let answer = http.ping(gw.addr, &format!("user-{i}")).await;
        assert_eq!(
            (answer.status, answer.host.as_deref()),
            (200, Some("old")),
            "{answer:?}"
        );
    }
    dns.open();
    let mut seen: Vec<Answer> = Vec::new();
    until(
        "the new config to serve",
        Duration::from_secs(10),
        async || {
            let answer = http.ping(gw.addr, "ricky").await;
            seen.push(answer.clone());
            (answer.host.as_deref() == Some("new")).then_some(())
        },
    )
    .await;
    assert!(seen.iter().all(|a| a.status == 200), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_a_dns_cluster_serves_from_its_first_request() {
    let new = backend_on("new", [127, 0, 0, 2]).await;
    let dns = GatedDns::start(
        "fresh.default.svc.cluster.local.",
        vec![[127, 0, 0, 2].into()],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = routed(FRESH, new.addr.port(), "x-user");
    std::fs::write(dir.path().join("istio.yaml"), yaml).unwrap();
    let bind = tokio::spawn(Gateway::bind(stack::options(dir.path(), Some(dns.addr))));
    until("the first DNS query", Duration::from_secs(10), async || {
        (dns.queries() > 0).then_some(())
    })
    .await;
    assert!(
        !bind.is_finished(),
        "the gateway waits for the first answer"
    );
    dns.open();
    let gateway = bind.await.unwrap().expect("the gateway starts");
    let addr = gateway.listen_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve(async move {
        let _ = stopped.await;
    }));
    let answer = Http::new().ping(addr, "ricky").await;
    assert_eq!((answer.status, answer.host.as_deref()), (200, Some("new")));
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// `gateway_table_rebuilds_total` of the article's cluster, from `/metrics`.
fn table_rebuilds(metrics: &str) -> Option<u64> {
    let series = "gateway_table_rebuilds_total{cluster=\"outbound|8080||sticky-svc.default.svc.cluster.local\"} ";
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|n| n.parse().ok())
}

/// Strings in an admin page that only Rust's debug formatting writes.
const DEBUG_MARKERS: [&str; 9] = [
    "(\"",
    "{ ",
    "Some(",
    "None",
    "TableSize(",
    "RingSize",
    "Header(",
    "Static(",
    "Duration",
];

/// Every string (values and keys) anywhere in `value`, with its JSON path.
fn strings<'a>(value: &'a serde_json::Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::String(s) => out.push((path, s)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                out.push((format!("{path} (key)"), key));
                strings(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_clusters_are_structured_json_all_the_way_down() {
    let backends = stack::backends(2, Duration::ZERO).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let lb = format!(
        "{BY_USER}\n        maglev: {{tableSize: 65537}}\n    \
         connectionPool: {{tcp: {{connectTimeout: 1.5s}}}}\n    \
         outlierDetection: {{consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 100ms}}"
    );
    let yaml = static_config(&addrs, &lb).replace(
        "  http:\n  - route:",
        "  http:\n  - match:\n    - uri: {prefix: /}\n      headers: {x-canary: {regex: \"on|yes\"}}\n    \
         - uri: {exact: /}\n    timeout: 5s\n    \
         retries: {attempts: 2, perTryTimeout: 100ms}\n    route:",
    );
    let gw = RunningGateway::start(&yaml, None).await;
    let http = Http::new();
    let config: serde_json::Value =
        serde_json::from_str(&admin_page(&http, gw.admin, "/config").await).expect("JSON");
    let clusters: serde_json::Value =
        serde_json::from_str(&admin_page(&http, gw.admin, "/clusters").await).expect("JSON");

    let cluster = &config["clusters"][0];
    assert_eq!(
        cluster["hashKey"],
        serde_json::json!({"httpHeaderName": "x-user"})
    );
    let maglev = serde_json::json!({"consistentHash": {"maglev": {"tableSize": 65537}}});
    assert_eq!(cluster["policy"], maglev, "{cluster:#}");
    let mut sorted = addrs.clone();
    sorted.sort();
    let endpoints: Vec<serde_json::Value> = sorted
        .iter()
        .map(|a| serde_json::json!({"address": a.to_string(), "weight": 1}))
        .collect();
    assert_eq!(
        cluster["source"],
        serde_json::json!({ "static": endpoints })
    );
    assert_eq!(cluster["connectTimeout"], "1.5s");
    let outlier = &cluster["outlierDetection"];
    assert_eq!(outlier["consecutive5xxErrors"], 3, "{outlier:#}");
    assert_eq!(outlier["interval"], "5s", "{outlier:#}");
    assert_eq!(outlier["baseEjectionTime"], "100ms", "{outlier:#}");

    let route = &config["virtualServices"][0]["http"][0];
    assert_eq!(route["timeout"], "5s", "{route:#}");
    assert_eq!(route["retries"]["perTryTimeout"], "100ms", "{route:#}");
    assert_eq!(
        route["match"],
        serde_json::json!([
            {"uri": {"prefix": "/"}, "headers": {"x-canary": {"regex": "on|yes"}}},
            {"uri": {"exact": "/"}},
        ]),
        "{route:#}"
    );

    let listed = &clusters["clusters"][0];
    assert_eq!(listed["policy"], maglev, "{listed:#}");
    assert_eq!(listed["routable"], 2, "{listed:#}");

    for (page, document) in [("/config", &config), ("/clusters", &clusters)] {
        let mut found = Vec::new();
        strings(document, String::new(), &mut found);
        for (path, s) in found {
            for marker in DEBUG_MARKERS {
                assert!(
                    !s.contains(marker),
                    "{page}{path} = {s:?} looks like debug formatting ({marker:?})"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hash_key_alone_keeps_the_running_cluster() {
    let backends = stack::backends(3, Duration::ZERO).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let gw = RunningGateway::start(&static_config(&addrs, BY_USER), None).await;
    let http = Http::new();
    assert_eq!(http.ping(gw.addr, "ricky").await.status, 200);
    let metrics = admin_page(&http, gw.admin, "/metrics").await;
    assert_eq!(table_rebuilds(&metrics), Some(1), "{metrics}");

    gw.write_config(&static_config(
        &addrs,
        &BY_USER.replace("x-user", "x-session"),
    ));
    until("the new hash key", Duration::from_secs(10), async || {
        let config = admin_page(&http, gw.admin, "/config").await;
        config
            .contains(r#""httpHeaderName": "x-session""#)
            .then_some(())
    })
    .await;
    let metrics = admin_page(&http, gw.admin, "/metrics").await;
    assert_eq!(
        table_rebuilds(&metrics),
        Some(1),
        "the cluster was not started again: {metrics}"
    );
}

/// A STATIC cluster of 50 endpoints with a Maglev table of ~5 million slots: a build that
/// takes a while.
fn big_cluster() -> String {
    let endpoints: String = (1..=50)
        .map(|i| format!("  - address: 10.1.0.{i}\n"))
        .collect();
    format!(
        r#"apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: big}}
spec:
  hosts: [big.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {{name: big}}
spec:
  host: big.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        maglev: {{tableSize: 4999999}}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: big}}
spec:
  hosts: ['*']
  http:
  - route:
    - destination: {{host: big.local}}
"#
    )
}

// One thread for the test, the gateway's control path and its admin listener: a reload that
// built its snapshot on this thread would keep the admin listener from answering until done.
#[tokio::test]
async fn a_reload_builds_its_tables_off_the_thread_that_accepts() {
    let gw = RunningGateway::start(
        &static_config(&["127.0.0.1:9".parse().unwrap()], BY_USER),
        None,
    )
    .await;
    let http = Http::new();
    gw.write_config(&big_cluster());
    let cluster = "{cluster=\"outbound|80||big.local\"}";
    // Its endpoints are counted just before its table is built.
    let metrics = until(
        "the big cluster's build",
        Duration::from_secs(20),
        async || {
            let metrics = admin_page(&http, gw.admin, "/metrics").await;
            metrics
                .contains(&format!("gateway_endpoints{cluster} 50"))
                .then_some(metrics)
        },
    )
    .await;
    assert!(
        !metrics.contains(&format!("gateway_table_rebuilds_total{cluster}")),
        "the admin listener answers while the table is built: {metrics}"
    );
    until(
        "the big cluster to serve",
        Duration::from_secs(60),
        async || {
            let metrics = admin_page(&http, gw.admin, "/metrics").await;
            metrics
                .contains(&format!("gateway_table_rebuilds_total{cluster} 1"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_of_an_endpoint_that_left_are_removed_and_its_address_counts_again() {
    const NAME: &str = "sticky-svc.default.svc.cluster.local.";
    let first = backend_on("svc-1", [127, 0, 0, 1]).await;
    let port = first.addr.port();
    let _second = Backend::start(
        "svc-2",
        SocketAddr::from(([127, 0, 0, 2], port)),
        Duration::ZERO,
    )
    .await;
    let records: dns::Records = Arc::new(Mutex::new(dns::loopback(2)));
    let server = dns::dns_server(NAME, records.clone()).await;
    let yaml = routed("sticky-svc.default.svc.cluster.local", port, "x-user");
    let gw = RunningGateway::start(&yaml, Some(server)).await;
    let http = Http::new();
    let leaving = format!("endpoint=\"127.0.0.2:{port}\"");
    let counted = async |http: &Http| {
        for user in users(50) {
            assert_eq!(http.ping(gw.addr, &user).await.status, 200);
        }
        admin_page(http, gw.admin, "/metrics").await
    };
    until("both endpoints", Duration::from_secs(10), async || {
        let clusters = admin_page(&http, gw.admin, "/clusters").await;
        clusters.contains("\"routable\": 2").then_some(())
    })
    .await;
    let metrics = counted(&http).await;
    assert!(metrics.contains(&leaving), "{metrics}");

    *records.lock().unwrap() = dns::loopback(1);
    until(
        "127.0.0.2's series to go",
        Duration::from_secs(10),
        async || {
            let metrics = admin_page(&http, gw.admin, "/metrics").await;
            (!metrics.contains(&leaving)).then_some(())
        },
    )
    .await;
    // The others stay.
    let metrics = admin_page(&http, gw.admin, "/metrics").await;
    assert!(
        metrics.contains(&format!("endpoint=\"127.0.0.1:{port}\"")),
        "{metrics}"
    );

    // Back at the same address: a new endpoint, counted from zero.
    *records.lock().unwrap() = dns::loopback(2);
    until(
        "127.0.0.2 to serve again",
        Duration::from_secs(10),
        async || {
            let metrics = counted(&http).await;
            metrics
                .lines()
                .any(|line| line.contains(&leaving) && !line.ends_with(" 0"))
                .then_some(())
        },
    )
    .await;
}
