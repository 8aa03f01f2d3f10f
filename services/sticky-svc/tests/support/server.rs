//! One sticky-svc on 127.0.0.1:0 in the test's runtime, started from command-line flags (over
//! HTTPS with `--tls-cert`/`--tls-key`), and a keep-alive HTTP/1.1 client.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sticky_svc::config::Cli;
use sticky_svc::serve::Drained;
use sticky_svc::shutdown::Readiness;
use sticky_svc::tls::Tls;
use sticky_svc::{AppState, ServeOptions, Workload, app, serve, serve_tls};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; `state` is the one it serves, for tests to observe.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    pub stop: oneshot::Sender<()>,
    pub done: JoinHandle<Drained>,
}

/// Starts the server with the command line's defaults, changed by `flags`.
pub async fn start(flags: &[&str]) -> Server {
    let cli = Cli::try_parse_from(["sticky-svc"].iter().chain(flags)).unwrap();
    let readiness = Readiness::new();
    let workload = Workload {
        host: "socket-test".into(),
        first_call_cost: cli.serve.first_call_cost,
        cache_capacity: cli.serve.cache_capacity,
    };
    let state = AppState::with_limits(workload, cli.serve.limits(), readiness.clone()).unwrap();
    let options = ServeOptions {
        grace: cli.serve.shutdown_grace,
        max_header_bytes: cli.serve.max_header_bytes,
        header_read_timeout: cli.serve.header_read_timeout,
        readiness,
    };
    let tls = cli.serve.tls_files().unwrap().map(|(cert, key)| {
        let mut tls = Tls::from_pem_files(cert, key).unwrap();
        tls.handshake_timeout = cli.serve.tls_handshake_timeout;
        tls
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = app(state.clone());
    let done = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        match tls {
            Some(tls) => serve_tls(listener, served, options, tls, shutdown).await,
            None => serve(listener, served, options, shutdown).await,
        }
        .unwrap()
    });
    Server {
        addr,
        state,
        stop,
        done,
    }
}

/// Waits until `holds` is true, letting the server's tasks run meanwhile; fails after 5 s.
/// It yields rather than sleeps, so it returns as soon as the condition holds.
pub async fn until(what: &str, mut holds: impl FnMut() -> bool) {
    let wait = async {
        while !holds() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        panic!("still waiting for {what} after 5 s");
    }
}

/// A response, its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client(pub http1::SendRequest<Body>);

impl Client {
    /// Connects and completes the HTTP/1.1 handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Self(sender)
    }

    /// `GET path`, with `x-user` when given.
    pub async fn get(&mut self, path: &str, user: Option<&str>) -> Reply {
        let mut request = Request::get(path).header("host", "test");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        self.0.ready().await.unwrap();
        let response = self
            .0
            .send_request(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }
}
