//! Sticky canaries through the real proxy: a weighted split whose destinations all hash on one
//! key sends each user to one destination (then one endpoint in it) by that key; without a
//! shared key, or without the key in the request, the split stays random per request.
//!
//! Four sticky-svc backends on loopback: `svc-0` and `svc-1` are subset `v1`, `svc-2` and
//! `svc-3` subset `v2`.

#[path = "support/stack.rs"]
mod stack;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stack::{Backend, Http, RunningGateway, backends, ping_all, users};

/// Both subsets hash on `x-user` (the rule's top-level policy).
const BY_USER: &str = "consistentHash: {httpHeaderName: x-user}";

/// The subset of the backend named `host`.
fn subset(host: &str) -> &'static str {
    match host {
        "svc-0" | "svc-1" => "v1",
        "svc-2" | "svc-3" => "v2",
        other => panic!("unknown backend {other}"),
    }
}

/// A STATIC ServiceEntry over `backends` (the first two labelled v1, the others v2), a
/// DestinationRule with `lb` for the whole host plus `v2_lb` for subset v2 when given, and a
/// VirtualService splitting `v1_weight` / `100 - v1_weight`.
fn split_config(backends: &[Backend], v1_weight: u32, lb: &str, v2_lb: Option<&str>) -> String {
    let mut endpoints = String::new();
    for (i, b) in backends.iter().enumerate() {
        let version = if i < 2 { "v1" } else { "v2" };
        endpoints.push_str(&format!(
            "  - {{address: {}, ports: {{http: {}}}, labels: {{version: {version}}}}}\n",
            b.addr.ip(),
            b.addr.port()
        ));
    }
    let v2_policy = v2_lb
        .map(|lb| format!(", trafficPolicy: {{loadBalancer: {{{lb}}}}}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sticky-svc}}
spec:
  hosts: [sticky-svc.default.svc.cluster.local]
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: sticky-svc}}
spec:
  hosts: ['*']
  http:
  - route:
    - destination: {{host: sticky-svc.default.svc.cluster.local, subset: v1, port: {{number: 8080}}}}
      weight: {v1_weight}
    - destination: {{host: sticky-svc.default.svc.cluster.local, subset: v2, port: {{number: 8080}}}}
      weight: {v2_weight}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: sticky-svc}}
spec:
  host: sticky-svc.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {{{lb}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}{v2_policy}}}
"#,
        v2_weight = 100 - v1_weight
    )
}

