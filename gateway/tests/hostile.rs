//! Hostile input at the edge: what a client can send that the gateway must survive and answer
//! sanely. Each test attacks one defence and fails without it.

#[path = "support/stack.rs"]
mod stack;

use std::net::SocketAddr;
use std::time::Duration;

use stack::{BY_USER, RunningGateway, static_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Sends `request` as raw bytes and returns everything the gateway answered before closing
/// (or 10 s, whichever first).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A backend that answers every request 200 and reports each request head it read.
async fn recording_backend() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

/// A path with a multi-byte character where a case-insensitive prefix ends used to be sliced
/// inside the character: the connection's task panicked and the client got an empty reply.
#[tokio::test]
async fn a_multibyte_path_against_a_case_insensitive_prefix_gets_an_answer() {
    let (backend, _heads) = recording_backend().await;
    let yaml = static_config(&[backend], BY_USER).replace(
        "  http:\n  - route:",
        "  http:\n  - match:\n    - uri: {prefix: /ab}\n      ignoreUriCase: true\n    route:",
    );
    let gw = RunningGateway::start(&yaml, None).await;
    let answer = raw(
        gw.addr,
        b"GET /a\xc3\xa9x HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    // The same route still serves what it matches, in any case.
    let answer = raw(
        gw.addr,
        b"GET /AB/c HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// An absolute-form request is routed by its URI's host, so that is the Host the upstream
/// gets, not the other one the client also sent (RFC 9112 §3.2.2).
#[tokio::test]
async fn the_forwarded_host_is_the_authority_the_request_was_routed_by() {
    let (backend, mut heads) = recording_backend().await;
    let gw = RunningGateway::start(&static_config(&[backend], BY_USER), None).await;
    let answer = raw(
        gw.addr,
        b"GET http://routed.example/ping HTTP/1.1\r\nhost: other.example\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains("host: routed.example\r\n"), "{head}");
    assert!(!head.contains("other.example"), "{head}");
    assert!(
        head.starts_with("get /ping http/1.1\r\n"),
        "origin form: {head}"
    );
}

/// A rewrite under a case-insensitive prefix replaces the prefix as it was matched.
#[tokio::test]
async fn a_rewrite_honours_ignore_uri_case() {
    let (backend, mut heads) = recording_backend().await;
    let yaml = static_config(&[backend], BY_USER).replace(
        "  http:\n  - route:",
        "  http:\n  - match:\n    - uri: {prefix: /api}\n      ignoreUriCase: true\n    rewrite: {uri: /v2}\n    route:",
    );
    let gw = RunningGateway::start(&yaml, None).await;
    let answer = raw(
        gw.addr,
        b"GET /API/users?a=1 HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /v2/users?a=1 HTTP/1.1\r\n"), "{head}");
}
