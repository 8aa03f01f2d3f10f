//! The built binary: real SIGTERM, JSON logs, and the `healthcheck` subcommand's exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sticky-svc");

/// Starts the server on a free loopback port and returns it with the address it logged.
fn start(flags: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-filter",
            "info",
        ])
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            logs.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        if log["fields"]["message"] == "listening" {
            break log["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // Keep draining the logs so the child never blocks on a full pipe.
    thread::spawn(move || std::io::copy(&mut logs, &mut std::io::sink()));
    (child, addr)
}

fn healthcheck(addr: SocketAddr) -> Output {
    Command::new(BIN)
        .args([
            "healthcheck",
            "--listen",
            &addr.to_string(),
            "--timeout",
            "1s",
        ])
        .output()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str, user: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nx-user: {user}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn get_ping(addr: SocketAddr, user: &str) -> String {
    get(addr, "/ping", user)
}

/// Scrapes `/metrics` until it has `line`; fails after 5 s. Each scrape waits for the server's
/// answer, so this never spins idle.
fn until_metric(addr: SocketAddr, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !get(addr, "/metrics", "probe").contains(line) {
        assert!(
            Instant::now() < deadline,
            "no {line:?} in /metrics after 5 s"
        );
    }
}

/// Waits for `child` to exit (on a thread blocked in `wait`); kills it after `within`.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    thread::scope(|scope| {
        let (exited, exit) = mpsc::channel();
        scope.spawn(move || exited.send(child.wait().unwrap()));
        match exit.recv_timeout(within) {
            Ok(status) => status,
            Err(_) => {
                // The waiting thread returns once the child is dead, so the scope can end.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("still running after {within:?}");
            }
        }
    })
}

#[test]
fn sigterm_lets_a_cold_call_finish_then_exits_zero() {
    let (mut child, addr) = start(&["--first-call-cost", "700ms", "--host-name", "bin-test"]);
    let healthy = healthcheck(addr);
    assert!(healthy.status.success(), "{healthy:?}");

    let cold = thread::spawn(move || get_ping(addr, "ricky"));
    until_metric(addr, "\nsticky_first_calls_in_flight 1\n");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    let answer = cold.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("x-cache: miss\r\n"));
    assert!(answer.contains("Call was processed by host bin-test for user ricky and it took"));

    let gone = healthcheck(addr);
    assert_eq!(gone.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1:"), "{stderr}");
}

#[test]
fn sigint_with_nothing_in_flight_exits_at_once() {
    let (mut child, _) = start(&["--shutdown-grace", "30s"]);
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn healthcheck_fails_on_a_server_that_is_not_healthy() {
    // Something listens, but it is not an HTTP server that says 200.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    });
    let output = healthcheck(addr);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("answered /healthz with status 503"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_explained() {
    let output = Command::new(BIN)
        .args(["--first-call-cost", "five"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--first-call-cost"), "{stderr}");
    assert!(stderr.contains("write it like 5s"), "{stderr}");
}

#[test]
fn half_a_tls_pair_or_a_missing_file_stops_the_start_with_the_reason() {
    let run = |flags: &[&str]| {
        let output = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .env_remove("TLS_CERT")
            .env_remove("TLS_KEY")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(&["--tls-cert", "/nonexistent/tls.crt"]);
    assert!(
        stderr.contains("--tls-cert (TLS_CERT) is set but --tls-key (TLS_KEY) is not"),
        "{stderr}"
    );
    let stderr = run(&[
        "--tls-cert",
        "/nonexistent/tls.crt",
        "--tls-key",
        "/nonexistent/tls.key",
    ]);
    assert!(
        stderr.contains("cannot read /nonexistent/tls.crt: No such file"),
        "{stderr}"
    );
}
