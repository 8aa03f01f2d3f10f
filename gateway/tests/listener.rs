//! The shared accept loop over real sockets: h1 and h2c, limits, graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::body::{Body, full};
use gateway::proxy::listener::{Limits, serve};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

async fn handler(req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    match req.uri().path() {
        "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
        "/stream" => return Response::new(BodyExt::boxed_unsync(Trickle::new())),
        _ => {}
    }
    Response::new(full(format!("{:?} from {}", req.version(), peer.ip())))
}

/// A body sent in two parts 600 ms apart: "a", then "b".
struct Trickle {
    sent: u8,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Trickle {
    fn new() -> Self {
        Self {
            sent: 0,
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(600))),
        }
    }
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = gateway::body::BoxError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match self.sent {
            0 => {
                self.sent = 1;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"a")))))
            }
            1 => {
                std::task::ready!(self.pause.as_mut().poll(cx));
                self.sent = 2;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"b")))))
            }
            _ => Poll::Ready(None),
        }
    }
}

type Running = (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>);

async fn start(limits: Limits) -> Running {
    start_with(limits, handler).await
}

async fn start_with<H, F>(limits: Limits, handler: H) -> Running
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
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
    // The handler holds each request until released, and says when one has reached it.
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (addr, _stop, _task) = start_with(
        Limits {
            max_connections: 1,
            ..Limits::default()
        },
        {
            let (arrived, release) = (arrived.clone(), release.clone());
            move |req, peer| {
                let (arrived, release) = (arrived.clone(), release.clone());
                async move {
                    arrived.notify_one();
                    release.notified().await;
                    handler(req, peer).await
                }
            }
        },
    )
    .await;
    // Hold the only slot with a request in flight (an idle one would make room instead).
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    arrived.notified().await;

    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = second.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 429"), "got {head:?}");
    assert!(head.contains("too many connections"));
    release.notify_one();
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    // The handler says when a request has reached it: the shutdown comes while one is in flight.
    let arrived = Arc::new(Notify::new());
    let (addr, stop, task) = start_with(Limits::default(), {
        let arrived = arrived.clone();
        move |req, peer| {
            arrived.notify_one();
            handler(req, peer)
        }
    })
    .await;
    let slow = tokio::spawn(get(addr, "/slow"));
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the /slow request reached the handler within 10 s");
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

#[tokio::test]
async fn the_idle_guard_cuts_a_trickled_head_but_not_a_slow_body() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop, _task) = start(limits).await;
    // A head that never ends: closed unanswered after the timeout (within two sweep periods of
    // 75 ms), not before.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .expect("closed within 3 s");
    assert_eq!(read.unwrap_or(0), 0, "closed without an answer");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed early: {waited:?}"
    );
    // A body that takes twice the timeout to send: its request is in flight until the end.
    let (status, body) = get(addr, "/stream").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ab"));
}

/// A client's first bytes alone, the rest later: the gateway tells the protocol from bytes it
/// peeks, so it must wait when they could start either.
struct SplitFirstWrite {
    stream: TcpStream,
    /// Bytes of the first write sent on their own, then a pause before the rest.
    first: usize,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    written: usize,
}

impl SplitFirstWrite {
    fn new(stream: TcpStream, first: usize) -> Self {
        Self {
            stream,
            first,
            pause: None,
            written: 0,
        }
    }
}

impl tokio::io::AsyncRead for SplitFirstWrite {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SplitFirstWrite {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::{Poll, ready};
        let this = &mut *self;
        if this.written < this.first {
            let n = buf.len().min(this.first - this.written);
            let n = ready!(std::pin::Pin::new(&mut this.stream).poll_write(cx, &buf[..n]))?;
            this.written += n;
            if this.written == this.first {
                // Pacing the client, not waiting for the server: whatever the server saw
                // first, the answer must be the same.
                this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            }
            return Poll::Ready(Ok(n));
        }
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        std::pin::Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn the_protocol_is_told_from_first_bytes_that_arrive_alone() {
    let (addr, _stop, _task) = start(Limits::default()).await;
    // "P" and "PR" could start POST, PUT, PATCH or PROPFIND as well as h2c's "PRI": HTTP/1.1.
    for first in [1, 2] {
        let stream = SplitFirstWrite::new(TcpStream::connect(addr).await.unwrap(), first);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::put(format!("http://{addr}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body, "HTTP/1.1 from 127.0.0.1",
            "first {first} byte(s) alone"
        );
    }
    // h2c's preface, its first one, two or three bytes alone: HTTP/2.
    for first in [1, 2, 3] {
        let stream = SplitFirstWrite::new(TcpStream::connect(addr).await.unwrap(), first);
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
        assert_eq!(
            body, "HTTP/2.0 from 127.0.0.1",
            "first {first} byte(s) alone"
        );
    }
    // A connection closed before its first byte ends without an answer.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
}
