//! Each mode against a tiny local server: it opens what it says, plays its opening move, and
//! counts the connections the server closed.

#[path = "support/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use hostile::{Mode, Phase, Plan, Report};
use tokio::sync::oneshot;

const N: usize = 20;

/// The server closes connections this long after accepting them.
const SERVER_CLOSES: Duration = Duration::from_millis(200);

fn plan(mode: Mode, target: std::net::SocketAddr, hold: Duration) -> Plan {
    Plan {
        connections: N,
        rate: NonZeroU32::new(1000).unwrap(),
        hold,
        ..Plan::new(mode, target).unwrap()
    }
}

/// Runs `plan`, checking that `ready` is reported once, after every connection settled.
async fn run(plan: &Plan, stop: impl Future<Output = ()>) -> Report {
    let mut ready = Vec::new();
    let report = hostile::run(plan, stop, |phase, report| {
        if phase == Phase::Ready {
            ready.push(report.clone());
        }
    })
    .await;
    assert_eq!(ready.len(), 1, "one ready report: {ready:?}");
    assert_eq!(
        (ready[0].attempted, ready[0].settled),
        (N as u64, N as u64),
        "{}",
        ready[0]
    );
    assert_eq!(report.attempted, N as u64, "{report}");
    report
}

async fn held(plan: &Plan) -> Report {
    run(plan, std::future::pending()).await
}

fn users() -> BTreeSet<String> {
    (0..N).map(hostile::client::user).collect()
}

/// Every connection was closed by the server, none earlier than it closes them.
fn all_closed_by_the_server(report: &Report) {
    assert_eq!(
        (report.opened, report.open, report.server_closed),
        (N as u64, 0, N as u64),
        "{report}"
    );
    let (first, last) = report.close_after.expect("close times");
    assert!(first >= SERVER_CLOSES && first <= last, "{report}");
}

#[tokio::test]
async fn idle_h1_keeps_every_connection_open_after_one_answer() {
    let (addr, seen) = servers::http(None, usize::MAX).await;
    let report = held(&plan(Mode::IdleH1, addr, Duration::from_millis(300))).await;
    assert_eq!(
        (report.opened, report.open, report.server_closed),
        (N as u64, N as u64, 0),
        "{report}"
    );
    assert_eq!(report.answers, BTreeMap::from([(200, N as u64)]));
    assert_eq!(report.close_after, None);
    assert_eq!(seen.connections(), N);
    assert_eq!(*seen.users.lock().unwrap(), users());
    assert_eq!(
        *seen.versions.lock().unwrap(),
        BTreeSet::from(["http/1.1".to_owned()])
    );
}

#[tokio::test]
async fn idle_h1_counts_the_connections_the_server_closes() {
    let (addr, _) = servers::http(Some(SERVER_CLOSES), usize::MAX).await;
    let report = held(&plan(Mode::IdleH1, addr, Duration::from_secs(2))).await;
    all_closed_by_the_server(&report);
    assert_eq!(report.unanswered, 0, "{report}");
    assert_eq!(report.answers, BTreeMap::from([(200, N as u64)]));
}

#[tokio::test]
async fn idle_h2_keeps_every_connection_open_after_one_stream() {
    let (addr, seen) = servers::http(None, usize::MAX).await;
    let report = held(&plan(Mode::IdleH2, addr, Duration::from_millis(300))).await;
    assert_eq!(
        (report.opened, report.open, report.server_closed),
        (N as u64, N as u64, 0),
        "{report}"
    );
    assert_eq!(report.answers, BTreeMap::from([(200, N as u64)]));
    assert_eq!(seen.connections(), N);
    assert_eq!(*seen.users.lock().unwrap(), users());
    assert_eq!(
        *seen.versions.lock().unwrap(),
        BTreeSet::from(["h2".to_owned()])
    );
}

#[tokio::test]
async fn idle_h2_counts_the_connections_the_server_closes() {
    let (addr, _) = servers::http(Some(SERVER_CLOSES), usize::MAX).await;
    let report = held(&plan(Mode::IdleH2, addr, Duration::from_secs(2))).await;
    all_closed_by_the_server(&report);
    assert_eq!(report.answers, BTreeMap::from([(200, N as u64)]));
}

