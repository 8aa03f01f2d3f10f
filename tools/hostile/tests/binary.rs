//! The `hostile` binary: its lines and exit status.

#[path = "support/servers.rs"]
mod servers;

use std::process::{Command, Output};

fn hostile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostile"))
        .args(args)
        .output()
        .expect("hostile runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_prints_ready_and_done_and_exits_0() {
    let (addr, seen) = servers::http(None, usize::MAX).await;
    let target = addr.to_string();
    let args = [
        "idle-h1",
        "--target",
        &target,
        "--connections",
        "20",
        "--hold",
        "300ms",
    ]
    .map(str::to_owned);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hostile"))
            .args(args)
            .output()
            .expect("hostile runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |word: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("hostile: {word} ")))
            .map(str::to_owned)
    };
    let ready = line("ready").unwrap_or_else(|| panic!("no ready line: {stdout}"));
    assert!(
        ready.contains(&format!("idle-h1 {target} opened=20/20 open=20 ")),
        "{ready}"
    );
    let done = line("done").unwrap_or_else(|| panic!("no done line: {stdout}"));
    assert!(
        done.contains(&format!(
            "idle-h1 {target} opened=20/20 open=20 server_closed=0 unanswered=0 close_after=- \
             connect_failed=0 answers=200:20 "
        )),
        "{done}"
    );
    assert_eq!(seen.connections(), 20);
}

#[test]
fn a_target_not_ours_is_refused_with_exit_1() {
    let output = hostile(&["flood", "--target", "8.8.8.8:80"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("only against loopback or private addresses"),
        "{stderr}"
    );
}
