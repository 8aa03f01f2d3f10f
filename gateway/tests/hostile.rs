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

/// An h2c connection (prior knowledge) to `addr`: the request handle and the connection's
/// task, which ends when the gateway closes the connection.
async fn h2c(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(stream).await.unwrap();
    (send, tokio::spawn(conn))
}

/// GET /ping as ricky over `send`, read to the end; the status.
async fn h2_get(send: &mut h2::client::SendRequest<bytes::Bytes>) -> u16 {
    let request = http::Request::get("http://x/ping")
        .header("x-user", "ricky")
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    status
}

/// An HTTP/2 client that made one request and then stays idle is sent GOAWAY and closed after
/// the HTTP/2 idle timeout (it used to be left open for ever once past its first request).
#[tokio::test]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let (backend, _heads) = recording_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.limits.http2_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let (mut send, conn) = h2c(gw.addr).await;
    assert_eq!(h2_get(&mut send).await, 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("closed within 10 s");
    // A graceful close (GOAWAY, NO_ERROR) ends the client's connection without an error.
    ended.unwrap().expect("closed with GOAWAY, not cut");
}

/// A stream in flight is not idle: a request slower than the idle timeout is answered.
#[tokio::test]
async fn an_http2_stream_in_flight_keeps_its_connection() {
    let backends = stack::backends(1, Duration::from_millis(800)).await;
    let gw = RunningGateway::start_with(&static_config(&[backends[0].addr], BY_USER), None, |o| {
        o.limits.http2_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let (mut send, _conn) = h2c(gw.addr).await;
    assert_eq!(
        h2_get(&mut send).await,
        200,
        "an 800 ms first call, 200 ms idle timeout"
    );
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream_id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads HTTP/2 frames from `stream` until a GOAWAY (its error code) or the end (`None`).
async fn goaway(stream: &mut TcpStream) -> Option<u32> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16_384];
    loop {
        while data.len() >= 9 {
            let len =
                (usize::from(data[0]) << 16) | (usize::from(data[1]) << 8) | usize::from(data[2]);
            if data.len() < 9 + len {
                break;
            }
            if data[3] == 0x7 && len >= 8 {
                return Some(u32::from_be_bytes([data[13], data[14], data[15], data[16]]));
            }
            data.drain(..9 + len);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Rapid reset (CVE-2023-44487): streams opened and reset at once, faster than they can be
/// served, get the connection closed with GOAWAY `ENHANCE_YOUR_CALM` (h2's limit on remotely
/// reset streams pending accept). The frames are written in one burst, so they all arrive
/// before the gateway can serve any.
#[tokio::test]
async fn rapid_reset_gets_the_connection_closed() {
    let (backend, _heads) = recording_backend().await;
    let gw = RunningGateway::start(&static_config(&[backend], BY_USER), None).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    burst.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    // :method GET, :scheme http, :path /, :authority x (HPACK static table and one literal).
    let headers = [0x82, 0x86, 0x84, 0x41, 0x01, b'x'];
    for i in 0..200u32 {
        let id = 2 * i + 1;
        burst.extend(frame(0x1, 0x5, id, &headers)); // HEADERS, END_STREAM | END_HEADERS
        burst.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let _ = stream.write_all(&burst).await; // it may close before reading it all
    let code = tokio::time::timeout(Duration::from_secs(10), goaway(&mut stream))
        .await
        .expect("GOAWAY or the end within 10 s");
    assert_eq!(code, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
}

/// A header block that never ends (HEADERS then CONTINUATION frames, far past the header size
/// limit) gets the connection closed, rather than buffered.
#[tokio::test]
async fn an_endless_header_block_gets_the_connection_closed() {
    let (backend, _heads) = recording_backend().await;
    let gw = RunningGateway::start(&static_config(&[backend], BY_USER), None).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS
    // A literal header, never indexed, with a 16 KiB value, then more of the same: 100 frames
    // of 16 KiB, 1.6 MiB of headers against a 64 KiB limit.
    let mut literal = vec![0x10, 0x01, b'x', 0x7f, 0x81, 0x7f]; // name "x", value 16 256 bytes
    literal.resize(16_384, b'a');
    let mut written = 0;
    let mut closed = false;
    for i in 0..100 {
        let f = if i == 0 {
            frame(0x1, 0, 1, &literal) // HEADERS, no END_HEADERS
        } else {
            frame(0x9, 0, 1, &[b'a'; 16_384]) // CONTINUATION, no END_HEADERS
        };
        if stream.write_all(&f).await.is_err() {
            closed = true;
            break;
        }
        written += 1;
    }
    if !closed {
        // Everything was written (the kernel buffers): the gateway must still close.
        let mut rest = Vec::new();
        // Ok (FIN) or a reset: either way it ended, which is what is asserted here.
        let _ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("closed within 10 s");
        // A GOAWAY frame (type 7) is what it says before closing, if anything.
        let goaway = rest.windows(4).any(|w| w[3] == 0x7);
        assert!(
            goaway || rest.is_empty(),
            "{written} frames, then {} bytes",
            rest.len()
        );
    }
}

/// Over `--max-connections`, with every place held by a request in flight, a connection is
/// answered 429 and closed at once (it used to be held open for 5 s after the answer); one
/// that sends nothing is closed within a second.
#[tokio::test]
async fn over_the_connection_cap_429_comes_at_once_and_the_connection_closes() {
    let hung = hung_backend().await;
    let (backend, _heads) = recording_backend().await;
    let mut yaml = static_config(&[hung], BY_USER);
    // A second route, to a replica that answers, for once a place is free.
    yaml = yaml.replace(
        "  http:\n  - route:",
        "  http:\n  - match:\n    - uri: {prefix: /ok}\n    route:\n    - destination:\n        host: ok.local\n  - route:",
    );
    yaml.push_str(&format!(
        "---\napiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: ok}}\nspec:\n  hosts: [ok.local]\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n  - address: {}\n    ports: {{http: {}}}\n",
        backend.ip(),
        backend.port()
    ));
    let gw = RunningGateway::start_with(&yaml, None, |o| {
        o.limits.max_connections = 2;
        o.workers = 1;
    })
    .await;
    // Two connections hold the two places, each with a request in flight (to the hung one).
    let mut holders = Vec::new();
    for user in ["a", "b"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET /ping HTTP/1.1\r\nhost: x\r\nx-user: {user}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        holders.push(s);
    }
    stack::wait_in_flight(gw.admin, 2).await;
    let started = std::time::Instant::now();
    let answer = raw(
        gw.addr,
        b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n", // keep-alive asked
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed right after the answer, not held: {:?}",
        started.elapsed()
    );
    // Silent: closed within the second it has to speak.
    let started = std::time::Instant::now();
    let silent = raw(gw.addr, b"").await;
    assert!(silent.is_empty(), "{silent:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A place freed is a place served.
    drop(holders.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = raw(
            gw.addr,
            b"GET /ok HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer:?}");
        tokio::task::yield_now().await;
    }
}

/// At the connection limit, a connection left idle gives its place to a new client with a
/// request to make (the idlest is closed), rather than the new client being refused: a flood
/// of idle connections cannot lock everyone else out.
#[tokio::test]
async fn at_the_limit_an_idle_connection_makes_room_for_a_new_client() {
    let (backend, _heads) = recording_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.limits.max_connections = 2;
        o.workers = 1;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        idle.push(s); // served, then left idle, holding a place
    }
    for round in 0..5 {
        let answer = raw(
            gw.addr,
            b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer:?}"
        );
    }
    // The idlest of the two was the one closed for the first newcomer.
    let mut buf = [0u8; 16];
    let first = tokio::time::timeout(Duration::from_secs(5), idle[0].read(&mut buf)).await;
    assert!(matches!(first, Ok(Ok(0)) | Ok(Err(_))), "closed: {first:?}");
}

/// A backend that reads each request's whole body (by `content-length`) before answering
/// `200` with the number of body bytes it got.
async fn body_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while data.len() - head_end < length {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let got = (data.len() - head_end).to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{got}",
                    got.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Sends a POST head announcing `length` body bytes and `sent` of them, then nothing; returns
/// the answer and how long it took to come and the connection to close.
async fn stalled_post(addr: SocketAddr, length: usize, sent: usize) -> (String, Duration) {
    let started = std::time::Instant::now();
    let mut request = format!(
        "POST /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\ncontent-length: {length}\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'a', sent));
    let answer = raw(addr, &request).await;
    (answer, started.elapsed())
}

/// A body that stops (1 000 000 bytes announced, 100 sent) gets 408 and its connection closed
/// after the body timeout, whether it was being buffered for retries or streamed upstream; it
/// used to hold its connection (and a place under --max-connections) for ever.
#[tokio::test]
async fn a_stalled_body_gets_408_and_its_connection_closed() {
    let backend = body_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.proxy.body_timeout = Duration::from_millis(300);
    })
    .await;
    for (length, what) in [(1_000, "buffered for retries"), (1_000_000, "streamed")] {
        let (answer, took) = stalled_post(gw.addr, length, 100).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer:?}");
        assert!(answer.contains("connection: close"), "{what}: {answer:?}");
        assert!(
            answer.ends_with("request body timeout\n"),
            "{what}: {answer:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{what}: closed after {took:?}"
        );
    }
}

/// A slow body that keeps moving is never cut by the body timeout.
#[tokio::test]
async fn a_slow_body_that_keeps_moving_is_not_cut() {
    let backend = body_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.proxy.body_timeout = Duration::from_millis(300);
    })
    .await;
    for length in [20, 100_000] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // 20 parts, 100 ms apart: 2 s in all, well past the 300 ms timeout, never idle 300 ms.
        let part = length / 20;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await; // the client's pace, on purpose
            stream.write_all(&vec![b'a'; part]).await.unwrap();
        }
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{length}: {answer:?}");
        assert!(answer.ends_with(&format!("\r\n\r\n{length}")), "{answer:?}");
    }
}

