//! The shared accept loop over real sockets: h1 and h2c, limits, graceful drain.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway::proxy::listener::{Limits, serve};
use gateway::proxy::{Body, full};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn handler(req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Response::new(full(format!("{:?} from {}", req.version(), peer.ip())))
}

async fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, limits, handler, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_http1_and_h2c_on_one_port() {
    let (addr, _stop, _task) = start(Limits::default()).await;
    assert_eq!(
        get(addr, "/").await,
        (StatusCode::OK, "HTTP/1.1 from 127.0.0.1".into())
    );

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "HTTP/2.0 from 127.0.0.1");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (addr, _stop, _task) = start(Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(20_000);
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let _ = stream.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "got {head:?}");
}

#[tokio::test]
async fn connections_over_the_limit_get_429() {
    let (addr, _stop, _task) = start(Limits {
        max_connections: 1,
        ..Limits::default()
    })
    .await;
    // Hold the only slot with an idle keep-alive connection.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let n = second.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 429"), "got {head:?}");
    assert!(head.contains("too many connections"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (addr, stop, task) = start(Limits::default()).await;
    let slow = tokio::spawn(get(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "the in-flight request finished");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
