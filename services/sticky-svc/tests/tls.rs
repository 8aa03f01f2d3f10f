//! The server over HTTPS on 127.0.0.1, with a CA made here: HTTP/1.1 and h2 chosen by ALPN,
//! the plain listener's defences on the decrypted stream, clients that never finish their
//! handshake, and certificate files that cannot serve.
//!
//! Where a test must know the server got somewhere (a connection counted, a place given back),
//! it waits for that condition ([`until`]), never for a guessed delay.

#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use server::{Reply, Server, start, until};
use sticky_svc::serve::Drained;
use sticky_svc::tls::{Tls, TlsError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA, and a server certificate for localhost and 127.0.0.1 it signed, in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ca = CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        ca: ca.der().clone(),
        dir,
        cert,
        key,
    }
}

/// The server over HTTPS with `pki`'s certificate, plus `flags`.
async fn start_tls(pki: &Pki, flags: &[&str]) -> Server {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut all = vec![
        "--first-call-cost",
        "0s",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    all.extend_from_slice(flags);
    start(&all).await
}

/// A TLS connection to `addr` for `localhost`, trusting only `ca`, offering `alpn`.
async fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// An HTTP/1.1 connection over TLS (ALPN `http/1.1`).
async fn https1(addr: SocketAddr, ca: &CertificateDer<'static>) -> http1::SendRequest<Body> {
    let tls = connect(addr, ca, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    sender
}

fn get(uri: &str, user: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri).header("host", "localhost");
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    request.body(Body::empty()).unwrap()
}

async fn read(response: Response<Incoming>) -> (Version, Reply) {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let reply = Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    };
    (parts.version, reply)
}

