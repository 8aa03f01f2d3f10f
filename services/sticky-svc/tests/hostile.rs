//! Hostile clients over real sockets: too many connections, callers who hang up mid-call. Each
//! test attacks one defence and fails without it. (A flood of made-up users is in `router.rs`,
//! with the clock paused.)

#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use server::{Client, start, until};
use sticky_svc::serve::Drained;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn connections_past_the_limit_are_answered_503_and_closed() {
    let server = start(&["--first-call-cost", "0s", "--max-connections", "2"]).await;
    let mut first = Client::connect(server.addr).await;
    let mut second = Client::connect(server.addr).await;
    for client in [&mut first, &mut second] {
        assert_eq!(
            client.get("/ping", Some("ricky")).await.status,
            StatusCode::OK
        );
    }
    let connections = server.state.connections();
    assert_eq!(connections.open(), 2);

    // Both keep-alive connections hold their places: a third is answered 503 and closed.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\nx-user: ricky\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut answer));
    closed.await.expect("closed after its answer").unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.contains("\r\nx-served-by: socket-test\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("too many connections; retry shortly\n"),
        "{answer}"
    );
    assert_eq!(connections.refused(), 1);

    // The connections served are not disturbed, and a place given back is taken again.
    assert_eq!(
        first.get("/ping", Some("ricky")).await.status,
        StatusCode::OK
    );
    drop(second);
    until("the second connection's place back", || {
        connections.open() == 1
    })
    .await;
    let mut fourth = Client::connect(server.addr).await;
    assert_eq!(
        fourth.get("/ping", Some("ricky")).await.status,
        StatusCode::OK
    );
    let metrics = fourth.get("/metrics", None).await.body;
    assert!(metrics.contains("sticky_connections_open 2\n"), "{metrics}");
    assert!(
        metrics.contains("sticky_connections_limit 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sticky_connections_refused_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_first_call_cancels_it_after_the_grace() {
    let server = start(&["--first-call-cost", "30s", "--abandon-grace", "300ms"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\nx-user: gone\r\n\r\n")
        .await
        .unwrap();
    let cache = server.state.cache();
    until("the first call in flight", || cache.pending() == 1).await;
    drop(stream);
    let hung_up = Instant::now();
    until("the first call cancelled", || cache.pending() == 0).await;
    let took = hung_up.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "not before the grace: {took:?}"
    );
    assert_eq!(cache.cancelled(), 1);
    assert!(!cache.is_ready("gone"));
    // Nothing is left running: the drain finds no connection and no call.
    let _ = server.stop.send(());
    assert_eq!(server.done.await.unwrap(), Drained { abandoned: 0 });
}
