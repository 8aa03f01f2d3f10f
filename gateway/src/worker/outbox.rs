//! Writes held to the end of the event loop's pass, so the sockets written in one pass are
//! written back to back.
//!
//! A worker's event loop wakes the tasks of every socket that became readable, then polls them
//! one after another; each reads a request (or a response) and writes what it forwards at once,
//! its own work for the request in between. The peer (a replica, a client) is woken by the first
//! of those writes and, when it runs on another CPU, has often gone back to sleep before the
//! next: one wake-up per request, paid twice (the writer's CPU sends the wake-up, the peer's
//! leaves its idle state). HAProxy queues output that its event loop sends after processing the
//! pass, and its peers sleep less. Here the first write after each read is copied into the
//! connection's outbox and queued; [`flusher`], one task per worker, writes every queued outbox
//! when it runs, which is after the tasks that were runnable when the first was queued. A peer
//! woken by the first write finds the others waiting when it runs.
//!
//! Measured with `W=1 bench/gateway-ab.sh` (the replicas' voluntary context switches per
//! request and requests/s) and `bench/peers-instructions.sh`; figures in docs/benchmarks.md.
//!
//! The outbox is bounded ([`OUTBOX`]): beyond it a write waits until the flusher has drained it.
//! While it holds bytes every write goes through it, in order; once empty, writes go straight to
//! the socket until the next read. `poll_flush` does not wait for queued bytes (they leave at the
//! end of this pass), `poll_shutdown` does. A write error the flusher meets is returned by the
//! connection's next write, flush or shutdown. A connection dropped with bytes queued still
//! sends them, unless its peer had stopped reading (a socket that takes no more is then let
//! go rather than held for a peer that may never read). On a thread with no flusher (the admin
//! listener, tests) every write goes straight to the socket.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Most bytes an outbox holds before a write waits for the flusher.
pub const OUTBOX: usize = 64 * 1024;

/// Most capacity an emptied outbox keeps for the next answer: a large answer's buffer (up to
/// [`OUTBOX`]) is not held by a connection for its life. [`Batched::release`] lets go of the
/// rest, for a connection going idle.
const KEEP: usize = 4 * 1024;

thread_local! {
    static PASS: RefCell<Option<Pass>> = const { RefCell::new(None) };
}

/// This thread's flusher: its waker and the outboxes queued since it last ran.
struct Pass {
    flusher: Waker,
    queued: Vec<Arc<Shared>>,
}

/// The write side of a connection, shared by its task and the flusher.
#[derive(Debug)]
struct Shared(Mutex<Outbox>);

