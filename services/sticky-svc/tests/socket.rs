//! The server over real sockets on 127.0.0.1: the real default cost, the 431, the drain, slow
//! and idle clients.
//!
//! Where a test must know the server got somewhere (a call in flight, the drain started), it
//! waits for that condition ([`until`]), never for a guessed delay.

#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use server::{Client, start, until};
use sticky_svc::serve::Drained;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn reported(body: &str) -> Duration {
    let text = body.trim_end().rsplit(" took ").next().unwrap();
    let split = text.find(|c: char| c.is_alphabetic()).unwrap();
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap();
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        other => panic!("unexpected unit {other} in {body}"),
    };
    Duration::from_secs_f64(number * scale)
}

#[tokio::test]
async fn the_default_first_call_really_costs_five_seconds() {
    let server = start(&[]).await;
    let mut client = Client::connect(server.addr).await;
    let started = Instant::now();
    let cold = client.get("/ping", Some("ricky")).await;
    let took = started.elapsed();
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(cold.headers["x-cache"], "miss");
    assert!(
        cold.body
            .starts_with("Call was processed by host socket-test for user ricky and it took 5.")
    );
    let cost = reported(&cold.body);
    assert!(
        cost >= Duration::from_secs(5) && cost < Duration::from_millis(5500),
        "{cost:?}"
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );

    let warm = client.get("/ping", Some("ricky")).await;
    assert_eq!(warm.headers["x-cache"], "hit");
    assert_eq!(warm.headers["x-served-by"], "socket-test");
    let cost = reported(&warm.body);
    assert!(
        cost < Duration::from_millis(1),
        "warm call took {cost:?}: {}",
        warm.body
    );
    let _ = server.stop.send(());
    assert_eq!(server.done.await.unwrap(), Drained { abandoned: 0 });
}

/// Sends raw bytes on a fresh connection and returns the status code of the answer.
async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let line = String::from_utf8_lossy(&answer);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    let server = start(&["--first-call-cost", "0s", "--max-header-bytes", "16384"]).await;
    let request = |pad: usize| {
        format!(
            "GET /ping HTTP/1.1\r\nHost: t\r\nx-user: ricky\r\nx-pad: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(pad)
        )
    };
    assert_eq!(
        raw_status(server.addr, request(8_000).as_bytes()).await,
        200
    );
    assert_eq!(
        raw_status(server.addr, request(40_000).as_bytes()).await,
        431
    );
    let many: String = (0..150).map(|n| format!("x-h{n}: v\r\n")).collect();
    let request = format!("GET /ping HTTP/1.1\r\nHost: t\r\nx-user: r\r\n{many}\r\n");
    assert_eq!(raw_status(server.addr, request.as_bytes()).await, 431);
}

#[tokio::test]
async fn shutdown_drains_in_flight_cold_calls_and_turns_readiness_off() {
    let server = start(&["--first-call-cost", "1500ms", "--shutdown-grace", "5s"]).await;
    let mut idle = Client::connect(server.addr).await;
    assert_eq!(idle.get("/readyz", None).await.status, StatusCode::OK);

    let mut busy = Client::connect(server.addr).await;
    let cold = tokio::spawn(async move { busy.get("/ping", Some("late")).await });
    let cache = server.state.cache();
    until("the cold call in flight", || cache.pending() == 1).await;
    let _ = server.stop.send(());
    let readiness = server.state.readiness();
    until("the drain to start", || !readiness.is_ready()).await;

    // The listener still answers during the drain, and says it is not ready.
    let mut probe = Client::connect(server.addr).await;
    let ready = probe.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.headers["connection"], "close",
        "one answer per new connection"
    );
    assert!(
        idle.0.ready().await.is_err(),
        "idle keep-alive connections are closed"
    );
    assert!(!server.done.is_finished(), "the cold call is still running");

    let cold = cold.await.unwrap();
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(cold.headers["x-cache"], "miss");
    assert_eq!(cold.headers["connection"], "close");
    let drained = tokio::time::timeout(Duration::from_secs(2), server.done).await;
    assert_eq!(drained.unwrap().unwrap(), Drained { abandoned: 0 });
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let server = start(&["--first-call-cost", "30s", "--shutdown-grace", "300ms"]).await;
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\nx-user: stuck\r\n\r\n")
        .await
        .unwrap();
    let cache = server.state.cache();
    until("the call in flight", || cache.pending() == 1).await;
    let started = Instant::now();
    let _ = server.stop.send(());
    let drained = server.done.await.unwrap();
    assert_eq!(drained, Drained { abandoned: 1 });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The abandoned connection is closed then, not left running its 30 s call.
    assert!(
        closed_within(&mut busy, Duration::from_secs(2))
            .await
            .is_some(),
        "the connection still open after the grace period is closed"
    );
}

/// Reads until the server closes the connection; how long that took (`None`: not in `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_at_the_header_read_timeout() {
    let server = start(&["--header-read-timeout", "400ms"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Half a head, then silence: the request never starts.
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\nx-us")
        .await
        .unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server closes a connection that never finishes its head");
    assert!(
        took >= Duration::from_millis(350),
        "not before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "soon after it: {took:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_long_call_is_not_cut() {
    let server = start(&[
        "--header-read-timeout",
        "400ms",
        "--first-call-cost",
        "1200ms",
    ])
    .await;
    // A cold call three times the timeout: in flight, so it is answered.
    let mut client = Client::connect(server.addr).await;
    let cold = client.get("/ping", Some("ricky")).await;
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(cold.headers["x-cache"], "miss");
    // Busy keep-alive connections stay open: requests every 200 ms for 1.2 s. (This sleep is
    // the client's pace under test, not a wait for the server.)
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            client.get("/ping", Some("ricky")).await.status,
            StatusCode::OK
        );
    }
    // An idle one is closed once the timeout has passed with nothing in flight.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\nx-user: ricky\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        took >= Duration::from_millis(350),
        "not before the timeout: {took:?}"
    );
}