/// One `/ping` per user; user → backend, every answer a 200.
async fn homes(http: &Http, gw: SocketAddr, users: &[String]) -> HashMap<String, String> {
    ping_all(http, gw, users, 32)
        .await
        .into_iter()
        .map(|(u, a)| {
            assert_eq!(a.status, 200, "{u}: {a:?}");
            (u, a.host.expect("x-served-by"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stays_on_one_destination_of_a_sticky_split() {
    let backends = backends(4, Duration::ZERO).await;
    let gw = RunningGateway::start(&split_config(&backends, 50, BY_USER, None), None).await;
    let http = Http::new();

    // The same user, 50 times: one backend, so one destination.
    for user in ["ricky", "julian", "bubbles"] {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let a = http.ping(gw.addr, user).await;
            assert_eq!(a.status, 200, "{a:?}");
            seen.insert(a.host.unwrap());
        }
        assert_eq!(seen.len(), 1, "{user} was served by {seen:?}");
    }

    // Different users spread over both destinations, and over both endpoints of each: the
    // destination pick does not pin the endpoint pick inside it.
    let users = users(400);
    let first = homes(&http, gw.addr, &users).await;
    assert_eq!(
        homes(&http, gw.addr, &users).await,
        first,
        "every user again on the same backend"
    );
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    for host in first.values() {
        *per_backend.entry(host).or_default() += 1;
    }
    let v1: usize = per_backend
        .iter()
        .filter(|(h, _)| subset(h) == "v1")
        .map(|(_, n)| n)
        .sum();
    assert!(
        (140..=260).contains(&v1),
        "v1 has {v1} of 400: {per_backend:?}"
    );
    assert_eq!(per_backend.len(), 4, "{per_backend:?}");
    for (host, n) in &per_backend {
        assert!(*n >= 50, "{host} has {n} users: {per_backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_agree_and_a_weight_change_moves_only_the_users_whose_bucket_changed() {
    let backends = backends(4, Duration::ZERO).await;
    let ninety = split_config(&backends, 90, BY_USER, None);
    let a = RunningGateway::start(&ninety, None).await;
    let b = RunningGateway::start(&ninety, None).await;
    let http = Http::new();
    let users = users(1_000);

    let on_a = homes(&http, a.addr, &users).await;
    assert_eq!(
        homes(&http, b.addr, &users).await,
        on_a,
        "two gateways send every user to the same backend"
    );
    let canary = on_a.values().filter(|h| subset(h) == "v2").count();
    assert!(
        (70..=130).contains(&canary),
        "{canary} of 1000 on v2 at 90/10"
    );

    // 90/10 → 80/20 (a reload of gateway b): a user on v2 stays there, on the same backend;
    // a user on v1 stays on the same backend or moves to v2.
    b.write_config(&split_config(&backends, 80, BY_USER, None));
    stack::wait_for("the 80/20 split", Duration::from_secs(10), async || {
        let now = homes(&http, b.addr, &users).await;
        let on_v2 = now.values().filter(|h| subset(h) == "v2").count();
        if on_v2 > canary + 40 {
            Ok(())
        } else {
            Err(on_v2)
        }
    })
    .await;
    // Measured again, wholly after the reload.
    let on_b = homes(&http, b.addr, &users).await;
    let mut moved = 0;
    for user in &users {
        let (before, after) = (&on_a[user], &on_b[user]);
        if subset(before) == subset(after) {
            assert_eq!(
                before, after,
                "{user} changed backend inside its destination"
            );
        } else {
            assert_eq!(
                (subset(before), subset(after)),
                ("v1", "v2"),
                "{user}: only v1 → v2 moves"
            );
            moved += 1;
        }
    }
    eprintln!("90/10 -> 80/20 through the proxy moved {moved} of 1000 users");
    assert!((70..=130).contains(&moved), "{moved} of 1000 users moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_key_or_the_key_itself_the_split_stays_random() {
    let backends = backends(4, Duration::ZERO).await;
    let http = Http::new();

    // v2 hashes on a cookie, v1 on x-user: keys differ, so each request draws a destination.
    let cookie = "consistentHash: {httpCookie: {name: sticky, ttl: 0s}}";
    let yaml = split_config(&backends, 50, BY_USER, Some(cookie));
    let gw = RunningGateway::start(&yaml, None).await;
    let mut destinations = HashSet::new();
    for _ in 0..50 {
        let a = http.ping(gw.addr, "ricky").await;
        destinations.insert(subset(&a.host.unwrap()));
    }
    assert_eq!(
        destinations.len(),
        2,
        "random per request: {destinations:?}"
    );
    drop(gw);

    // A shared key, but requests without it: random, and counted per destination.
    let gw = RunningGateway::start(&split_config(&backends, 50, BY_USER, None), None).await;
    let mut destinations = HashSet::new();
    for _ in 0..40 {
        // sticky-svc answers 400 without x-user, but it answers: the host is in the header.
        let a = http.get(gw.addr, "/ping", None).await;
        assert_eq!(a.status, 400);
        destinations.insert(subset(&a.host.unwrap()));
    }
    assert_eq!(
        destinations.len(),
        2,
        "random per request: {destinations:?}"
    );
    let metrics = http.get(gw.admin, "/metrics", None).await.body;
    let missing: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gateway_hash_key_missing_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(missing, 40, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_cookie_picks_the_destination_and_keeps_it() {
    let backends = backends(4, Duration::ZERO).await;
    let lb = "consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}";
    let gw = RunningGateway::start(&split_config(&backends, 50, lb, None), None).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |cookie: Option<String>| {
        let mut req =
            http::Request::get(format!("http://{}/ping", gw.addr)).header("x-user", "ricky");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        client.request(req.body(Empty::new()).unwrap())
    };
    let mut destinations = HashSet::new();
    for _ in 0..30 {
        let first = get(None).await.unwrap();
        let set_cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set_cookie.contains("; Max-Age=60; Path=/; HttpOnly"),
            "{set_cookie}"
        );
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let home = first.headers()["x-served-by"].to_str().unwrap().to_owned();
        destinations.insert(subset(&home));
        for _ in 0..3 {
            let res = get(Some(cookie.clone())).await.unwrap();
            assert_eq!(
                res.headers()["x-served-by"],
                home.as_str(),
                "the cookie sticks"
            );
            assert!(!res.headers().contains_key("set-cookie"));
        }
    }
    // Fresh cookies spread over both destinations (all 30 on one: 2^-29).
    assert_eq!(destinations.len(), 2, "{destinations:?}");
}
