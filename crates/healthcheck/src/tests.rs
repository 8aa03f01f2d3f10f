//! [`check`] against real loopback listeners, one connection each, served from a thread.

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use super::*;

/// Long enough for any loaded machine to answer on loopback; no passing test waits it out.
const PATIENT: Duration = Duration::from_secs(10);

/// A listener that accepts one connection, reads the request head, writes its answer in
/// `pieces` (one write each) and closes; the thread returns the request it read.
fn serve_once(pieces: &'static [&'static str]) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        while !request.ends_with(b"\r\n\r\n") {
            let read = stream.read(&mut buf).unwrap();
            assert!(read > 0, "the client closed before ending its request");
            request.extend_from_slice(&buf[..read]);
        }
        for piece in pieces {
            stream.write_all(piece.as_bytes()).unwrap();
            stream.flush().unwrap();
        }
        String::from_utf8(request).unwrap()
    });
    (addr, server)
}

#[test]
fn a_200_is_healthy_and_the_request_is_a_get_of_healthz() {
    let (addr, server) = serve_once(&["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]);
    check(addr, PATIENT).unwrap();
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: {addr}\r\n")),
        "{request}"
    );
}

#[test]
fn a_status_line_split_across_reads_is_put_together() {
    let (addr, server) = serve_once(&["HTTP/1.0 2", "00 OK\r", "\n\r\n"]);
    check(addr, PATIENT).unwrap();
    server.join().unwrap();
}

#[test]
fn a_503_is_unhealthy_and_the_error_names_status_and_address() {
    let (addr, server) = serve_once(&["HTTP/1.1 503 Service Unavailable\r\n\r\n"]);
    let error = check(addr, PATIENT).unwrap_err();
    assert!(
        matches!(error, Error::Unhealthy { addr: a, status: 503 } if a == addr),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("{addr} answered /healthz with status 503")
    );
    server.join().unwrap();
}

#[test]
fn garbage_is_not_http() {
    let (addr, server) = serve_once(&["SSH-2.0-OpenSSH_9.6\r\n"]);
    let error = check(addr, PATIENT).unwrap_err();
    assert!(
        matches!(error, Error::NotHttp { addr: a } if a == addr),
        "{error:?}"
    );
    server.join().unwrap();
}

#[test]
fn a_close_without_a_word_is_not_http() {
    let (addr, server) = serve_once(&[]);
    let error = check(addr, PATIENT).unwrap_err();
    assert!(matches!(error, Error::NotHttp { .. }), "{error:?}");
    server.join().unwrap();
}

#[test]
fn a_server_that_never_answers_times_out_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, then holds the connection open and silent until the test is over.
    let (done, over) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (_stream, _) = listener.accept().unwrap();
        let _ = over.recv();
    });
    let timeout = Duration::from_millis(200);
    let (report, result) = mpsc::channel();
    thread::spawn(move || report.send(check(addr, timeout)));
    // If the timeout never fires, this fails instead of hanging the test run.
    let error = result
        .recv_timeout(PATIENT)
        .expect("check gave up within its timeout")
        .unwrap_err();
    assert!(
        matches!(error, Error::Timeout { addr: a, timeout: t } if a == addr && t == timeout),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("no answer from {addr} within 200ms")
    );
    drop(done);
    server.join().unwrap();
}

#[test]
fn nothing_listening_is_a_connect_error() {
    // A port that was just free: bound, then released.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = check(addr, PATIENT).unwrap_err();
    assert!(
        matches!(&error, Error::Connect { addr: a, source }
            if *a == addr && source.kind() == io::ErrorKind::ConnectionRefused),
        "{error:?}"
    );
    assert_eq!(error.to_string(), format!("cannot connect to {addr}"));
}

#[test]
fn a_zero_timeout_is_a_timeout_not_a_panic() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let error = check(addr, Duration::ZERO).unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
}

#[test]
fn wildcard_listen_addresses_map_to_loopback() {
    let probe = |listen: &str| target(listen.parse().unwrap()).to_string();
    assert_eq!(probe("0.0.0.0:8080"), "127.0.0.1:8080");
    assert_eq!(probe("[::]:9000"), "[::1]:9000");
    assert_eq!(probe("10.1.2.3:80"), "10.1.2.3:80");
    assert_eq!(probe("127.0.0.1:15000"), "127.0.0.1:15000");
}

#[test]
fn reads_status_lines() {
    assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Some(200));
    assert_eq!(status(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
    assert_eq!(status(b"HTTP/1.1 204\r\n"), Some(204));
    assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
    assert_eq!(status(b"HTTP/1.1 2"), None);
    assert_eq!(status(b"HTTP/1.1 2000 OK\r\n"), None);
    assert_eq!(status(b"HTTP/1.1 +20 OK\r\n"), None);
    assert_eq!(status(b""), None);
}