#[tokio::test]
async fn stalled_body_sends_a_hundred_of_a_million_bytes_and_sees_the_408() {
    let reply = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (addr, seen) = servers::raw(SERVER_CLOSES, reply).await;
    let report = held(&plan(Mode::StalledBody, addr, Duration::from_secs(2))).await;
    all_closed_by_the_server(&report);
    assert_eq!(report.unanswered, 0, "{report}");
    assert_eq!(report.answers, BTreeMap::from([(408, N as u64)]));
    let sent = seen.bytes.lock().unwrap();
    assert_eq!(sent.len(), N);
    for bytes in sent.iter() {
        let text = std::str::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
        assert!(head.starts_with("POST /ping HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("content-length: 1000000"), "{head}");
        assert_eq!(body.len(), 100);
    }
}

#[tokio::test]
async fn a_stalled_body_announces_the_content_length_it_is_told() {
    let reply = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (addr, seen) = servers::raw(SERVER_CLOSES, reply).await;
    let plan = Plan {
        content_length: 10_000,
        ..plan(Mode::StalledBody, addr, Duration::from_secs(2))
    };
    let report = held(&plan).await;
    all_closed_by_the_server(&report);
    for bytes in seen.bytes.lock().unwrap().iter() {
        let text = std::str::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
        assert!(head.ends_with("\r\ncontent-length: 10000"), "{head}");
        assert_eq!(body.len(), 100);
    }
}

#[tokio::test]
async fn stalled_head_sends_half_a_head_and_counts_unanswered_closes() {
    let (addr, seen) = servers::raw(SERVER_CLOSES, b"").await;
    let report = held(&plan(Mode::StalledHead, addr, Duration::from_secs(2))).await;
    all_closed_by_the_server(&report);
    assert_eq!(report.unanswered, N as u64, "{report}");
    assert!(report.answers.is_empty(), "{report}");
    let sent = seen.bytes.lock().unwrap();
    assert_eq!(sent.len(), N);
    for bytes in sent.iter() {
        assert!(bytes.starts_with(b"GET /ping HTTP/1.1\r\n"));
        assert!(
            !bytes.windows(4).any(|w| w == b"\r\n\r\n"),
            "a head that ends"
        );
    }
}

#[tokio::test]
async fn flood_holds_what_was_answered_and_counts_the_429s() {
    let limit = 8;
    let (addr, seen) = servers::http(None, limit).await;
    let report = held(&plan(Mode::Flood, addr, Duration::from_millis(500))).await;
    let refused = (N - limit) as u64;
    assert_eq!(
        report.answers,
        BTreeMap::from([(200, limit as u64), (429, refused)]),
        "{report}"
    );
    assert_eq!(
        (report.opened, report.open, report.server_closed),
        (N as u64, limit as u64, refused)
    );
    assert_eq!(report.unanswered, 0);
    assert_eq!(seen.connections(), N);
}

#[tokio::test]
async fn connections_nothing_accepts_are_counted_as_failed() {
    let addr = servers::nothing().await;
    let report = held(&plan(Mode::IdleH1, addr, Duration::from_millis(100))).await;
    assert_eq!(
        (report.opened, report.connect_failed, report.server_closed),
        (0, N as u64, 0),
        "{report}"
    );
}

#[tokio::test]
async fn stop_ends_the_hold_and_the_report_still_counts_the_open_ones() {
    let (addr, seen) = servers::http(None, usize::MAX).await;
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let plan = plan(Mode::IdleH1, addr, Duration::from_secs(3600));
    let report = hostile::run(&plan, async { ready_rx.await.unwrap() }, |phase, _| {
        if phase == Phase::Ready {
            ready_tx.take().unwrap().send(()).unwrap();
        }
    })
    .await;
    assert_eq!(
        (report.open, report.server_closed),
        (N as u64, 0),
        "{report}"
    );
    assert_eq!(seen.connections(), N);
}
