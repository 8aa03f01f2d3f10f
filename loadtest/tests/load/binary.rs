//! The binary's exit status: 1 on a broken threshold, 2 on a usage error.

use std::process::{Command, Output};

use crate::proxy::Route;
use crate::stack::{COST, Stack, exclusive, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");

async fn loadtest(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_threshold_exits_1_and_still_writes_the_summary() {
    let _guard = exclusive().await;
    let stack = Stack::start(3, COST, Route::RoundRobin).await;
    let dir = scratch("binary");
    // By name: the static binary resolves `localhost` with hickory, not glibc's NSS.
    let host = stack.url.replace("127.0.0.1", "localhost");
    let args = [
        "--host",
        &host,
        "--users",
        "10",
        "--run-time",
        "1s",
        "--hatch-rate",
        "100",
        "--first-call-cost",
        "200ms",
        "--pause",
        "20ms",
        "--max-warm-p99",
        "2s",
        "--out-dir",
        dir.to_str().unwrap(),
    ];
    let output = loadtest(args.iter().map(ToString::to_string).collect()).await;
    let stdout = text(&output.stdout);

    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    // Every call answered (so `localhost` resolved), and the verdict names stickiness.
    assert!(stdout.contains("(0 failed)"), "{stdout}");
    assert!(stdout.contains("FAIL: "), "{stdout}");
    assert!(stdout.contains("is below 100.0%"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["passed"], false);
    assert_eq!(summary["scenario"], "sticky");
    assert!(dir.join("report.html").exists() && dir.join("report.json").exists());
}

#[tokio::test]
async fn bad_flags_exit_2_with_a_usage_error() {
    let output = loadtest(vec!["--users".into(), "0".into()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--users must be at least 1"));

    let output = loadtest(vec!["--scenario".into(), "soak".into()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("sticky, rebalance, cold-start"));

    let output = loadtest(vec!["--host".into(), "localhost:8080".into()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--host"));
}
