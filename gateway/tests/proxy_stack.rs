//! The gateway in front of real sticky-svc instances on loopback: stickiness, spread, failure,
//! agreement between replicas, reloads, drain, DNS discovery.

#[path = "support/dns.rs"]
mod dns;
#[path = "support/stack.rs"]
mod stack;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stack::{BY_USER, Backend, Http, RunningGateway, backends, ping_all, static_config, users};

const COST: Duration = Duration::from_millis(20);

fn addrs(backends: &[Backend]) -> Vec<SocketAddr> {
    backends.iter().map(|b| b.addr).collect()
}

/// Sends one request per user and returns user → host, asserting every answer is a 200.
async fn homes(http: &Http, gw: SocketAddr, users: &[String]) -> HashMap<String, String> {
    ping_all(http, gw, users, 64)
        .await
        .into_iter()
        .map(|(u, a)| {
            assert_eq!(a.status, 200, "{u}: {a:?}");
            (u, a.host.expect("x-served-by"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_stick_spread_and_pay_once() {
    let backends = backends(5, COST).await;
    let gw = RunningGateway::start(&static_config(&addrs(&backends), BY_USER), None).await;
    let http = Http::new();
    let users = users(1000);

    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for round in 0..10 {
        for (user, answer) in ping_all(&http, gw.addr, &users, 64).await {
            assert_eq!(answer.status, 200, "{user}: {answer:?}");
            let expected = if round == 0 { "miss" } else { "hit" };
            assert_eq!(
                answer.cache.as_deref(),
                Some(expected),
                "{user} round {round}"
            );
            seen.entry(user).or_default().insert(answer.host.unwrap());
        }
    }
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for (user, hosts) in &seen {
        assert_eq!(hosts.len(), 1, "{user} was served by {hosts:?}");
        *per_host
            .entry(hosts.iter().next().unwrap().clone())
            .or_default() += 1;
    }
    assert_eq!(per_host.len(), 5, "{per_host:?}");
    for (host, n) in &per_host {
        assert!(
            (160..=240).contains(n),
            "{host} has {n} users, not 200 ± 20%: {per_host:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_backend_under_load_fails_no_request_and_moves_only_its_users() {
    stop_a_backend_under_load("HTTP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_http2_to_the_backends() {
    stop_a_backend_under_load("HTTP2").await;
}

/// 8 clients loop over 200 users; one of 5 backends stops (drains) meanwhile. `protocol` is
/// the ServiceEntry port's, so HTTP2 has the gateway speak HTTP/2 to the backends.
async fn stop_a_backend_under_load(protocol: &str) {
    let mut backends = backends(5, COST).await;
    let yaml = static_config(&addrs(&backends), BY_USER)
        .replace("protocol: HTTP}", &format!("protocol: {protocol}}}"));
    let gw = RunningGateway::start(&yaml, None).await;
    let http = Http::new();
    let users = users(200);
    let before = homes(&http, gw.addr, &users).await;

    // Load: 8 clients looping over the users until told to stop, counting each user's answers.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let answered: Arc<Vec<AtomicUsize>> =
        Arc::new(users.iter().map(|_| AtomicUsize::new(0)).collect());
    let mut load = tokio::task::JoinSet::new();
    for c in 0..8 {
        let (http, users, stop, failures, sent, answered) = (
            http.clone(),
            users.clone(),
            stop.clone(),
            failures.clone(),
            sent.clone(),
            answered.clone(),
        );
        let addr = gw.addr;
        load.spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let answer = http.ping(addr, &users[i % users.len()]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                answered[i % users.len()].fetch_add(1, Ordering::Relaxed);
                if answer.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {answer:?}");
                }
                i += 8;
            }
        });
    }
    // The stop comes under load: every user has had an answer from it.
    wait_for_answers(
        &answered,
        &vec![0; users.len()],
        1,
        "the load to reach every user",
    )
    .await;
    let victim = backends[2].name.clone();
    backends[2].stop().await;
    // The load goes on until every user, the stopped backend's included, has been answered for
    // requests sent after the stop (a client's second answer from here on is to one of those).
    let at_stop = answer_counts(&answered);
    wait_for_answers(
        &answered,
        &at_stop,
        3,
        "3 more answers per user after the stop",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    assert!(sent.load(Ordering::Relaxed) > 200, "the load ran");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no client saw an error"
    );

    let after = homes(&http, gw.addr, &users).await;
    let mut moved = 0;
    for user in &users {
        if before[user] == victim {
            assert_ne!(after[user], victim);
            moved += 1;
        } else {
            assert_eq!(
                after[user], before[user],
                "{user} moved although its host is up"
            );
        }
    }
    assert!(
        (20..=60).contains(&moved),
        "about 1/5 of 200 users had the stopped host: {moved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_agree_on_every_key() {
    let backends = backends(5, Duration::ZERO).await;
    let mut reversed = addrs(&backends);
    let a = RunningGateway::start(&static_config(&reversed, BY_USER), None).await;
    reversed.reverse();
    let b = RunningGateway::start(&static_config(&reversed, BY_USER), None).await;
    let http = Http::new();
    let users = users(300);
    let from_a = homes(&http, a.addr, &users).await;
    let from_b = homes(&http, b.addr, &users).await;
    assert_eq!(
        from_a, from_b,
        "the endpoint order in the config does not matter"
    );
    // The admin lookup says the same before any request is made.
    let answer = http
        .get(
            a.admin,
            "/lookup?cluster=sticky-svc.default.svc.cluster.local&key=user-7",
            None,
        )
        .await;
    let port = backends
        .iter()
        .find(|be| be.name == from_a["user-7"])
        .unwrap()
        .addr
        .port();
    assert!(
        answer.body.contains(&format!("127.0.0.1:{port}")),
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_config_and_a_good_one_applies() {
    let backends = backends(3, Duration::ZERO).await;
    let good = static_config(&addrs(&backends), BY_USER);
    let gw = RunningGateway::start(&good, None).await;
    let http = Http::new();

    // Background load through both reloads: no request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s, addr) = (http.clone(), stop.clone(), gw.addr);
    let load = tokio::spawn(async move {
        let mut failures = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let a = h.ping(addr, "ricky").await;
            if a.status != 200 && a.status != 418 {
                failures.push(a);
            }
        }
        failures
    });

    gw.write_config(
        &good
            .replace("tableSize: 65537", "")
            .replace("httpHeaderName", "httpHeaderNme"),
    );
    let config = wait_for_body(&http, gw.admin, "/config", "httpHeaderNme").await;
    assert!(config.contains("last_error"), "{config}");
    assert_eq!(
        http.ping(gw.addr, "ricky").await.status,
        200,
        "the old config serves"
    );
    let metrics = http.get(gw.admin, "/metrics", None).await.body;
    assert!(
        metrics.contains("gateway_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );

    let teapot = good.replace(
        "  http:\n  - route:",
        "  http:\n  - match: [{uri: {prefix: /tea}}]\n    directResponse: {status: 418, body: {string: teapot}}\n  - route:",
    );
    gw.write_config(&teapot);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = http.get(gw.addr, "/tea", Some("ricky")).await;
        if a.status == 418 {
            assert_eq!(a.body, "teapot");
            break;
        }
        assert!(Instant::now() < deadline, "the good config never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}

/// How many answers each user has had.
fn answer_counts(answered: &[AtomicUsize]) -> Vec<usize> {
    answered.iter().map(|n| n.load(Ordering::Relaxed)).collect()
}

/// Waits until every user has had `more` answers on top of its count in `base`.
async fn wait_for_answers(answered: &[AtomicUsize], base: &[usize], more: usize, what: &str) {
    stack::wait_for(what, Duration::from_secs(30), async || {
        let behind = (answer_counts(answered).iter().zip(base))
            .filter(|(now, base)| **now < **base + more)
            .count();
        if behind == 0 {
            Ok(())
        } else {
            Err(format!("{behind} users short"))
        }
    })
    .await;
}

async fn wait_for_body(http: &Http, addr: SocketAddr, path: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = http.get(addr, path, None).await.body;
        if body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {needle:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let backends = backends(1, Duration::from_millis(600)).await;
    let mut gw = RunningGateway::start(&static_config(&addrs(&backends), BY_USER), None).await;
    let http = Http::new();
    let (h, addr) = (http.clone(), gw.addr);
    let cold = tokio::spawn(async move { h.ping(addr, "ricky").await });
    stack::wait_for(
        "the cold call to be in flight to the backend",
        Duration::from_secs(10),
        async || match in_flight(&http, gw.admin).await {
            0 => Err("none in flight"),
            _ => Ok(()),
        },
    )
    .await;
    let task = gw.shutdown();
    // The admin listener answers until the drain ends (the cold call, 600 ms): a 503 from it
    // is "not ready while draining".
    stack::wait_for(
        "not ready while draining: /readyz to answer 503",
        Duration::from_secs(10),
        async || match http.get(gw.admin, "/readyz", None).await.status {
            503 => Ok(()),
            status => Err(status),
        },
    )
    .await;
    let answer = cold.await.unwrap();
    assert_eq!(
        answer.status, 200,
        "the in-flight cold call finished: {answer:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stopped")
        .unwrap();
}

/// Requests in flight to the endpoints of every cluster, from the admin `/clusters`.
async fn in_flight(http: &Http, admin: SocketAddr) -> u64 {
    let body = http.get(admin, "/clusters", None).await.body;
    let clusters: serde_json::Value = serde_json::from_str(&body).expect("/clusters is JSON");
    clusters["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["endpoints"].as_array().into_iter().flatten())
        .map(|e| e["inFlight"].as_u64().expect("inFlight"))
        .sum()
}

const NAME: &str = "sticky-svc.default.svc.cluster.local.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_scale_zero_to_five_and_back() {
    // Five backends on 127.0.0.1..5, one port: DNS gives addresses, the route gives the port.
    let first = Backend::start("svc-1", "127.0.0.1:0".parse().unwrap(), COST).await;
    let port = first.addr.port();
    let mut backends = vec![first];
    for i in 2..=5u8 {
        let addr = SocketAddr::from(([127, 0, 0, i], port));
        backends.push(Backend::start(&format!("svc-{i}"), addr, COST).await);
    }
    let records: dns::Records = Arc::new(std::sync::Mutex::new(dns::loopback(0)));
    let server = dns::dns_server(NAME, records.clone()).await;
    let yaml = stack::routing(BY_USER).replace("number: 8080", &format!("number: {port}"));
    let gw = RunningGateway::start(&yaml, Some(server)).await;
    let http = Http::new();
    let users = users(300);

    let started = Instant::now();
    let none = http.ping(gw.addr, "ricky").await;
    assert_eq!(none.status, 503, "{none:?}");
    assert_eq!(none.body, "no healthy upstream\n");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "503 at once, not a hang"
    );

    *records.lock().unwrap() = dns::loopback(5);
    wait_for_hosts(&http, gw.addr, 5).await;
    let five = homes(&http, gw.addr, &users).await;
    assert_eq!(five.values().collect::<HashSet<_>>().len(), 5);

    *records.lock().unwrap() = dns::loopback(4);
    wait_for_hosts(&http, gw.addr, 4).await;
    let four = homes(&http, gw.addr, &users).await;
    let moved = users.iter().filter(|u| five[*u] != four[*u]).count();
    let on_fifth = five.values().filter(|h| *h == "svc-5").count();
    assert!(
        users
            .iter()
            .all(|u| five[u] != "svc-5" || four[u] != "svc-5")
    );
    // Maglev moves the removed replica's users and, by design, a few others (its fill order
    // changes): within 3% of all users of the ideal.
    assert!(
        moved >= on_fifth && moved <= on_fifth + users.len() * 3 / 100,
        "moved {moved}, ideal {on_fifth}"
    );

    *records.lock().unwrap() = dns::loopback(0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while http.ping(gw.addr, "ricky").await.status != 503 {
        assert!(Instant::now() < deadline, "scale to 0 never gave 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (within the DNS refresh bound, a few times over) until `n` hosts serve.
async fn wait_for_hosts(http: &Http, gw: SocketAddr, n: usize) {
    let probe = users(100);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answers = ping_all(http, gw, &probe, 32).await;
        let hosts: HashSet<_> = answers
            .values()
            .filter(|a| a.status == 200)
            .filter_map(|a| a.host.clone())
            .collect();
        if hosts.len() == n && answers.values().all(|a| a.status == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {n} hosts: {hosts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
