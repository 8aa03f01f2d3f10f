//! HTTP/2 to an endpoint, on the `h2` crate directly rather than through hyper's client.
//!
//! hyper's HTTP/2 client hands each request through a channel to a task that owns the
//! connection, which opens the stream and spawns one more task per request to await the
//! response and pass it back through a second channel: four task wake-ups per request, and
//! ~5 000 instructions of channels and spawning (callgrind, `bench/peers-instructions.sh`).
//! Here the request's own task opens the stream and awaits the response on it; only the
//! connection's frame I/O runs on a task of its own (spawned once per connection), so a
//! request costs two wake-ups: the connection's, which writes and reads the frames of every
//! stream at once, and the request's.
//!
//! What the request path needs from a failure is whether the request may have reached the
//! endpoint ([`Failure`]): a connection that can no longer open streams gives the request back
//! untouched; a stream the endpoint refused (`REFUSED_STREAM`, or above the last stream id of
//! its `GOAWAY`) was not processed, which is Envoy's `refused-stream` retry condition.
//!
//! `connectionPool.http.idleTimeout` applies as Envoy applies it: a connection with no stream
//! open (no response being read, no request body being sent) for that long is closed; the
//! next request makes a new one.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::body::{Body, BoxError, IdleTimer, boxed};

/// Stream flow-control window offered to the endpoint (hyper's client default): a response
/// of up to 2 MiB is sent without waiting for a window update.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Connection window, shared by all streams (hyper's client default).
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Request body bytes buffered per stream before the endpoint's window opens.
const SEND_BUFFER: usize = 1024 * 1024;

/// A handle to one HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(in crate::upstream) struct Connection {
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Tells whether the connection's task has ended: it holds the receiver (dropped with the
    /// task, also when its runtime shuts down).
    alive: oneshot::Sender<()>,
    /// Streams handed out so far (`maxRequestsPerConnection`).
    streams: AtomicU32,
    /// Streams open now: their responses not read to the end (or dropped) and their request
    /// bodies not all sent.
    open: AtomicU32,
    /// When `open` last fell to 0, in nanoseconds since `born`.
    idle_since: AtomicU64,
    born: Instant,
    /// A response body with no data this long is given up (`response_idle_timeout`).
    response_idle: Option<Duration>,
}

impl Shared {
    /// How long the connection has had no stream open; None while one is.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
        Some(now.duration_since(self.born).saturating_sub(since))
    }
}

/// Counts a stream as open while it lives.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(shared))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let shared = &self.0;
        if shared.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            let since = Instant::now().duration_since(shared.born).as_nanos();
            shared
                .idle_since
                .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Release);
        }
    }
}

/// Why an exchange gave no response.
pub(super) enum Failure {
    /// The connection can open no more streams (closed, or going away); the request was not
    /// sent and is given back.
    Unsent(Box<Request<Body>>),
    /// The endpoint refused the stream without processing it.
    Refused,
    /// The stream or connection broke; the endpoint may have seen the request.
    Reset,
}

