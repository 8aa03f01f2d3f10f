//! What the request path tells an operator: one access log line per request with nginx's and
//! Envoy's fields, and a span per request that ties every event of it to its request id,
//! route, cluster, endpoint and attempt.
//!
//! One process-wide subscriber captures what the gateway's worker threads log; each test finds
//! its own lines by the request id it sent.

#[path = "support/stack.rs"]
mod stack;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stack::{BY_USER, RunningGateway, backends, static_config};

/// Everything logged in this process, as text lines.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("access=info,gateway=debug")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (up to 10 s) for a logged line holding every one of `needles`, and returns it.
async fn line_with(needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|n| line.contains(n)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// GET /ping with this request id and, when given, this user; returns the status.
async fn get(addr: SocketAddr, id: &str, user: Option<&str>) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req =
        http::Request::get(format!("http://{addr}/ping?user=secret")).header("x-request-id", id);
    if let Some(user) = user {
        req = req.header("x-user", user);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_line_per_request_with_nginx_and_envoy_fields() {
    captured();
    let backends = backends(1, Duration::ZERO).await;
    let upstream = backends[0].addr.to_string();
    let gw = RunningGateway::start_with(&static_config(&[backends[0].addr], BY_USER), None, |o| {
        o.proxy.access_log = true;
    })
    .await;

    assert_eq!(get(gw.addr, "access-1", Some("ricky")).await, 200);
    let line = line_with(&["access", "access-1"]).await;
    for field in [
        "method=GET",
        "path=/ping",
        "protocol=HTTP/1.1",
        "status=200",
        "completed=true",
        "attempts=1",
        "hash_key=\"present\"",
        "route=\"default/sticky-svc/0\"",
        "duration_ms=",
        "upstream_ms=",
        "client=127.0.0.1:",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
    assert!(line.contains(&format!("upstream=\"{upstream}\"")), "{line}");
    assert!(
        !line.contains("bytes=0 "),
        "the body's bytes are counted: {line}"
    );
    assert!(
        !line.contains("secret"),
        "the query string is not logged: {line}"
    );

    // No key: said so (sticky-svc itself refuses a call without a user).
    assert_eq!(get(gw.addr, "access-2", None).await, 400);
    let line = line_with(&["access", "access-2"]).await;
    assert!(
        line.contains("hash_key=\"missing\"") && line.contains("status=400"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_there_is_no_access_log() {
    captured();
    let backends = backends(1, Duration::ZERO).await;
    let gw = RunningGateway::start(&static_config(&[backends[0].addr], BY_USER), None).await;
    assert_eq!(get(gw.addr, "quiet-1", Some("ricky")).await, 200);
    // The request's own span shows it ran (debug is on here); the access log said nothing.
    assert_eq!(get(gw.addr, "quiet-2", Some("ricky")).await, 200);
    let text = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
    assert!(
        !text
            .lines()
            .any(|l| l.contains(" access:") && l.contains("quiet-")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_request_carries_its_span() {
    captured();
    // Nothing listens on this endpoint: each attempt fails to connect and says so at debug.
    // The discard port: nothing listens there (a port freed by a listener of this test could be
    // taken by another test's server meanwhile).
    let dead_addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let gw = RunningGateway::start(&static_config(&[dead_addr], BY_USER), None).await;
    assert_eq!(get(gw.addr, "span-1", Some("ricky")).await, 503);
    let line = line_with(&["attempt failed", "span-1"]).await;
    for field in [
        "request{",
        "route=\"default/sticky-svc/0\"",
        "cluster=\"outbound|8080||sticky-svc.default.svc.cluster.local\"",
        &format!("endpoint=\"{dead_addr}\""),
        "attempt=0",
        "connect failure",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
}
