//! The built `gateway` binary: two processes with the same config agree on every key, SIGTERM
//! ends a run with exit 0, `healthcheck` tells a live admin listener from a dead one, and a
//! config with errors refuses to start.

#[path = "support/stack.rs"]
mod stack;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stack::{BY_USER, Http, backends, static_config};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process {
    child: Child,
    admin: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &std::path::Path) -> Process {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--workers", "1", "--dns-server", "127.0.0.1:9"])
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    Process { child, admin }
}

fn healthcheck(admin: SocketAddr) -> bool {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["healthcheck", "--admin", &admin.to_string()])
        .status()
        .unwrap()
        .success()
}

async fn wait_healthy(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthcheck(admin) {
        assert!(
            Instant::now() < deadline,
            "the gateway never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_processes_agree_and_sigterm_exits_zero() {
    let backends = backends(5, Duration::ZERO).await;
    let mut addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(
        a_dir.path().join("istio.yaml"),
        static_config(&addrs, BY_USER),
    )
    .unwrap();
    addrs.reverse();
    std::fs::write(
        b_dir.path().join("istio.yaml"),
        static_config(&addrs, BY_USER),
    )
    .unwrap();
    let mut a = spawn(a_dir.path());
    let b = spawn(b_dir.path());
    wait_healthy(a.admin).await;
    wait_healthy(b.admin).await;

    let http = Http::new();
    for i in 0..200 {
        let path = format!("/lookup?cluster=sticky-svc.default.svc.cluster.local&key=user-{i}");
        let (from_a, from_b) = (
            http.get(a.admin, &path, None).await,
            http.get(b.admin, &path, None).await,
        );
        assert_eq!(from_a.status, 200, "{}", from_a.body);
        assert_eq!(
            from_a.body, from_b.body,
            "the two processes disagree on user-{i}"
        );
    }

    let term = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        !healthcheck(a.admin),
        "healthcheck fails once the gateway is gone"
    );
}

#[test]
fn a_config_with_errors_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = static_config(&["127.0.0.1:1".parse().unwrap()], BY_USER)
        .replace("httpHeaderName", "httpHeaderNme");
    std::fs::write(dir.path().join("istio.yaml"), bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("istio.yaml:"),
        "names the file and line: {stderr}"
    );
    assert!(stderr.contains("did you mean `httpHeaderName`"), "{stderr}");
}

/// `--access-log` with `LOG_FORMAT=json`: one JSON object per request on stdout (logs stay on
/// stderr); the line is there once the response has been read.
#[tokio::test]
async fn the_access_log_is_json_on_stdout() {
    use std::io::{BufRead, BufReader};

    let backends = backends(1, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("istio.yaml"),
        static_config(&[backends[0].addr], BY_USER),
    )
    .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "run",
            "--workers",
            "1",
            "--dns-server",
            "127.0.0.1:9",
            "--access-log",
        ])
        .arg("--config")
        .arg(dir.path())
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .env("LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway binary starts");
    let mut process = Process { child, admin };
    wait_healthy(admin).await;
    let answer = Http::new().ping(listen, "ricky").await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let stdout = process.child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("\"path\":\"/ping\""))
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .expect("an access log line within 10 s")
        .unwrap()
        .expect("an access log line on stdout");
    let entry: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    let fields = &entry["fields"];
    assert_eq!(fields["status"], 200, "{line}");
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(fields["hash_key"], "present", "{line}");
    assert_eq!(fields["upstream"], backends[0].addr.to_string(), "{line}");
    assert!(fields["bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(entry["timestamp"].is_string(), "{line}");
}