/// With --request-timeout, a body that keeps moving but too slowly to arrive in time gets 408.
#[tokio::test]
async fn the_request_deadline_bounds_a_body_that_trickles() {
    let backend = body_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.proxy.body_timeout = Duration::from_secs(30);
        o.proxy.request_timeout = Some(Duration::from_millis(500));
    })
    .await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\ncontent-length: 1000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Read the answer while trickling, and stop trickling once it has come (writing on after
    // the gateway closed could make the kernel drop the answer with a reset).
    let mut answer = Vec::new();
    let read = reader.read_to_end(&mut answer);
    tokio::pin!(read);
    let mut sent = 0;
    loop {
        tokio::select! {
            _ = &mut read => break,
            () = tokio::time::sleep(Duration::from_millis(50)) => { // the client's pace, on purpose
                assert!(sent < 200, "no answer after 10 s of trickling");
                let _ = writer.write_all(b"a").await;
                sent += 1;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A replica that hangs: it accepts connections and never answers (a paused container, a
/// deadlock). Returns its address; the connections it accepted are kept open.
async fn hung_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A route with no `timeout` is still bounded, by the gateway's default: a hung replica's user
/// gets 504 instead of waiting for ever (Istio sets no timeout by default). A VirtualService's
/// own `timeout: 0s` still turns it off.
#[tokio::test]
async fn a_hung_replica_is_bounded_by_the_default_route_timeout() {
    let hung = hung_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[hung], BY_USER), None, |o| {
        o.proxy.route_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let answer = raw(
        gw.addr,
        b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer:?}");
    assert!(answer.ends_with("upstream request timeout\n"), "{answer:?}");

    let off = static_config(&[hung], BY_USER).replace("  - route:", "  - timeout: 0s\n    route:");
    let gw = RunningGateway::start_with(&off, None, |o| {
        o.proxy.route_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "timeout: 0s means no timeout: still waiting after 2 s"
    );
}

/// A circuit breaker's 503 says so the way Envoy does, so clients and dashboards can tell it
/// from a replica's own 503.
#[tokio::test]
async fn a_circuit_breaker_503_carries_x_envoy_overloaded() {
    let hung = hung_backend().await;
    let pool = format!(
        "{BY_USER}\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{http1MaxPendingRequests: 1}}"
    );
    let gw = RunningGateway::start(&static_config(&[hung], &pool), None).await;
    // Two requests take the two places (they wait on the hung replica) ...
    let mut waiting = Vec::new();
    for user in ["a", "b"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET /ping HTTP/1.1\r\nhost: x\r\nx-user: {user}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        waiting.push(s);
    }
    // ... so, once both are in flight (as the admin page counts them), the next is refused.
    stack::wait_in_flight(gw.admin, 2).await;
    let answer = raw(
        gw.addr,
        b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: c\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        answer.contains("x-envoy-overloaded: true\r\n"),
        "{answer:?}"
    );
}

/// With --max-connections-per-client, one address cannot take every place: its connections
/// past the limit get 429 while another address is still served; a closed one frees a place.
#[tokio::test]
async fn one_client_address_is_held_to_its_share_of_connections() {
    let (backend, _heads) = recording_backend().await;
    let gw = RunningGateway::start_with(&static_config(&[backend], BY_USER), None, |o| {
        o.limits.max_connections_per_client = Some(2);
    })
    .await;
    let port = gw.addr.port();
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap()
    };
    let ask = |mut s: TcpStream| async move {
        s.write_all(b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), s)
    };
    let (first, a) = ask(from([127, 0, 0, 2]).await).await;
    let (second, b) = ask(from([127, 0, 0, 2]).await).await;
    assert!(first.starts_with("HTTP/1.1 200") && second.starts_with("HTTP/1.1 200"));
    let (third, _) = ask(from([127, 0, 0, 2]).await).await;
    assert!(third.starts_with("HTTP/1.1 429"), "{third:?}");
    let (other, _c) = ask(from([127, 0, 0, 3]).await).await;
    assert!(
        other.starts_with("HTTP/1.1 200"),
        "another address: {other:?}"
    );
    drop((a, b));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (again, _s) = ask(from([127, 0, 0, 2]).await).await;
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{again:?}");
        tokio::task::yield_now().await;
    }
}

/// A backend that answers 200 with `content-length: 1000` and sends the body in 10-byte parts
/// `pause` apart, `parts` of them, then holds the connection without sending the rest.
async fn trickling_backend(parts: usize, pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                    .await;
                for _ in 0..parts {
                    tokio::time::sleep(pause).await; // the replica's pace, on purpose
                    if stream.write_all(&[b'x'; 10]).await.is_err() {
                        return;
                    }
                }
                // Then hangs mid-body, connection open.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

/// A response body that stops coming is cut after the response idle timeout (the client's
/// connection closed mid-body: it cannot be finished), as nginx's proxy_read_timeout; one that
/// keeps coming is not, however long it takes.
#[tokio::test]
async fn a_response_body_that_stops_is_cut_one_that_moves_is_not() {
    let request = b"GET /ping HTTP/1.1\r\nhost: x\r\nx-user: ricky\r\n\r\n";
    let stalled = trickling_backend(1, Duration::ZERO).await;
    let gw = RunningGateway::start_with(&static_config(&[stalled], BY_USER), None, |o| {
        o.proxy.response_idle_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let started = std::time::Instant::now();
    let answer = raw(gw.addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body, "x".repeat(10), "the 10 bytes sent, then the cut");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // 20 parts 100 ms apart: 2 s of body, never 300 ms without data.
    let moving = trickling_backend(20, Duration::from_millis(100)).await;
    let gw = RunningGateway::start_with(&static_config(&[moving], BY_USER), None, |o| {
        o.proxy.response_idle_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(&[b'x'; 200]) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("data keeps coming")
            .unwrap();
        assert!(n > 0, "cut while moving: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// With active checks, a request waiting on a replica that hangs does not wait for its
/// timeout: when the checks take the replica out, the request goes to the next Maglev choice
/// at once (it is idempotent, and nothing of it was lost). nginx and Envoy wait for the timeout.
#[tokio::test]
async fn a_request_waiting_on_a_replica_that_is_taken_out_goes_to_the_next_choice() {
    let hung = hung_backend().await;
    let healthy = stack::backends(3, Duration::ZERO).await;
    let mut addrs = vec![hung];
    addrs.extend(healthy.iter().map(|b| b.addr));
    let gw = RunningGateway::start_with(&static_config(&addrs, BY_USER), None, |o| {
        o.proxy.route_timeout = Some(Duration::from_secs(30));
        o.active = Some(gateway::health::active::ActiveCheck {
            path: "/readyz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        });
    })
    .await;
    // Users the hung replica holds, found before its checks have failed twice (~1.5 s).
    let http = stack::Http::new();
    let lookup = |key: String| {
        let http = http.clone();
        let admin = gw.admin;
        async move {
            let path = format!("/lookup?cluster=sticky-svc.default.svc.cluster.local&key={key}");
            http.get(admin, &path, None).await.body
        }
    };
    let mut users = Vec::new();
    for i in 0..200 {
        let key = format!("user-{i}");
        if lookup(key.clone()).await.contains(&hung.to_string()) {
            users.push(key);
        }
        if users.len() == 4 {
            break;
        }
    }
    assert!(
        !users.is_empty(),
        "some of 200 users map to the hung replica"
    );
    let started = std::time::Instant::now();
    let calls: Vec<_> = users
        .iter()
        .map(|user| {
            let (http, user, addr) = (http.clone(), user.clone(), gw.addr);
            tokio::spawn(async move { http.ping(addr, &user).await })
        })
        .collect();
    for (user, call) in users.iter().zip(calls) {
        let answer = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("answered within 10 s, not after the 30 s route timeout")
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "it did wait on the hung replica first: {:?}",
            started.elapsed()
        );
        // It went to the user's home in the table without the hung replica, where its next
        // request goes and finds its cache warm: one move, one first call.
        let home = lookup(user.clone()).await;
        let served_by = answer.host.as_deref().unwrap();
        let index: usize = served_by.trim_start_matches("svc-").parse().unwrap();
        assert!(
            home.contains(&healthy[index].addr.to_string()),
            "{user} served by {served_by}, its new home is {home}"
        );
        let again = http.ping(gw.addr, user).await;
        assert_eq!(again.host.as_deref(), Some(served_by), "{user} moved again");
        assert_eq!(
            again.cache.as_deref(),
            Some("hit"),
            "{user} warm where it went"
        );
    }
}
