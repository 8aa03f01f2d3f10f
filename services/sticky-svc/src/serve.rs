//! The HTTP server: accept loop, header-size limit (431), and the drain on shutdown.
//!
//! hyper-util's auto builder serves HTTP/1.1 and cleartext HTTP/2 (which the gateway may use)
//! on one port. `axum::serve` is not used because it cannot bound request headers; hyper's
//! `max_buf_size` can, and hyper answers an oversized head with `431` itself.
//!
//! Draining, after the shutdown future resolves:
//! 1. [`Readiness`] turns `/readyz` to 503.
//! 2. The listener stays open, so probes and late requests still get answers (a refused
//!    connection would look like a crash to the load balancer). Connections accepted now serve
//!    one request and close (HTTP/2 ones: `GOAWAY` after their first answer).
//! 3. Every open connection is told to shut down gracefully: idle keep-alive connections close,
//!    busy ones finish their current call (a cold one included) and close.
//! 4. When no connection is left, or the grace period ends, `serve` returns. Connections still
//!    open at the end of the grace period are closed then, not left running.
//!
//! Slow clients: a connection with no request in flight for `header_read_timeout` is closed
//! ([`guard`]), which bounds both a trickled request head and an idle keep-alive connection.
//!
//! Many clients: each connection served holds a permit of the app's connection limit
//! ([`crate::limits::Connections`]) until it closes. A connection past the limit is served as
//! the gateway serves one (`Connections::serve` in its `proxy/listener.rs`), but answered 503
//! with `Retry-After: 1` rather than the gateway's 429: for the clients of a replica (the
//! gateway, mostly) 503 means "this replica is overloaded", which they may retry elsewhere
//! and count towards ejecting it. HTTP/1.1 gets `connection: close` and the connection is
//! closed after that answer; whatever it does, it is closed within 5 s (or the
//! header-read timeout, if shorter). It holds no permit and is not waited for by the drain.
//!
//! HTTPS ([`serve_tls`]): the same server, each connection's TLS handshake run first inside its
//! own task, bounded by [`Tls::handshake_timeout`] (and by the drain's end), so a client that
//! never finishes its handshake holds one task and one connection place, not the accept loop.
//! Every defence above then applies to the decrypted stream as to a plain one.
//!
//! It may not answer requests itself: every request goes to the service `api` builds.

pub use conn_guard as guard;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::api::App;
use crate::shutdown::Readiness;
use crate::tls::Tls;
use guard::{IdleGuard, Watch};

/// The default of [`ServeOptions::header_read_timeout`].
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The smallest request-head buffer hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// The longest a connection past the limit stays open, as at the gateway.
const REFUSED_CONNECTION_LIFETIME: Duration = Duration::from_secs(5);

/// The server failed to run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The listener's own address could not be read.
    #[error("cannot read the listening address")]
    LocalAddr(#[source] std::io::Error),
    /// A header limit below hyper's minimum was asked for.
    #[error("max header bytes must be at least {MIN_HEADER_BYTES}, got {0}")]
    HeaderLimit(usize),
}

/// How the server runs and drains.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest wait for in-flight calls after the shutdown signal.
    pub grace: Duration,
    /// Request line plus headers larger than this are refused with 431.
    pub max_header_bytes: usize,
    /// How long a connection may go with no request in flight: the time a client has to send
    /// a request's head, and to start the next one on a keep-alive connection. A request in
    /// flight, however long, is never cut by it.
    pub header_read_timeout: Duration,
    /// Flipped to "draining" when shutdown starts.
    pub readiness: Readiness,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the grace period ran out (0 for a clean drain).
    pub abandoned: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: App,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Drained, ServeError> {
    run(listener, app, options, None, shutdown).await
}

/// As [`serve`], over HTTPS: each connection's handshake first, in its own task.
pub async fn serve_tls(
    listener: TcpListener,
    app: App,
    options: ServeOptions,
    tls: Tls,
    shutdown: impl Future<Output = ()>,
) -> Result<Drained, ServeError> {
    run(listener, app, options, Some(tls), shutdown).await
}

async fn run(
    listener: TcpListener,
    app: App,
    options: ServeOptions,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) -> Result<Drained, ServeError> {
    if options.max_header_bytes < MIN_HEADER_BYTES {
        return Err(ServeError::HeaderLimit(options.max_header_bytes));
    }
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Slow headers are the guard's job (see `guard`): hyper's own timeout would arm a
        // timer on every request.
        .header_read_timeout(None)
        .max_buf_size(options.max_header_bytes)
        // Answers are a few dozen bytes: copying the body behind the head and making one
        // `write` is cheaper than a vectored write of two buffers (2% fewer instructions).
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let mut last_call = builder.clone();
    last_call.http1().keep_alive(false);

    // Each connection task holds a receiver: it learns of the drain through it, and the
    // sender sees every connection gone when the receiver count drops to zero.
    let (drain, _) = watch::channel(Phase::Serving);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let connections = Arc::new(Connections {
        builder,
        last_call,
        app,
        guard: IdleGuard::start(options.header_read_timeout),
        refused_lifetime: options.header_read_timeout.min(REFUSED_CONNECTION_LIFETIME),
        tls,
    });
    info!(%addr, scheme, "listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Some(stream) = accepted_stream(accepted).await {
                    connections.open(stream, &drain);
                }
            }
            () = &mut shutdown => break,
        }
    }

    options.readiness.drain();
    drain.send_replace(Phase::Draining);
    info!(open = drain.receiver_count(), grace = ?options.grace, "draining");
    let deadline = tokio::time::sleep(options.grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Some(stream) = accepted_stream(accepted).await {
                    connections.open(stream, &drain);
                }
            }
            () = drain.closed() => {
                info!("drained");
                return Ok(Drained { abandoned: 0 });
            }
            () = &mut deadline => {
                let abandoned = drain.receiver_count();
                warn!(abandoned, "grace period over; closing the connections still open");
                drain.send_replace(Phase::Closed);
                return Ok(Drained { abandoned });
            }
        }
    }
}

