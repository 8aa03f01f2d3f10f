//! An idle HTTP/1.1 keep-alive connection holds its socket and little else.
//!
//! hyper's HTTP/1.1 connection keeps a write buffer (8 KiB, from its start) and a read buffer
//! (8 KiB, from its first read) for its whole life, its state beside them: ~16 KiB of every idle
//! keep-alive connection, where nginx frees its buffers between requests. Here, once the idle
//! guard's sweep finds a connection with no request in flight ([`Watch::rest_when_idle`]: at
//! most one sweep period, ≤ 1 s, after its last answer), hyper's connection is taken apart if
//! it is waiting for the next request with nothing left to write, and the socket alone waits
//! for that request's first bytes ([`Batched::poll_readable`]), which a new hyper connection
//! then reads. A connection rests at most once per request (the request arms it, [`arm`]) and
//! once per sweep period: the cost of a new hyper connection (a few allocations, measured in
//! `bench/peers-instructions.sh` among the rest) is not paid per request of a busy connection.
//!
//! Only between messages: after a request with a body hyper may still be reading that body
//! when the answer has been sent, so such a request turns resting off until the next request
//! without one ([`Watch::cancel_rest`]). The bytes of a next request already read (pipelined,
//! or a head trickled in) are copied and handed to the new connection first; the header size
//! limit counts them again there, and the idle guard's timeout still runs from the last
//! answer. TLS connections do not rest (rustls may hold bytes read). Everything else stays as it was: the idle guard
//! still closes the connection at its timeout (aborting the task), evicts it at the connection
//! limit, and tells it to close on drain (at rest: closed at once).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use conn_guard::Watch;
use http::Request;
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::body::BoxError;
use crate::worker::outbox::Batched;

/// Serves one plain HTTP/1.1 connection with `service` until it ends or, once
/// `watch.should_close()`, gracefully; at rest whenever the idle guard finds it idle (see the
/// module's doc).
pub(super) async fn serve<S>(
    builder: &http1::Builder,
    io: Batched,
    mut service: S,
    watch: &Watch,
    rested: impl Fn(),
) -> Result<(), BoxError>
where
    S: hyper::service::HttpService<Incoming, ResBody = UnsyncBoxBody<Bytes, BoxError>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let quiet = Quiet::new(io);
    let last = quiet.last.clone();
    let mut io = TokioIo::new(quiet);
    loop {
        // Boxed: at rest, this task keeps only the socket.
        let mut conn = Box::new(builder.serve_connection(io, service).with_upgrades());
        let may_rest = || watch.take_rest() && watch.is_idle() && waiting_for_a_request(&last);
        if let Some(ended) = drive(&mut *conn, watch, may_rest).await {
            return ended.map_err(Into::into);
        }
        // `None` only once upgraded, and an upgraded connection has ended.
        let Some(parts) = conn.into_parts() else {
            return Ok(());
        };
        (io, service) = (parts.io, parts.service);
        // Not again before the next request: a request head trickled in is copied once.
        watch.cancel_rest();
        rested();
        let quiet = io.inner_mut();
        quiet.last.store(0, Ordering::Relaxed);
        if !parts.read_buf.is_empty() {
            // Copied: the read buffer's 8 KiB go now.
            quiet.replay = Bytes::copy_from_slice(&parts.read_buf);
            continue;
        }
        drop(parts.read_buf);
        quiet.io.release();
        let woken = poll_fn(|cx| {
            watch.register_waker(cx.waker());
            if watch.should_close() {
                return Poll::Ready(None);
            }
            quiet.io.poll_readable(cx).map(Some)
        });
        match woken.await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return quiet.io.shutdown().await.map_err(Into::into),
        }
    }
}

/// Tells the idle guard whether the connection of `req`, served by [`serve`], may rest once
/// idle: only after a request without a body, since hyper may read a body after its answer.
/// Called for each request.
pub(super) fn arm(watch: &Watch, req: &Request<Incoming>) {
    if req.body().is_end_stream() {
        watch.rest_when_idle();
    } else {
        watch.cancel_rest();
    }
}

/// Drives `conn` until it ends (`Some`) or, at a poll that leaves it pending, `may_rest()`
/// (`None`). Once `watch.should_close()`, shuts it down gracefully (after the answer in
/// progress) and no longer asks `may_rest`.
async fn drive<I, S>(
    conn: &mut http1::UpgradeableConnection<I, S>,
    watch: &Watch,
    may_rest: impl Fn() -> bool,
) -> Option<hyper::Result<()>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = UnsyncBoxBody<Bytes, BoxError>>,
    S::Error: Into<BoxError>,
{
    let mut closing = false;
    poll_fn(|cx| {
        if !closing {
            watch.register_waker(cx.waker());
            if watch.should_close() {
                closing = true;
                Pin::new(&mut *conn).graceful_shutdown();
            }
        }
        if let Poll::Ready(ended) = Pin::new(&mut *conn).poll(cx) {
            return Poll::Ready(Some(ended));
        }
        if !closing && may_rest() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// hyper's last call on the socket was a read that found nothing, after everything it had to
/// write was written, and it has not begun to shut the socket down: it waits for a request.
fn waiting_for_a_request(last: &AtomicU8) -> bool {
    last.load(Ordering::Relaxed) == READ_PENDING
}

/// hyper's socket: a [`Batched`] that notes what hyper last did with it
/// ([`waiting_for_a_request`]), and first gives back the bytes of `replay`.
struct Quiet {
    io: Batched,
    /// Shared with [`serve`]: hyper holds this.
    last: Arc<AtomicU8>,
    /// Read already, not yet given to hyper (a pipelined request's first bytes).
    replay: Bytes,
}

/// hyper's last read found nothing.
const READ_PENDING: u8 = 1;
/// hyper wrote since its last successful flush.
const UNFLUSHED: u8 = 2;
/// hyper began to shut the socket down.
const SHUT: u8 = 4;

impl Quiet {
    fn new(io: Batched) -> Self {
        Self {
            io,
            last: Arc::default(),
            replay: Bytes::new(),
        }
    }

    /// Sets the bits of `set`, clears those of `clear`.
    fn note(&self, set: u8, clear: u8) {
        let last = self.last.load(Ordering::Relaxed);
        let now = (last | set) & !clear;
        if now != last {
            self.last.store(now, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Quiet {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => {
                self.note(READ_PENDING, 0);
                Poll::Pending
            }
            ready => {
                self.note(0, READ_PENDING);
                ready
            }
        }
    }
}

impl AsyncWrite for Quiet {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.note(UNFLUSHED, READ_PENDING);
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.note(UNFLUSHED, READ_PENDING);
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.note(0, UNFLUSHED);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.note(SHUT, READ_PENDING);
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
