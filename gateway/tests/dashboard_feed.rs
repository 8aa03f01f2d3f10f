//! The dashboard's feed without a browser: `/state` says which replica holds which users and
//! their cold and warm calls; `/events` streams samples and the timeline (replicas removed with
//! the share of the table that moved, ejections with their reason, rejected reloads with the
//! file:line error); `/lookup` says where a key went before the last change; the number of
//! open streams is capped; shutdown ends the streams instead of waiting on them.

#[path = "support/stack.rs"]
mod stack;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stack::{BY_USER, Http, RunningGateway, backends, ping_all, static_config, users, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One open `/events` stream, read as raw bytes (each message is one chunk).
struct Stream {
    socket: TcpStream,
    seen: String,
    /// Bytes of `seen` already taken as messages.
    taken: usize,
}

impl Stream {
    async fn open(admin: SocketAddr) -> (u16, Self) {
        let mut socket = TcpStream::connect(admin).await.unwrap();
        socket
            .write_all(b"GET /events HTTP/1.1\r\nhost: admin\r\n\r\n")
            .await
            .unwrap();
        let mut stream = Self {
            socket,
            seen: String::new(),
            taken: 0,
        };
        while !stream.seen.contains("\r\n\r\n") {
            assert!(
                stream.read().await,
                "closed before the head: {}",
                stream.seen
            );
        }
        let status = stream.seen[9..12].parse().unwrap();
        stream.taken = stream.seen.find("\r\n\r\n").unwrap() + 4;
        (status, stream)
    }

    /// Reads once; false at the end of the stream.
    async fn read(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut buf))
            .await
            .expect("the stream sends within 10 s (a sample a second)")
            .unwrap_or(0);
        self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        n > 0
    }

    /// The next message (name, JSON data).
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            let rest = &self.seen[self.taken..];
            if let Some(start) = rest.find("event: ")
                && let Some(len) = rest[start..].find("\n\n")
            {
                let message = &rest[start..start + len];
                self.taken += start + len + 2;
                let (name, data) = message.split_once("\ndata: ").expect("event then data");
                let name = name.trim_start_matches("event: ").to_owned();
                return Some((name, serde_json::from_str(data).expect("data is JSON")));
            }
            if !self.read().await {
                return None;
            }
        }
    }

    /// Skips messages until `pick` takes one; panics after 20 s naming what was seen.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&str, &Value) -> Option<T>) -> T {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = Vec::new();
        while tokio::time::Instant::now() < give_up {
            let Some((name, data)) = self.next().await else {
                panic!("the stream ended while waiting for {what}");
            };
            if let Some(found) = pick(&name, &data) {
                return found;
            }
            last.push(format!(
                "{name}: {}",
                data.to_string().chars().take(200).collect::<String>()
            ));
        }
        panic!(
            "no {what} within 20 s; last: {:?}",
            &last[last.len().saturating_sub(5)..]
        );
    }
}

async fn state(http: &Http, admin: SocketAddr) -> Value {
    serde_json::from_str(&http.get(admin, "/state", None).await.body).unwrap()
}