async fn get1(sender: &mut http1::SendRequest<Body>, uri: &str, user: Option<&str>) -> Reply {
    sender.ready().await.unwrap();
    let response = sender.send_request(get(uri, user)).await.unwrap();
    let (version, reply) = read(response).await;
    assert_eq!(version, Version::HTTP_11);
    reply
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
async fn http_1_1_over_tls_answers_ping_and_the_health_endpoints() {
    let pki = pki();
    let server = start_tls(&pki, &[]).await;
    let mut client = https1(server.addr, &pki.ca).await;
    let cold = get1(&mut client, "/ping", Some("ricky")).await;
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(cold.headers["x-cache"], "miss");
    assert_eq!(cold.headers["x-served-by"], "socket-test");
    let warm = get1(&mut client, "/ping", Some("ricky")).await;
    assert_eq!(warm.headers["x-cache"], "hit");
    assert_eq!(warm.headers["x-served-by"], "socket-test");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            get1(&mut client, path, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn h2_is_chosen_by_alpn() {
    let pki = pki();
    let server = start_tls(&pki, &[]).await;
    let tls = connect(server.addr, &pki.ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut call = async |path: &str, user: Option<&str>| {
        sender.ready().await.unwrap();
        let uri = format!("https://localhost{path}");
        let response = sender.send_request(get(&uri, user)).await.unwrap();
        let (version, reply) = read(response).await;
        assert_eq!(version, Version::HTTP_2);
        reply
    };
    let cold = call("/ping", Some("ricky")).await;
    assert_eq!(cold.status, StatusCode::OK);
    assert_eq!(cold.headers["x-cache"], "miss");
    let warm = call("/ping", Some("ricky")).await;
    assert_eq!(warm.headers["x-cache"], "hit");
    assert_eq!(warm.headers["x-served-by"], "socket-test");
    assert_eq!(call("/readyz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_at_the_handshake_timeout() {
    let pki = pki();
    let server = start_tls(&pki, &["--tls-handshake-timeout", "200ms"]).await;
    let connections = server.state.connections();
    // Connected, then silent: no ClientHello ever comes.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    until("the stalled connection counted", || connections.open() == 1).await;
    let took = closed_within(&mut stalled, Duration::from_secs(5))
        .await
        .expect("the server closes a handshake that never starts");
    assert!(
        took >= Duration::from_millis(150),
        "not before the timeout: {took:?}"
    );
    until("its place given back", || connections.open() == 0).await;
}

#[tokio::test]
async fn stalled_handshakes_do_not_hold_the_accept_loop_and_end_with_the_drain() {
    let pki = pki();
    let server = start_tls(&pki, &["--shutdown-grace", "300ms"]).await;
    let connections = server.state.connections();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(TcpStream::connect(server.addr).await.unwrap());
    }
    until("the stalled connections counted", || {
        connections.open() == 3
    })
    .await;
    // Their handshakes wait in their own tasks (10 s): a real client is served meanwhile.
    let mut client = https1(server.addr, &pki.ca).await;
    assert_eq!(
        get1(&mut client, "/ping", Some("ricky")).await.status,
        StatusCode::OK
    );
    assert_eq!(connections.open(), 4, "the stalled ones are still open");
    drop(client);
    until("the client's place given back", || connections.open() == 3).await;

    // Still waiting when the grace period ends: counted as abandoned, then closed.
    let _ = server.stop.send(());
    let drained = tokio::time::timeout(Duration::from_secs(5), server.done).await;
    assert_eq!(drained.unwrap().unwrap(), Drained { abandoned: 3 });
    for stream in &mut stalled {
        assert!(
            closed_within(stream, Duration::from_secs(2))
                .await
                .is_some()
        );
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_answered_503_over_tls() {
    let pki = pki();
    let server = start_tls(&pki, &["--max-connections", "1"]).await;
    let mut first = https1(server.addr, &pki.ca).await;
    assert_eq!(
        get1(&mut first, "/ping", Some("ricky")).await.status,
        StatusCode::OK
    );
    let mut second = https1(server.addr, &pki.ca).await;
    let refused = get1(&mut second, "/ping", Some("ricky")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["connection"], "close");
    assert_eq!(server.state.connections().refused(), 1);
    assert_eq!(
        get1(&mut first, "/ping", Some("ricky")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431_over_tls() {
    let pki = pki();
    let server = start_tls(&pki, &["--max-header-bytes", "16384"]).await;
    let mut client = https1(server.addr, &pki.ca).await;
    let mut request = get("/ping", Some("ricky"));
    let pad = "p".repeat(40_000).parse().unwrap();
    request.headers_mut().insert("x-pad", pad);
    client.ready().await.unwrap();
    let response = client.send_request(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[tokio::test]
async fn the_drain_closes_idle_tls_connections() {
    let pki = pki();
    let server = start_tls(&pki, &["--shutdown-grace", "5s"]).await;
    let tls = connect(server.addr, &pki.ca, &[b"h2"]).await;
    let (mut h2, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    h2.ready().await.unwrap();
    let response = h2
        .send_request(get("https://localhost/readyz", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut h1 = https1(server.addr, &pki.ca).await;
    assert_eq!(get1(&mut h1, "/readyz", None).await.status, StatusCode::OK);

    let _ = server.stop.send(());
    let drained = tokio::time::timeout(Duration::from_secs(2), server.done).await;
    assert_eq!(drained.unwrap().unwrap(), Drained { abandoned: 0 });
    assert!(
        h1.ready().await.is_err(),
        "the idle HTTP/1.1 connection is closed"
    );
}

fn load_error(cert: &Path, key: &Path) -> TlsError {
    Tls::from_pem_files(cert, key).expect_err("cannot serve")
}

#[test]
fn certificate_files_that_cannot_serve_are_errors_naming_the_file() {
    let pki = pki();
    let dir = pki.dir.path();
    let missing = dir.join("missing.pem");
    let err = load_error(&missing, &pki.key);
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all").unwrap();
    let err = load_error(&garbage, &pki.key);
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    // The certificate given as the key: PEM, but no key in it.
    let err = load_error(&pki.cert, &pki.cert);
    assert!(
        matches!(&err, TlsError::NoKey { path } if *path == pki.cert),
        "{err:?}"
    );

    // Another key than the certificate's.
    let other = dir.join("other.key");
    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&other, other_key.serialize_pem()).unwrap();
    let err = load_error(&pki.cert, &other);
    assert!(matches!(err, TlsError::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("tls.crt") && text.contains("other.key"),
        "{text}"
    );

    assert!(Tls::from_pem_files(&pki.cert, &pki.key).is_ok());
}
