//! One HTTP/1.1 client connection on the [`codec`](super::codec), over any byte stream
//! (`Io` in the pool, a `tokio::io::duplex` in tests), driven by whoever polls it: the request
//! future while it waits for the response head, then the response body.
//!
//! Why not hyper's client connection (issue 21, CPU per request): even driven inline (see
//! `upstream`), a request through `hyper::client::conn::http1` goes through its dispatcher:
//! the request crosses a `want`-signalled channel from `SendRequest` to `Connection`, the
//! response head comes back through a oneshot, and every body chunk through the `Incoming`
//! body's channel, each with its wake-ups and atomics; its encoder also buffers the head in a
//! write buffer of its own. Here the request is encoded straight into the write buffer and the
//! response decoded straight out of the read buffer, in the polling task. The saving is to be
//! measured with `bench/peers-instructions.sh` (instructions per proxied request).
//!
//! What hyper defends against is kept, case by case, and `tests.rs` feeds both the same bytes
//! to show it (`codec` lists where this one is stricter):
//! - the head is written in one write with the body bytes ready at once (one `writev` per
//!   small request), then the body streams; a body longer or shorter than its
//!   `content-length` fails the exchange and the connection;
//! - a connection is reused only when its response was read to the end, its framing and
//!   `connection`/version allow it, nothing more was read after it, and nothing failed;
//! - an idle connection is polled by nobody: before a request is written the socket is read
//!   once (a close, an error or stray bytes: the request is handed back unsent), and the pool's
//!   sweep reads it the same way;
//! - the read buffer grows by [`READ_CHUNK`] and is kept between responses: heads and body
//!   frames are slices of it, not copies, and once they are dropped the next `reserve` takes
//!   the same memory back instead of allocating (releasing it at each response's end cost an
//!   allocation and a free per request, ~400 instructions of ~30 000). An idle pooled
//!   connection so holds up to 8 KiB: there are at most as many as requests were in flight at
//!   once (and `MAX_IDLE_PER_ENDPOINT`), far fewer than client connections;
//! - a body that waits registers the task's waker through the read, as any read does.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
#[cfg(test)]
use http::Request;
use http::request::Parts;
use http::{Method, Response};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::codec::{self, CodecError, Decoded, Decoder, Framing, MAX_HEAD};
use crate::body::Body;

/// How much is read at a time (hyper's initial read size).
const READ_CHUNK: usize = 8 * 1024;
/// Body frames up to this size are copied behind the head (one write for both); larger ones
/// are written from their own buffer.
const COPY_MAX: usize = 8 * 1024;
/// A write buffer grown past this is not kept while the connection idles.
const KEEP_WRITE: usize = 16 * 1024;

/// Where the connection is in its exchange.
#[derive(Debug)]
enum Reading {
    /// Between exchanges: only a reusable connection is here.
    Idle,
    /// Waiting for the response head; `partial`: the buffer's length at the last incomplete
    /// parse.
    Head {
        partial: Option<usize>,
    },
    Body {
        decoder: Decoder,
        keep_alive: bool,
    },
    /// The response was read to its end and the connection may carry another.
    Done,
    /// Not reusable: failed, closed, or a response that ends the connection.
    Broken,
}