/// The stream of a successful accept. Accept errors (out of file descriptors, a connection
/// reset while queued) are logged, and a short pause keeps an exhausted process from spinning.
async fn accepted_stream(accepted: std::io::Result<(TcpStream, SocketAddr)>) -> Option<TcpStream> {
    match accepted {
        Ok((stream, _)) => {
            // The answers are small: send them now rather than waiting for Nagle.
            if let Err(err) = stream.set_nodelay(true) {
                debug!(%err, "cannot set TCP_NODELAY");
            }
            Some(stream)
        }
        Err(err) => {
            warn!(%err, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Where the server is in its life; every connection task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown started: connections finish their current request and close.
    Draining,
    /// The grace period is over: connections still open are dropped.
    Closed,
}

/// How accepted connections are served; shared by their tasks.
struct Connections {
    builder: auto::Builder<TokioExecutor>,
    /// Closes each connection after one answer (HTTP/1.1: `connection: close`).
    last_call: auto::Builder<TokioExecutor>,
    app: App,
    guard: IdleGuard,
    refused_lifetime: Duration,
    /// HTTPS: the handshake each connection's task runs first.
    tls: Option<Tls>,
}

impl Connections {
    /// Serves `stream` if the connection limit has room for it, refuses it otherwise.
    fn open(self: &Arc<Self>, stream: TcpStream, drain: &watch::Sender<Phase>) {
        match self.app.admit_connection() {
            Some(permit) => self.serve(stream, permit, drain.subscribe()),
            None => self.refuse(stream),
        }
    }

    /// Answers every request on `stream` with 503 and closes it (see the module docs); the
    /// TLS handshake, if any, counts in its lifetime.
    fn refuse(self: &Arc<Self>, stream: TcpStream) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let answer = async {
                match &this.tls {
                    None => this.refuse_on(stream).await,
                    Some(tls) => {
                        if let Some(stream) = tls.accept(stream).await {
                            this.refuse_on(stream).await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(this.refused_lifetime, answer).await;
        });
    }

    async fn refuse_on<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req| {
            let response = app.too_many_connections(&req);
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        log_end(
            self.last_call
                .serve_connection(TokioIo::new(io), service)
                .await,
        );
    }

    /// Serves `stream`, which holds `permit` until it closes, in a task of its own.
    fn serve(
        self: &Arc<Self>,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        mut drain: watch::Receiver<Phase>,
    ) {
        let watch = self.guard.watch();
        let this = Arc::clone(self);
        let guard_watch = Arc::clone(&watch);
        let task = match self.tls.clone() {
            None => tokio::spawn(this.serve_on(stream, permit, watch, drain)),
            Some(tls) => tokio::spawn(async move {
                let stream = tokio::select! {
                    biased;
                    stream = tls.accept(stream) => stream,
                    _ = drain.wait_for(|phase| *phase == Phase::Closed) => None,
                };
                if let Some(stream) = stream {
                    this.serve_on(stream, permit, watch, drain).await;
                }
            }),
        };
        // An idle connection is closed by aborting its task (which drops `drain` with it): a
        // `select!` on `watch.expired()` would take `Notify`'s lock at every wake-up.
        guard_watch.abort_on_expiry(task.abort_handle());
    }

    /// Serves HTTP on `io` until it closes, the drain closes it, or the grace period ends.
    async fn serve_on<I>(
        self: Arc<Self>,
        io: I,
        permit: OwnedSemaphorePermit,
        watch: Arc<Watch>,
        mut drain: watch::Receiver<Phase>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Dropped with the task, also when the idle guard aborts it.
        let _permit = permit;
        // Read now, after any TLS handshake: a connection whose handshake outlasted the start
        // of the drain is served as one opened during it.
        let opened_while_serving = *drain.borrow() == Phase::Serving;
        if !opened_while_serving {
            watch.report_answers();
        }
        let service = {
            let (app, watch) = (self.app.clone(), watch.clone());
            hyper::service::service_fn(move |req| {
                let in_flight = watch.request();
                let call = app.clone().oneshot(req);
                async move {
                    let response = call.await;
                    drop(in_flight);
                    response
                }
            })
        };
        // Telling a connection opened during the drain to shut down would close it before its
        // first request; `last_call` closes it after one answer instead.
        let builder = if opened_while_serving {
            &self.builder
        } else {
            &self.last_call
        };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        tokio::select! {
            biased;
            result = connection.as_mut() => return log_end(result),
            // Drain: finish what is in flight, then close.
            _ = drain.wait_for(|phase| *phase != Phase::Serving), if opened_while_serving => {
                connection.as_mut().graceful_shutdown();
            }
            // Opened during the drain: one answer, then close. (Shutting down before the
            // first request would close it unanswered.)
            () = watch.answered(), if !opened_while_serving => {
                connection.as_mut().graceful_shutdown();
            }
        }
        tokio::select! {
            biased;
            result = connection.as_mut() => log_end(result),
            _ = drain.wait_for(|phase| *phase == Phase::Closed) => {
                debug!("connection closed at the end of the grace period");
            }
        }
        // `drain` is dropped only now: the server counts this connection until it ends.
        drop(drain);
    }
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(err) = result {
        // Client resets and timeouts are routine for a server; they are not our errors.
        debug!(%err, "connection ended with an error");
    }
}
