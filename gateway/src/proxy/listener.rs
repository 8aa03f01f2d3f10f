//! The accept loop shared by the proxy and admin listeners: HTTP/1.1 and h2c on one port,
//! bounded connections and header sizes, graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Body, ProxyError};

/// What one listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is answered `429 too many connections` and closed.
    pub max_connections: usize,
    /// Bytes of request line + headers (HTTP/1.1) or header list (h2); past it: 431.
    pub max_header_bytes: usize,
    /// A client that has not sent its headers after this is disconnected.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` with `handler` until `shutdown` resolves, then stops accepting and waits
/// up to `limits.grace` for open connections to finish their requests.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Connections::new(limits, handler);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = permits.clone().try_acquire_owned().ok();
        connections.serve(stream, peer, permit, || {});
    }
    drop(listener);
    connections.drain().await;
}

/// Logs a failed accept and backs off: EMFILE and friends would otherwise spin.
pub async fn accept_failed(error: &std::io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The connections of one event loop: each accepted socket served (HTTP/1.1 or h2c) on a task
/// of the loop that calls [`Connections::serve`], all drained together.
pub struct Connections<H> {
    builder: auto::Builder<TokioExecutor>,
    graceful: GracefulShutdown,
    grace: Duration,
    handler: H,
}

impl<H, F> Connections<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    /// Connections served with `handler` under `limits` (header size and timeout, grace).
    pub fn new(limits: Limits, handler: H) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper's floor is 8 KiB; it answers 431 past the buffer.
            .max_buf_size(limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Self {
            builder,
            graceful: GracefulShutdown::new(),
            grace: limits.grace,
            handler,
        }
    }

    /// Serves `stream` on a task of the current event loop; `closed` runs when it ends. With
    /// no `permit` (the listener's connection limit is reached) every request on it is
    /// answered `429 too many connections` and it is closed within 5 s.
    pub fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        closed: impl FnOnce() + Send + 'static,
    ) {
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        match permit {
            Some(permit) => {
                let handler = self.handler.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req, peer).await) }
                });
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                let conn = self.graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    closed();
                });
            }
            None => {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(ProxyError::TooManyConnections.response())
                });
                let conn = self.builder.serve_connection(io, service).into_owned();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                    closed();
                });
            }
        }
    }

    /// Lets in-flight requests finish, up to the grace period, closing idle connections.
    pub async fn drain(self) {
        tokio::select! {
            () = self.graceful.shutdown() => {}
            () = tokio::time::sleep(self.grace) => {
                tracing::warn!(grace = ?self.grace, "connections still open after the grace period");
            }
        }
    }
}
