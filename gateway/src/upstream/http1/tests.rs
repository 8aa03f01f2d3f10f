//! The codec against hyper's client: the same bytes fed to both over a `tokio::io::duplex`
//! (`differential`: a table of valid and hostile responses, and the requests each writes;
//! `fuzz`: generated ones), and the connection's own behaviour (reuse, idle close, waking).
//!
//! Time is paused: a client that waits for bytes that never come times out at once.

mod differential;
mod fuzz;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::codec::MAX_HEAD;
use super::wire::Wire;
use crate::body::{Body, boxed, empty};

/// How long a client may wait for bytes (virtual time).
const WAIT: Duration = Duration::from_secs(5);

/// The answer to a second request on the same connection, when a client makes one.
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond";

/// What a client made of a response byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// No response head: rejected, or the peer closed.
    Rejected,
    /// No response head within [`WAIT`].
    Hung,
    Response {
        status: u16,
        version: Version,
        /// A reason phrase other than the status's canonical one.
        reason: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        end: End,
        trailers: Option<Vec<(String, Vec<u8>)>>,
        /// A second request on the connection got its answer.
        reusable: bool,
    },
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Complete,
    Failed,
    Hung,
}

/// The deliberate differences from hyper (see `codec`'s doc), applied to hyper's outcome for
/// `stream`: what this codec must have made of it.
pub(super) fn deliberate(hyper: Outcome, stream: &[u8]) -> Outcome {
    let mut adjusted = hyper;
    let Outcome::Response {
        status,
        headers,
        reusable,
        ..
    } = &mut adjusted
    else {
        return adjusted;
    };
    if *status == 101 || final_head_len(stream).is_some_and(|len| len > MAX_HEAD) {
        return Outcome::Rejected;
    }
    let has = |name: &str| headers.iter().any(|(n, _)| n == name);
    if has("transfer-encoding") && has("content-length") {
        headers.retain(|(n, _)| n != "content-length");
        *reusable = false;
    }
    adjusted
}

/// The length of the first non-1xx head in `stream`.
fn final_head_len(mut stream: &[u8]) -> Option<usize> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(stream).ok()? else {
            return None;
        };
        match response.code? {
            100 | 102..=199 => stream = &stream[len..],
            _ => return Some(len),
        }
    }
}

/// A server's side of one case: the request is read, `bytes` written (then the connection
/// closed when `close`), and a second request answered with [`SECOND`].
pub(super) async fn serve(mut io: DuplexStream, bytes: Vec<u8>, close: bool) {
    if read_head(&mut io).await.is_none() {
        return;
    }
    if io.write_all(&bytes).await.is_err() || close {
        return;
    }
    if read_head(&mut io).await.is_some() {
        let _ = io.write_all(SECOND).await;
    }
    // Held open until the client is done: a close is a case of its own.
    let mut rest = Vec::new();
    let _ = io.read_to_end(&mut rest).await;
}

/// Reads up to the end of a request head (the cases' requests have no body).
async fn read_head(io: &mut DuplexStream) -> Option<()> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => seen.push(byte[0]),
            _ => return None,
        }
    }
    Some(())
}

/// A stream whose reads return at most the next of `sizes` bytes (cycling), to split a
/// response at every place.
pub(super) struct Trickle {
    io: DuplexStream,
    sizes: Vec<usize>,
    next: usize,
}

impl Trickle {
    pub(super) fn new(io: DuplexStream, sizes: Vec<usize>) -> Self {
        Self { io, sizes, next: 0 }
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(&size) = this.sizes.get(this.next % this.sizes.len().max(1)) else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let mut small = vec![0u8; size.clamp(1, buf.remaining().max(1))];
        let mut small = ReadBuf::new(&mut small);
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut small))?;
        buf.put_slice(small.filled());
        this.next += 1;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pub(super) fn request(method: &Method) -> Request<Body> {
    Request::builder()
        .method(method.clone())
        .uri("/path?q=1")
        .header("host", "replica.invalid")
        .body(empty())
        .unwrap()
}