impl Connection {
    /// Handshakes over `stream` and spawns the task that does the connection's I/O, which
    /// closes it once no stream has been open for `idle_timeout`.
    pub(super) async fn handshake<T>(
        stream: T,
        idle_timeout: Duration,
        response_idle: Option<Duration>,
    ) -> Result<Self, h2::Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(SEND_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await?;
        let (alive, task) = oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            alive,
            streams: AtomicU32::new(0),
            open: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            born: Instant::now(),
            response_idle,
        });
        // h2 ends the connection once every handle is gone and its last stream is done. The
        // idle timer, a task of its own so the connection's task is not slowed by a timer
        // poll at every wake-up, aborts it (no stream is open then to lose) and ends with it.
        let mut connection = tokio::spawn(async move {
            let _task = task;
            let _ = connection.await;
        });
        let watched = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut wait = idle_timeout;
            loop {
                tokio::select! {
                    _ = &mut connection => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = match watched.idle_for(Instant::now()) {
                    Some(idle) if idle >= idle_timeout => return connection.abort(),
                    Some(idle) => idle_timeout - idle,
                    None => idle_timeout,
                };
            }
        });
        Ok(Self { send, shared })
    }

    /// Whether the connection's task has ended (peer closed, error).
    pub(in crate::upstream) fn is_closed(&self) -> bool {
        self.shared.alive.is_closed()
    }

    /// Whether both are handles to the same connection.
    pub(super) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Counts one more stream on it; true when that was the last of `max`.
    pub(super) fn take_stream(&self, max: u32) -> bool {
        self.shared.streams.fetch_add(1, Ordering::Relaxed) + 1 >= max
    }

    /// Sends `request` (absolute URI, HTTP/2 version, no connection-specific headers) on a new
    /// stream and waits for the response head. A request body is streamed by a task of its own,
    /// with the endpoint's flow control, so an early response does not wait for it.
    pub(super) async fn exchange(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        if std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .is_err()
        {
            return Err(Failure::Unsent(Box::new(request)));
        }
        let (parts, body) = request.into_parts();
        let end_of_stream = body.is_end_stream();
        let (response, stream) = self
            .send
            .send_request(Request::from_parts(parts, ()), end_of_stream)
            .map_err(|e| classify(&e))?;
        let open = Open::new(&self.shared);
        if !end_of_stream {
            tokio::spawn(pipe(body, stream, Open::new(&self.shared)));
        }
        let response = response.await.map_err(|e| classify(&e))?;
        let (parts, recv) = response.into_parts();
        let length = content_length(&parts.headers);
        Ok(Response::from_parts(
            parts,
            boxed(ResponseBody {
                recv,
                length,
                data_done: false,
                timer: self
                    .shared
                    .response_idle
                    .map(|idle| IdleTimer::new(idle, None)),
                _open: open,
            }),
        ))
    }
}

/// `Refused` for what the endpoint did not process, `Reset` otherwise.
fn classify(e: &h2::Error) -> Failure {
    let refused = e.is_remote()
        && ((e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM))
            // h2 gives a remote GOAWAY's error only to the streams above its last stream id,
            // and to requests made after it.
            || e.is_go_away());
    if refused {
        Failure::Refused
    } else {
        Failure::Reset
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Streams a request body onto its stream, within the endpoint's flow-control window. A body
/// error resets the stream (`CANCEL`) so the endpoint does not take a truncated body as whole.
async fn pipe(mut body: Body, mut stream: SendStream<Bytes>, _open: Open) {
    let cancel = |stream: &mut SendStream<Bytes>| stream.send_reset(Reason::CANCEL);
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let frame = match frame {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => return cancel(&mut stream),
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                }
                return;
            }
        };
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(granted)) => granted,
                // The stream was reset or the connection closed: nobody takes the rest.
                _ => return,
            };
            let chunk = data.split_to(granted.min(data.len()));
            let last = data.is_empty() && body.is_end_stream();
            if stream.send_data(chunk, last).is_err() || last {
                return;
            }
        }
    }
}

/// A response body read off its stream; trailers (a gRPC status) come last. Each frame read
/// gives its bytes back to the flow-control window at once: the gateway does not buffer, the
/// client's connection paces it.
struct ResponseBody {
    recv: RecvStream,
    /// What `content-length` says is left to read.
    length: Option<u64>,
    data_done: bool,
    /// `response_idle_timeout`, when set.
    timer: Option<IdleTimer>,
    _open: Open,
}

impl ResponseBody {
    fn frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.length = self.length.map(|n| n.saturating_sub(data.len() as u64));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = this.frame(cx);
        match IdleTimer::watch(polled, this.timer.as_mut(), cx) {
            Poll::Ready(Ok(frame)) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            // Given up: dropping the stream resets it.
            Poll::Ready(Err(_)) => Poll::Ready(Some(Err(super::super::http1::ResponseIdle.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            _ if self.recv.is_end_stream() => SizeHint::with_exact(0),
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