#[derive(Debug)]
struct Outbox {
    half: OwnedWriteHalf,
    /// Bytes accepted and not yet written. Not empty: the flusher writes them (queued this
    /// pass, or waiting for the socket to take more), and later writes append.
    bytes: Vec<u8>,
    /// A failed write, returned by the connection's next write, flush or shutdown.
    error: Option<io::ErrorKind>,
    /// The connection's task, waiting for room in the outbox or for it to drain.
    waiting: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Outbox {
    /// Writes what it holds; true once empty (or failed), false when the socket is full (the
    /// waker of `cx` is woken when it takes more).
    fn drain(&mut self, cx: &mut Context<'_>) -> bool {
        while !self.bytes.is_empty() {
            match Pin::new(&mut self.half).poll_write(cx, &self.bytes) {
                Poll::Ready(Ok(0)) => self.fail(io::ErrorKind::WriteZero),
                Poll::Ready(Ok(n)) => {
                    self.bytes.drain(..n);
                }
                Poll::Ready(Err(error)) => self.fail(error.kind()),
                Poll::Pending => return false,
            }
        }
        if self.bytes.capacity() > KEEP {
            self.bytes = Vec::new();
        }
        if let Some(waiting) = self.waiting.take() {
            waiting.wake();
        }
        true
    }

    /// Keeps the error for the connection's next call; the unwritten bytes are dropped.
    fn fail(&mut self, error: io::ErrorKind) {
        self.error = Some(error);
        self.bytes.clear();
    }

    fn take_error(&mut self) -> io::Result<()> {
        match self.error {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }

    /// Appends as much of `bufs` as the outbox has room for; Pending (the task woken when the
    /// flusher has written some) when it has none.
    fn append(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let room = OUTBOX.saturating_sub(self.bytes.len());
        if room == 0 {
            self.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room - taken);
            self.bytes.extend_from_slice(&buf[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }
}

/// The flusher task of this thread's event loop: spawn it once per worker, before serving. It
/// never completes; when it is dropped (with the event loop) writes go straight to the socket.
pub async fn flusher() {
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            PASS.with(|pass| pass.borrow_mut().take());
        }
    }
    let _uninstall = Uninstall;
    let mut flushing: Vec<Arc<Shared>> = Vec::new();
    // Outboxes the socket would not take all of: retried when it is writable again.
    let mut blocked: Vec<Arc<Shared>> = Vec::new();
    std::future::poll_fn(|cx| {
        PASS.with(|pass| {
            let mut pass = pass.borrow_mut();
            match pass.as_mut() {
                Some(pass) => {
                    if !pass.flusher.will_wake(cx.waker()) {
                        pass.flusher = cx.waker().clone();
                    }
                    std::mem::swap(&mut flushing, &mut pass.queued);
                }
                None => {
                    *pass = Some(Pass {
                        flusher: cx.waker().clone(),
                        queued: Vec::new(),
                    })
                }
            }
        });
        for shared in flushing.drain(..) {
            if !shared.lock().drain(cx) {
                blocked.push(shared);
            }
        }
        // A connection whose task is gone (only the flusher holds it) is not waited for.
        blocked.retain(|shared| Arc::strong_count(shared) > 1 && !shared.lock().drain(cx));
        Poll::<()>::Pending
    })
    .await
}

/// Queues `shared` for this pass's flush; false when this thread has no flusher.
fn queue(shared: &Arc<Shared>) -> bool {
    PASS.with(|pass| {
        let mut pass = pass.borrow_mut();
        let Some(pass) = pass.as_mut() else {
            return false;
        };
        if pass.queued.is_empty() {
            pass.flusher.wake_by_ref();
        }
        pass.queued.push(shared.clone());
        true
    })
}

/// A TCP connection whose first write after each read waits for the end of the pass.
#[derive(Debug)]
pub struct Batched {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    /// A read returned data since the last write: the next write is queued.
    armed: bool,
}

impl Batched {
    pub fn new(stream: TcpStream) -> Self {
        let (read, half) = stream.into_split();
        Self {
            read,
            shared: Arc::new(Shared(Mutex::new(Outbox {
                half,
                bytes: Vec::new(),
                error: None,
                waiting: None,
            }))),
            armed: false,
        }
    }

    /// Lets go of the outbox's buffer when it holds nothing: for a connection going idle.
    pub fn release(&self) {
        let mut outbox = self.shared.lock();
        if outbox.bytes.is_empty() {
            outbox.bytes = Vec::new();
        }
    }

    /// Ready once the connection has bytes to read (or its end, or an error), none of them
    /// consumed: for waiting on an idle connection without a read buffer.
    pub fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut byte = [0u8; 1];
        ready!(self.read.poll_peek(cx, &mut ReadBuf::new(&mut byte)))?;
        Poll::Ready(Ok(()))
    }

    fn write(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let armed = std::mem::take(&mut self.armed);
        let mut outbox = self.shared.lock();
        outbox.take_error()?;
        if !outbox.bytes.is_empty() || (armed && queue(&self.shared)) {
            return outbox.append(cx, bufs);
        }
        Pin::new(&mut outbox.half).poll_write_vectored(cx, bufs)
    }
}

impl AsyncRead for Batched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.read).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.armed = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Batched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Does not wait for queued bytes: they are written at the end of this pass.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shared.lock().take_error())
    }

    /// Waits for the outbox to drain, then shuts the write side down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut outbox = self.shared.lock();
        outbox.take_error()?;
        if !outbox.bytes.is_empty() {
            outbox.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut outbox.half).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair on loopback: (ours, wrapped; the peer's end).
    async fn pair() -> (Batched, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, accepted) = tokio::join!(ours, listener.accept());
        (Batched::new(ours.unwrap()), accepted.unwrap().0)
    }

    /// What the peer has received so far, without waiting for more than `wait`.
    async fn received(peer: &mut TcpStream, wait: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(wait, peer.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// Starts this event loop's flusher and lets it install itself.
    async fn start_flusher() {
        tokio::spawn(flusher());
        tokio::task::yield_now().await;
    }

    /// A pair whose wrapped end has just read a request: its next write is the first after a
    /// read.
    async fn after_a_request() -> (Batched, TcpStream) {
        let (mut ours, mut peer) = pair().await;
        peer.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 7];
        ours.read_exact(&mut buf).await.unwrap();
        (ours, peer)
    }

    fn event_loop() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn without_a_flusher_writes_go_straight_to_the_socket() {
        event_loop().block_on(async {
            let (mut ours, mut peer) = after_a_request().await;
            ours.write_all(b"answer").await.unwrap();
            assert!(ours.shared.lock().bytes.is_empty());
            assert_eq!(
                received(&mut peer, Duration::from_millis(200)).await,
                b"answer"
            );
        });
    }

    #[test]
    fn the_first_write_after_a_read_leaves_when_the_flusher_runs_and_order_is_kept() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = after_a_request().await;
            ours.write_all(b"first ").await.unwrap();
            ours.write_all(b"second ").await.unwrap();
            // Queued, not written: this task has not let the flusher run yet.
            assert_eq!(ours.shared.lock().bytes, b"first second ");
            tokio::task::yield_now().await;
            assert!(
                ours.shared.lock().bytes.is_empty(),
                "the flusher wrote the outbox"
            );
            // No read since: straight to the socket, after what was queued.
            ours.write_all(b"third").await.unwrap();
            assert!(ours.shared.lock().bytes.is_empty());
            assert_eq!(
                received(&mut peer, Duration::from_millis(200)).await,
                b"first second third"
            );
        });
    }

    #[test]
    fn a_write_larger_than_the_outbox_waits_for_room_and_arrives_whole() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = pair().await;
            peer.write_all(b"go").await.unwrap();
            let mut buf = [0u8; 2];
            ours.read_exact(&mut buf).await.unwrap();
            let body: Vec<u8> = (0..8 * OUTBOX).map(|i| (i % 251) as u8).collect();
            let expected = body.clone();
            let writer = tokio::spawn(async move {
                ours.write_all(&body).await.unwrap();
                ours.shutdown().await.unwrap();
                ours
            });
            // Read slowly at first, so the socket fills and the outbox has to wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "the bytes arrive in order");
            writer.await.unwrap();
        });
    }

    #[test]
    fn an_outbox_emptied_after_a_large_answer_lets_its_buffer_go() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = after_a_request().await;
            let answer = vec![7u8; 4 * KEEP];
            ours.write_all(&answer).await.unwrap();
            assert!(ours.shared.lock().bytes.capacity() >= answer.len());
            tokio::task::yield_now().await;
            assert_eq!(ours.shared.lock().bytes.capacity(), 0, "freed once written");
            let got = received(&mut peer, Duration::from_millis(200)).await;
            assert_eq!(got, answer);
        });
    }

    #[test]
    fn release_lets_go_of_an_empty_outbox_only() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = after_a_request().await;
            ours.write_all(b"small answer").await.unwrap();
            ours.release();
            assert_eq!(
                ours.shared.lock().bytes,
                b"small answer",
                "kept while queued"
            );
            tokio::task::yield_now().await;
            assert!(
                ours.shared.lock().bytes.capacity() > 0,
                "small: kept when drained"
            );
            ours.release();
            assert_eq!(ours.shared.lock().bytes.capacity(), 0);
            assert_eq!(
                received(&mut peer, Duration::from_millis(200)).await,
                b"small answer"
            );
        });
    }

    #[test]
    fn poll_readable_consumes_nothing() {
        event_loop().block_on(async {
            let (mut ours, mut peer) = pair().await;
            let waiting = std::future::poll_fn(|cx| ours.poll_readable(cx));
            assert!(
                tokio::time::timeout(Duration::from_millis(50), waiting)
                    .await
                    .is_err(),
                "nothing to read yet"
            );
            peer.write_all(b"GET").await.unwrap();
            std::future::poll_fn(|cx| ours.poll_readable(cx))
                .await
                .unwrap();
            let mut buf = [0u8; 3];
            ours.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"GET");
        });
    }

    #[test]
    fn shutdown_waits_for_the_outbox() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = after_a_request().await;
            ours.write_all(b"last words").await.unwrap();
            assert!(!ours.shared.lock().bytes.is_empty());
            ours.shutdown().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last words", "the queued bytes, then end of stream");
        });
    }

    #[test]
    fn a_connection_dropped_with_queued_bytes_still_sends_them() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, mut peer) = after_a_request().await;
            ours.write_all(b"answer").await.unwrap();
            drop(ours);
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"answer");
        });
    }

    #[test]
    fn a_failed_queued_write_is_returned_by_the_next_call() {
        event_loop().block_on(async {
            start_flusher().await;
            let (mut ours, peer) = after_a_request().await;
            // The peer goes away with a reset: writes to it fail.
            peer.set_zero_linger().unwrap();
            drop(peer);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut failed = None;
            for _ in 0..100 {
                if let Err(error) = ours.write_all(b"answer").await {
                    failed = Some(error);
                    break;
                }
                tokio::task::yield_now().await;
            }
            let error = failed.expect("a write to a reset connection fails");
            assert!(
                matches!(
                    error.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{error:?}"
            );
            assert!(ours.flush().await.is_err(), "the error stays");
        });
    }
}