fn header_list(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// The response `bytes` as hyper's client sees it.
pub(super) async fn hyper_outcome(
    bytes: Vec<u8>,
    close: bool,
    method: Method,
    sizes: Vec<usize>,
) -> Outcome {
    let (client, server) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(serve(server, bytes, close));
    let io = TokioIo::new(Trickle::new(client, sizes));
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
        .await
        .unwrap();
    // Debug builds of hyper panic on what they consider internal errors: a rejection too.
    let conn = tokio::spawn(conn);
    let outcome = match tokio::time::timeout(WAIT, send.send_request(request(&method))).await {
        Err(_) => Outcome::Hung,
        Ok(Err(_)) => Outcome::Rejected,
        Ok(Ok(response)) => {
            let (parts, mut body) = response.into_parts();
            let (data, end, trailers) = read_body(|cx| {
                Pin::new(&mut body)
                    .poll_frame(cx)
                    .map(|f| f.map(|f| f.map_err(drop)))
            })
            .await;
            let reusable = end == End::Complete && {
                let second = async {
                    send.ready().await.ok()?;
                    let response = send.send_request(request(&Method::GET)).await.ok()?;
                    response
                        .into_body()
                        .collect()
                        .await
                        .ok()
                        .map(|b| b.to_bytes())
                };
                matches!(tokio::time::timeout(WAIT, second).await, Ok(Some(b)) if b == "second")
            };
            Outcome::Response {
                status: parts.status.as_u16(),
                version: parts.version,
                reason: parts
                    .extensions
                    .get::<hyper::ext::ReasonPhrase>()
                    .map(|r| r.as_bytes().to_vec()),
                headers: header_list(&parts.headers),
                body: data,
                end,
                trailers,
                reusable,
            }
        }
    };
    conn.abort();
    server.abort();
    outcome
}

/// The response `bytes` as [`Wire`] sees it.
pub(super) async fn our_outcome(
    bytes: Vec<u8>,
    close: bool,
    method: Method,
    sizes: Vec<usize>,
) -> Outcome {
    let (client, server) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(serve(server, bytes, close));
    let mut wire = Wire::new(Trickle::new(client, sizes));
    let outcome = match tokio::time::timeout(WAIT, wire.exchange_request(request(&method))).await {
        Err(_) => Outcome::Hung,
        Ok(Err(_)) => Outcome::Rejected,
        Ok(Ok(response)) => {
            let (data, end, trailers) =
                read_body(|cx| wire.poll_frame(cx).map(|f| f.map(|f| f.map_err(drop)))).await;
            let reusable = end == End::Complete && wire.reusable() && {
                let second = async {
                    let response = wire.exchange_request(request(&Method::GET)).await.ok()?;
                    let (data, end, _) =
                        read_body(|cx| wire.poll_frame(cx).map(|f| f.map(|f| f.map_err(drop))))
                            .await;
                    (response.status() == 200 && end == End::Complete).then_some(data)
                };
                matches!(tokio::time::timeout(WAIT, second).await, Ok(Some(b)) if b == b"second")
            };
            Outcome::Response {
                status: response.status().as_u16(),
                version: response.version(),
                reason: response
                    .extensions()
                    .get::<hyper::ext::ReasonPhrase>()
                    .map(|r| r.as_bytes().to_vec()),
                headers: header_list(response.headers()),
                body: data,
                end,
                trailers,
                reusable,
            }
        }
    };
    server.abort();
    outcome
}

type Trailers = Option<Vec<(String, Vec<u8>)>>;

/// Polls body frames until the end, a failure or [`WAIT`] without one.
async fn read_body(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ()>>>,
) -> (Vec<u8>, End, Trailers) {
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        match tokio::time::timeout(WAIT, poll_fn(&mut poll)).await {
            Err(_) => return (data, End::Hung, trailers),
            Ok(None) => return (data, End::Complete, trailers),
            Ok(Some(Err(()))) => return (data, End::Failed, trailers),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => {
                    if let Ok(map) = frame.into_trailers() {
                        trailers = Some(header_list(&map));
                    }
                }
            },
        }
    }
}

/// A request body of these frames, its size unknown, each frame after a yield.
pub(super) struct Frames(pub(super) VecDeque<Bytes>, pub(super) bool);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Pending every other poll, as a body arriving from a client is.
        self.1 = !self.1;
        if self.1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