/// An HTTP/1.1 client connection.
pub struct Wire<T> {
    io: T,
    read: BytesMut,
    /// Head, framing and small body frames not yet written, from `written` on.
    write: Vec<u8>,
    written: usize,
    /// A large body frame being written from its own buffer, after `write`...
    big: Bytes,
    /// ...then this (a chunk's CRLF).
    tail: &'static [u8],
    /// The request body still to send, with its framing.
    sending: Option<(Body, Framing)>,
    /// Written bytes not flushed yet.
    dirty: bool,
    method: Method,
    reading: Reading,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Wire<T> {
    /// A connection on `io`, ready for its first request.
    pub fn new(io: T) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            written: 0,
            big: Bytes::new(),
            tail: b"",
            sending: None,
            dirty: false,
            method: Method::GET,
            reading: Reading::Idle,
        }
    }

    /// The stream it runs on.
    #[cfg(test)]
    pub fn io(&self) -> &T {
        &self.io
    }

    /// Whether the connection can carry another request: its last response was read to its
    /// end and nothing has failed (a close while idle is only seen by [`Self::poll_closed`]).
    pub fn reusable(&self) -> bool {
        matches!(self.reading, Reading::Idle | Reading::Done) && self.sending.is_none()
    }

    /// Reads an idle connection once: true when the peer closed it, it failed, or it sent
    /// bytes nobody asked for (the connection is then marked broken). The read registers
    /// `cx`'s waker, as any read does.
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.reusable() {
            return true;
        }
        let mut probe = [0u8; 8];
        let mut probe = ReadBuf::new(&mut probe);
        match Pin::new(&mut self.io).poll_read(cx, &mut probe) {
            Poll::Pending => false,
            Poll::Ready(_) => {
                self.reading = Reading::Broken;
                true
            }
        }
    }

    /// Sends the request `head` + `body` and waits for the response head; the body is then
    /// read with [`Self::poll_frame`]. The head is only read (encoded into the write buffer),
    /// so the caller keeps it for a retry without copying it first; a `Host` field is written
    /// from `host` when the head has none. `Err(Some(body))`: not sent, the connection was not
    /// usable (closed while idle); `Err(None)`: sent, or partly, and the exchange failed.
    pub async fn exchange(
        &mut self,
        head: &Parts,
        host: Option<&str>,
        body: Body,
    ) -> Result<Response<()>, Option<Body>> {
        if poll_fn(|cx| Poll::Ready(self.poll_closed(cx))).await {
            return Err(Some(body));
        }
        self.start(head, host, body).map_err(|_| None)?;
        poll_fn(|cx| self.poll_exchange(cx)).await.map_err(|_| {
            self.reading = Reading::Broken;
            None
        })
    }

    /// [`Self::exchange`] of a whole request (the tests' way to drive the codec).
    #[cfg(test)]
    pub async fn exchange_request(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<()>, Option<Request<Body>>> {
        let (parts, body) = request.into_parts();
        self.exchange(&parts, None, body)
            .await
            .map_err(|unsent| unsent.map(|body| Request::from_parts(parts, body)))
    }

    /// Encodes `parts` and keeps `body` to send.
    fn start(&mut self, parts: &Parts, host: Option<&str>, body: Body) -> Result<(), CodecError> {
        let framing = codec::request_framing(
            &parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        )?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.write.clear();
        self.written = 0;
        codec::encode_head(
            &parts.method,
            path,
            &parts.headers,
            host,
            framing,
            &mut self.write,
        );
        self.sending = match framing {
            Framing::Empty => None,
            Framing::Length(0) if body.is_end_stream() => None,
            _ => Some((body, framing)),
        };
        self.method = parts.method.clone();
        self.reading = Reading::Head { partial: None };
        Ok(())
    }

    fn poll_exchange(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<()>, CodecError>> {
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        self.poll_head(cx)
    }

    /// Writes what is staged and what the request body has ready; `Ready(Ok)` once the whole
    /// request is written and flushed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        loop {
            self.stage(cx)?;
            let staged = &self.write[self.written..];
            if staged.is_empty() && self.big.is_empty() && self.tail.is_empty() {
                if self.dirty {
                    ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(io_error)?;
                    self.dirty = false;
                }
                self.write.clear();
                self.written = 0;
                return if self.sending.is_none() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending // the body's waker is registered
                };
            }
            let slices = [
                IoSlice::new(staged),
                IoSlice::new(&self.big),
                IoSlice::new(self.tail),
            ];
            let mut n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))
                .map_err(io_error)?;
            if n == 0 {
                return Poll::Ready(Err(CodecError::Io(io::ErrorKind::WriteZero)));
            }
            self.dirty = true;
            let from_write = n.min(staged.len());
            self.written += from_write;
            n -= from_write;
            let from_big = n.min(self.big.len());
            self.big.advance(from_big);
            n -= from_big;
            self.tail = &self.tail[n.min(self.tail.len())..];
        }
    }

    /// Moves ready body frames behind the staged bytes, until a large frame or a full buffer.
    fn stage(&mut self, cx: &mut Context<'_>) -> Result<(), CodecError> {
        while self.big.is_empty() && self.tail.is_empty() && self.write.len() < KEEP_WRITE {
            let Some((body, framing)) = self.sending.as_mut() else {
                return Ok(());
            };
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Err(_))) => return Err(CodecError::RequestBody),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => return self.finish(),
            };
            // Trailers are dropped (see `codec::request_framing`).
            let data = frame.into_data().unwrap_or_default();
            let chunked = match framing {
                Framing::Length(left) => {
                    *left =
                        (left.checked_sub(data.len() as u64)).ok_or(CodecError::RequestLength)?;
                    false
                }
                _ => true,
            };
            let end = body.is_end_stream();
            if chunked && !data.is_empty() {
                codec::chunk_size(data.len(), &mut self.write);
                self.put(data, b"\r\n");
            } else if !data.is_empty() {
                self.put(data, b"");
            }
            if end {
                return self.finish();
            }
        }
        Ok(())
    }

    /// Stages `data` then `after`: copied when small, else written from its own buffer.
    fn put(&mut self, data: Bytes, after: &'static [u8]) {
        if data.len() <= COPY_MAX {
            self.write.extend_from_slice(&data);
            self.write.extend_from_slice(after);
        } else {
            self.big = data;
            self.tail = after;
        }
    }

    /// The request body ended: its last framing bytes, if all the promised bytes were sent.
    fn finish(&mut self) -> Result<(), CodecError> {
        match self.sending.take() {
            Some((_, Framing::Length(left))) if left != 0 => Err(CodecError::RequestLength),
            Some((_, Framing::Chunked)) if self.big.is_empty() && self.tail.is_empty() => {
                self.write.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
            Some((_, Framing::Chunked)) => {
                // Behind a large frame: the end goes with its CRLF.
                self.tail = b"\r\n0\r\n\r\n";
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response<()>, CodecError>> {
        loop {
            let Reading::Head { partial } = &mut self.reading else {
                return Poll::Ready(Err(CodecError::Closed));
            };
            if partial.is_none_or(|prev| codec::maybe_complete(&self.read, prev))
                && let Some(head) = codec::parse_head(&mut self.read, &self.method)?
            {
                self.reading = Reading::Body {
                    decoder: head.body,
                    keep_alive: head.keep_alive,
                };
                self.settle();
                return Poll::Ready(Ok(head.response));
            }
            if self.read.len() >= MAX_HEAD {
                return Poll::Ready(Err(CodecError::HeadTooLarge));
            }
            // Only what comes after this is scanned for the end of the head.
            *partial = (!self.read.is_empty()).then_some(self.read.len());
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(CodecError::Closed));
            }
        }
    }

    /// Reads once into the buffer; `Ok(0)`: the peer closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, CodecError>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read).map_err(io_error)
    }

    /// The next response body frame; `None` at its end. A failure leaves the connection broken.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CodecError>>> {
        // The request body may still be streaming (a replica may answer before it has read
        // it all): keep sending it.
        if self.sending.is_some()
            && let Poll::Ready(Err(e)) = self.poll_send(cx)
        {
            self.reading = Reading::Broken;
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            let Reading::Body { decoder, .. } = &mut self.reading else {
                return Poll::Ready(None);
            };
            let decoded = match decoder.decode(&mut self.read) {
                Ok(Decoded::More) => match self.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => decoder_closed(&self.reading),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(e)) => Err(e),
                },
                other => other,
            };
            return Poll::Ready(match decoded {
                Ok(Decoded::Data(data)) => {
                    self.settle();
                    Some(Ok(Frame::data(data)))
                }
                Ok(Decoded::Trailers(trailers)) => Some(Ok(Frame::trailers(trailers))),
                Ok(Decoded::End) => {
                    self.end();
                    None
                }
                Ok(Decoded::More) => unreachable!("handled above"),
                Err(e) => {
                    self.reading = Reading::Broken;
                    Some(Err(e))
                }
            });
        }
    }

    /// After a frame: a body that just reached its end ends the exchange at once, so the
    /// connection can go back to the pool even if nobody polls for the end.
    fn settle(&mut self) {
        if let Reading::Body { decoder, .. } = &self.reading
            && decoder.is_end()
        {
            self.end();
        }
    }

    /// The response was read to its end.
    fn end(&mut self) {
        let keep_alive = matches!(
            self.reading,
            Reading::Body {
                keep_alive: true,
                ..
            }
        );
        let clean = keep_alive && self.read.is_empty() && self.sending.is_none();
        self.reading = if clean {
            Reading::Done
        } else {
            Reading::Broken
        };
        if self.write.capacity() > KEEP_WRITE {
            self.write = Vec::new();
        }
    }

    /// Whether the response body has nothing more to give.
    pub fn is_end_stream(&self) -> bool {
        !matches!(self.reading, Reading::Body { .. } | Reading::Head { .. })
    }

    /// The response body's size, exact for a `content-length` body.
    pub fn size_hint(&self) -> SizeHint {
        match &self.reading {
            Reading::Body { decoder, .. } => match decoder.exact() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            _ => SizeHint::with_exact(0),
        }
    }
}

/// The peer closed while the body wanted more.
fn decoder_closed(reading: &Reading) -> Result<Decoded, CodecError> {
    match reading {
        Reading::Body { decoder, .. } => decoder.closed(),
        _ => Err(CodecError::Closed),
    }
}

fn io_error(e: io::Error) -> CodecError {
    CodecError::Io(e.kind())
}
