//! Tiny servers on 127.0.0.1:0 for the hostile tests, each recording what it was sent.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What a server was sent.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// `x-user` of every request.
    pub users: Mutex<BTreeSet<String>>,
    /// HTTP version of every request.
    pub versions: Mutex<BTreeSet<String>>,
    /// Raw servers: the bytes each connection sent.
    pub bytes: Mutex<Vec<Vec<u8>>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// HTTP/1.1 and h2c (prior knowledge) on one port. The first `limit` connections get 200 to
/// every request, later ones `429` with `connection: close`. With `close_after`, each connection
/// is closed by the server that long after it was accepted.
pub async fn http(close_after: Option<Duration>, limit: usize) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let accepted = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let over = accepted.connections.fetch_add(1, Ordering::SeqCst) >= limit;
            tokio::spawn(serve(stream, over, close_after, Arc::clone(&accepted)));
        }
    });
    (addr, seen)
}

async fn serve(stream: TcpStream, over: bool, close_after: Option<Duration>, seen: Arc<Seen>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let user = request
            .headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        seen.users.lock().unwrap().insert(user.to_owned());
        let version = if request.version() == Version::HTTP_2 {
            "h2"
        } else {
            "http/1.1"
        };
        seen.versions.lock().unwrap().insert(version.to_owned());
        let mut response = Response::new(Full::new(Bytes::from_static(b"pong")));
        if over {
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            response
                .headers_mut()
                .insert(http::header::CONNECTION, "close".parse().unwrap());
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    match close_after {
        Some(after) => drop(tokio::time::timeout(after, connection).await),
        None => drop(connection.await),
    }
}

/// Reads whatever each connection sends for `window` after accepting it, records it, then
/// writes `reply` (if not empty) and closes the connection.
pub async fn raw(window: Duration, reply: &'static [u8]) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let accepted = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&accepted);
            tokio::spawn(async move {
                let deadline = Instant::now() + window;
                let mut got = Vec::new();
                let mut buf = [0; 4096];
                while let Ok(Ok(n @ 1..)) =
                    tokio::time::timeout_at(deadline, stream.read(&mut buf)).await
                {
                    got.extend_from_slice(&buf[..n]);
                }
                seen.bytes.lock().unwrap().push(got);
                if !reply.is_empty() {
                    let _ = stream.write_all(reply).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// An address nothing listens on.
pub async fn nothing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