fn endpoints(state: &Value) -> &Vec<Value> {
    state["clusters"][0]["endpoints"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_shows_each_replica_its_name_share_users_and_cold_and_warm_calls() {
    let replicas = backends(5, Duration::from_millis(5)).await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|b| b.addr).collect();
    let gateway = RunningGateway::start(&static_config(&addrs, BY_USER), None).await;
    let http = Http::new();
    let people = users(300);
    let first = ping_all(&http, gateway.addr, &people, 16).await;
    ping_all(&http, gateway.addr, &people, 16).await;
    // Each user's replica, from its answers.
    let mut per_replica: HashMap<String, usize> = HashMap::new();
    for answer in first.values() {
        *per_replica.entry(answer.host.clone().unwrap()).or_default() += 1;
    }

    // The sampler reads once a second: wait for a sample taken after the traffic.
    let state = wait_for(
        "a sample with every call",
        Duration::from_secs(10),
        async || {
            let state = state(&http, gateway.admin).await;
            let calls: u64 = endpoints(&state)
                .iter()
                .map(|e| e["responses"].as_u64().unwrap())
                .sum();
            if calls == 600 { Ok(state) } else { Err(calls) }
        },
    )
    .await;
    let list = endpoints(&state);
    assert_eq!(list.len(), 5);
    assert_eq!(state["clusters"][0]["hashKey"]["httpHeaderName"], "x-user");
    let mut shares = 0.0;
    for e in list {
        let name = e["name"].as_str().expect("the name x-served-by gave");
        let users = per_replica[name] as u64;
        // One cold call per user, then one warm: counted from x-cache.
        assert_eq!(
            (e["cold"].as_u64(), e["warm"].as_u64()),
            (Some(users), Some(users)),
            "{e}"
        );
        let estimate = e["users"].as_u64().unwrap();
        assert!(
            estimate.abs_diff(users) <= users / 10 + 2,
            "{estimate} users estimated for {users}: {e}"
        );
        assert_eq!(e["health"], "healthy");
        shares += e["share"].as_f64().unwrap();
    }
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");

    // The same counts in /metrics, per endpoint.
    let metrics = http.get(gateway.admin, "/metrics", None).await.body;
    let misses: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gateway_upstream_cache_total{") && l.contains("result=\"miss\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(misses, 300, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_tells_a_removal_with_the_table_moved_and_lookup_remembers_before() {
    let replicas = backends(5, Duration::from_millis(1)).await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|b| b.addr).collect();
    let gateway = RunningGateway::start(&static_config(&addrs, BY_USER), None).await;
    let http = Http::new();
    let (status, mut stream) = Stream::open(gateway.admin).await;
    assert_eq!(status, 200);
    let (name, history) = stream.next().await.unwrap();
    assert_eq!(name, "history");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "added"),
        "the start is in the timeline: {history}"
    );
    let (name, first) = stream.next().await.unwrap();
    assert_eq!((name.as_str(), endpoints(&first).len()), ("state", 5));

    // Where each user goes now, then drop the last replica.
    let people = users(200);
    let before = ping_all(&http, gateway.addr, &people, 16).await;
    gateway.write_config(&static_config(&addrs[..4], BY_USER));
    let removed = stream
        .until("a `removed` event", |name, data| {
            (name == "event" && data["kind"] == "removed").then(|| data.clone())
        })
        .await;
    let gone = addrs[4].to_string();
    assert!(
        removed["text"].as_str().unwrap().contains(&gone),
        "{removed}"
    );
    // Maglev moves about the departed replica's share: a fifth.
    let moved = removed["moved"].as_f64().unwrap();
    assert!((0.15..0.25).contains(&moved), "moved {moved}");
    let metrics = http.get(gateway.admin, "/metrics", None).await.body;
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_table_moved_share{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no gateway_table_moved_share: {metrics}"));
    assert!((gauge - moved).abs() < 1e-9, "gauge {gauge}, event {moved}");
    stream
        .until("a sample with 4 replicas", |name, data| {
            (name == "state" && endpoints(data).len() == 4).then_some(())
        })
        .await;

    // A user of the departed replica: now elsewhere, before on it.
    let gone_name = replicas[4].name.clone();
    let (user, _) = before
        .iter()
        .find(|(_, a)| a.host.as_deref() == Some(&gone_name))
        .expect("some user was on the last replica");
    let lookup: Value = serde_json::from_str(
        &http
            .get(
                gateway.admin,
                &format!("/lookup?cluster=sticky-svc.default.svc.cluster.local&key={user}"),
                None,
            )
            .await
            .body,
    )
    .unwrap();
    assert_eq!(lookup["before"]["endpoint"], gone.as_str(), "{lookup}");
    assert_ne!(lookup["endpoint"], gone.as_str(), "{lookup}");

    // A rejected reload is on the timeline with where the error is.
    gateway.write_config("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nspec: [\n");
    let rejected = stream
        .until("a `reload-rejected` event", |name, data| {
            (name == "event" && data["kind"] == "reload-rejected").then(|| data.clone())
        })
        .await;
    assert!(
        rejected["text"].as_str().unwrap().contains("istio.yaml:"),
        "{rejected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_shows_its_reason_and_time_left() {
    let mut replicas = backends(3, Duration::from_millis(1)).await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|b| b.addr).collect();
    let lb = format!(
        "{BY_USER}\n    outlierDetection:\n      consecutiveGatewayErrors: 1\n      interval: 1s\n      baseEjectionTime: 60s\n      maxEjectionPercent: 100"
    );
    let gateway = RunningGateway::start(&static_config(&addrs, &lb), None).await;
    let http = Http::new();
    let (_, mut stream) = Stream::open(gateway.admin).await;
    replicas[0].stop().await;
    let victim = addrs[0].to_string();
    // Users until one lands on the stopped replica: a connect failure ejects it.
    for user in users(200) {
        http.ping(gateway.addr, &user).await;
        if gateway_ejected(&http, gateway.admin, &victim).await {
            break;
        }
    }
    let event = stream
        .until("an `ejected` event", |name, data| {
            (name == "event" && data["kind"] == "ejected").then(|| data.clone())
        })
        .await;
    assert!(event["text"].as_str().unwrap().contains(&victim), "{event}");
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains("consecutive gateway errors"),
        "{event}"
    );
    let row = wait_for(
        "the row says ejected",
        Duration::from_secs(10),
        async || {
            let state = state(&http, gateway.admin).await;
            let row = endpoints(&state)
                .iter()
                .find(|e| e["address"] == victim.as_str())
                .cloned()
                .unwrap();
            if row["health"] == "ejected" {
                Ok(row)
            } else {
                Err(row)
            }
        },
    )
    .await;
    assert_eq!(row["reason"], "consecutive gateway errors");
    let left = row["secondsLeft"].as_u64().unwrap();
    assert!((50..=60).contains(&left), "{row}");
}