pub(super) fn frames(parts: &[&[u8]]) -> Body {
    boxed(Frames(
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
        false,
    ))
}

#[tokio::test(start_paused = true)]
async fn a_connection_closed_while_idle_hands_the_request_back_unsent() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut wire = Wire::new(client);
    let answer = tokio::spawn(async move {
        read_head(&mut server).await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        server // closed when dropped by the test
    });
    wire.exchange_request(request(&Method::GET)).await.unwrap();
    let (body, end, _) =
        read_body(|cx| wire.poll_frame(cx).map(|f| f.map(|f| f.map_err(drop)))).await;
    assert_eq!((body.as_slice(), end), (&b"ok"[..], End::Complete));
    assert!(wire.reusable());
    drop(answer.await.unwrap());
    let unsent = wire.exchange_request(request(&Method::GET)).await;
    assert!(matches!(unsent, Err(Some(_))), "the request comes back");
    assert!(!wire.reusable());
}

#[tokio::test(start_paused = true)]
async fn a_close_after_the_request_was_written_is_a_failure_not_a_retry() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut wire = Wire::new(client);
    tokio::spawn(async move {
        read_head(&mut server).await;
    });
    let sent = wire.exchange_request(request(&Method::GET)).await;
    assert!(matches!(sent, Err(None)), "sent, so not handed back");
}

#[tokio::test(start_paused = true)]
async fn a_waiting_body_is_woken_by_its_bytes_not_polled_in_a_loop() {
    let (client, mut server) = tokio::io::duplex(4096);
    let mut wire = Wire::new(client);
    tokio::spawn(async move {
        read_head(&mut server).await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.write_all(b"cd").await.unwrap();
        std::future::pending::<()>().await;
    });
    wire.exchange_request(request(&Method::GET)).await.unwrap();
    let mut polls = 0;
    let mut data = Vec::new();
    while let Some(frame) = poll_fn(|cx| {
        polls += 1;
        wire.poll_frame(cx)
    })
    .await
    {
        data.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(data, b"abcd");
    assert!(
        polls <= 4,
        "{polls} polls: each wait ends with a wake-up, not a spin"
    );
    assert!(wire.reusable());
}

#[tokio::test(start_paused = true)]
async fn a_request_body_longer_or_shorter_than_its_length_fails_the_exchange() {
    for parts in [&[&b"abc"[..]][..], &[b"abcdef"]] {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut wire = Wire::new(client);
        tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = server.read_to_end(&mut all).await;
        });
        let mut request = Request::post("/").body(frames(parts)).unwrap();
        request
            .headers_mut()
            .insert("content-length", http::HeaderValue::from_static("5"));
        let sent = tokio::time::timeout(WAIT, wire.exchange_request(request)).await;
        assert!(matches!(sent, Ok(Err(None))), "{parts:?}");
        assert!(!wire.reusable());
    }
}

#[tokio::test]
async fn the_endpoint_is_the_host_only_when_the_head_names_none() {
    for (named, expected) in [
        (None, "host: 10.0.0.7:8080\r\n"),
        (Some("svc.example"), "host: svc.example\r\n"),
    ] {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut wire = Wire::new(client);
        let mut request = Request::get("http://absolute.invalid/path?q=1").body(empty());
        if let Some(name) = named {
            request = Request::get("/path?q=1").header("host", name).body(empty());
        }
        let (head, body) = request.unwrap().into_parts();
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the end of the head");
                seen.extend_from_slice(&buf[..n]);
            }
            // The peer stays open: a close would end the exchange first.
            (String::from_utf8(seen).unwrap(), server)
        });
        // No answer ever comes: the exchange waits while the peer reads what was written.
        let written = tokio::select! {
            _ = wire.exchange(&head, Some("10.0.0.7:8080"), body) => panic!("no answer was sent"),
            read = tokio::time::timeout(WAIT, reader) => read.unwrap().unwrap().0,
        };
        assert!(
            written.starts_with("GET /path?q=1 HTTP/1.1\r\n"),
            "{written}"
        );
        assert_eq!(written.matches("host: ").count(), 1, "{written}");
        assert!(written.contains(expected), "{written}");
    }
}