async fn gateway_ejected(http: &Http, admin: SocketAddr, victim: &str) -> bool {
    let clusters: Value =
        serde_json::from_str(&http.get(admin, "/clusters", None).await.body).unwrap();
    clusters["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["address"] == victim && e["healthy"] == false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_and_shutdown_ends_them() {
    let replicas = backends(1, Duration::from_millis(1)).await;
    let addrs: Vec<SocketAddr> = replicas.iter().map(|b| b.addr).collect();
    let mut gateway = RunningGateway::start(&static_config(&addrs, BY_USER), None).await;
    let mut open = Vec::new();
    for _ in 0..gateway::admin::MAX_STREAMS {
        let (status, stream) = Stream::open(gateway.admin).await;
        assert_eq!(status, 200);
        open.push(stream);
    }
    let (status, refused) = Stream::open(gateway.admin).await;
    assert_eq!(status, 503, "{}", refused.seen);
    assert!(
        refused.seen.contains("dashboards are open already"),
        "{}",
        refused.seen
    );
    // The other admin pages still answer.
    let http = Http::new();
    assert_eq!(http.get(gateway.admin, "/readyz", None).await.status, 200);

    // A page closed gives its place back.
    drop(open.pop());
    wait_for(
        "a stream's place back",
        Duration::from_secs(10),
        async || {
            let (status, stream) = Stream::open(gateway.admin).await;
            if status == 200 {
                open.push(stream);
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;

    // Shutdown ends every stream at once rather than after the 5 s grace.
    let started = std::time::Instant::now();
    let stopped = gateway.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(4), async {
        for stream in &mut open {
            while stream.next().await.is_some() {}
        }
        stopped.await.unwrap();
    })
    .await;
    assert!(
        ended.is_ok(),
        "the streams were still open {:?} after shutdown began (grace: 5 s)",
        started.elapsed()
    );
}
