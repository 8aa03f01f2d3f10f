//! The proxy's worker threads, and the accept loop that hands them connections.
//!
//! Each worker thread runs a single-threaded event loop, as nginx's worker processes and
//! Envoy's workers: a request and its upstream connection are always handled by one thread,
//! with no work stealing and no cross-thread wake-ups, and the control path (the thread that
//! accepts) never delays them. The accepting thread hands each new connection to the worker
//! with the fewest open ones, as HAProxy does: the kernel's SO_REUSEPORT hash left two workers
//! about 45/55 of 64 keep-alive clients.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::Proxy;
use super::listener::{Connections, Limits, accept_until};
use crate::tls::TlsAcceptor;
use crate::worker;
use conn_guard::IdleGuard;

/// A worker thread that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start worker thread {index}: {source}")]
pub struct StartError {
    /// Which worker.
    pub index: usize,
    /// Why.
    pub source: std::io::Error,
}

/// The running worker threads.
pub struct Workers {
    handoff: Vec<Handoff>,
    finished: Vec<oneshot::Receiver<()>>,
    /// Where the next tie goes (round robin among equally loaded workers).
    next: usize,
    /// Each worker's idle guard: at the connection limit, the idlest connection is closed.
    guards: Vec<IdleGuard>,
    /// `max_connections_per_client`, when set.
    per_client: Option<Arc<PerClient>>,
}

/// Open connections per client address, under `max_connections_per_client`.
struct PerClient {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place under its address's limit, given back when dropped (when the
/// connection closes).
struct ClientPlace {
    limit: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// A place for one more connection from `ip`, if it has fewer than the limit open.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientPlace> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPlace {
            limit: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Workers {
    /// Starts `count` (at least 1) worker threads, each with its own handler made from `proxy`
    /// and serving connections under `limits`.
    pub fn start(count: usize, limits: Limits, proxy: &Proxy) -> Result<Self, StartError> {
        let count = count.max(1);
        let mut handoff = Vec::with_capacity(count);
        let mut finished = Vec::with_capacity(count);
        let (guard_tx, guard_rx) = std::sync::mpsc::channel();
        for index in 0..count {
            let (sender, accepted) = mpsc::unbounded_channel();
            let (done, done_rx) = oneshot::channel::<()>();
            let worker = Worker {
                index,
                accepted,
                limits,
                proxy: Arc::new(proxy.for_worker()),
                guard: guard_tx.clone(),
            };
            std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    worker.run();
                    drop(done);
                })
                .map_err(|source| StartError { index, source })?;
            handoff.push(Handoff {
                sender,
                open: Arc::new(AtomicUsize::new(0)),
            });
            finished.push(done_rx);
        }
        drop(guard_tx);
        // Each worker sends its idle guard once its event loop runs (or drops its sender if it
        // could not start): start-up waits for them, a few milliseconds.
        let guards = guard_rx.iter().collect();
        Ok(Self {
            handoff,
            finished,
            next: 0,
            guards,
            per_client: limits.max_connections_per_client.map(|max| {
                Arc::new(PerClient {
                    max,
                    open: Mutex::default(),
                })
            }),
        })
    }

    /// Accepts on `listeners` (each with its TLS acceptor, or `None` for plain HTTP) until
    /// `shutdown` resolves (or every worker has stopped), handing each connection to a worker.
    /// On each listener at most `max_connections` are served at once, and
    /// `max_connections_per_client` from one address; one more is answered 429 by its worker
    /// (a TLS one is closed: no handshake is spent on it).
    pub async fn accept(
        &mut self,
        listener: TcpListener,
        tls: Option<(TcpListener, Arc<TlsAcceptor>)>,
        max_connections: usize,
        shutdown: impl Future<Output = ()>,
    ) {
        let Self {
            handoff,
            next,
            guards,
            per_client,
            ..
        } = self;
        // The loops share this task; the lock is never contended (and the future stays Send).
        let shared = Mutex::new((handoff, next));
        let (shared, per_client, guards) = (&shared, &*per_client, &*guards);
        let accept_on = |listener, tls: Option<Arc<TlsAcceptor>>| {
            accept_until(
                listener,
                max_connections,
                std::future::pending(),
                guards,
                move |stream, peer, permit| {
                    // Leaves this event loop (stays non-blocking) for the worker's.
                    let Ok(stream) = stream.into_std() else {
                        return ControlFlow::Continue(());
                    };
                    let (permit, place) = match (per_client, permit) {
                        (Some(limit), Some(permit)) => match limit.take(peer.ip()) {
                            Some(place) => (Some(permit), Some(place)),
                            None => (None, None),
                        },
                        (_, permit) => (permit, None),
                    };
                    let job = Accepted {
                        stream,
                        peer,
                        permit,
                        tls: tls.clone(),
                        open: None,
                        place,
                    };
                    let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    let (handoff, next) = &mut *shared;
                    match hand_off(handoff, next, job) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => {
                            tracing::error!("every worker thread has stopped");
                            ControlFlow::Break(())
                        }
                    }
                },
            )
        };
        // Shutdown drops the loops, which closes the listeners.
        match tls {
            None => tokio::select! {
                () = accept_on(listener, None) => {}
                () = shutdown => {}
            },
            Some((tls_listener, acceptor)) => tokio::select! {
                _ = async {
                    tokio::join!(accept_on(listener, None), accept_on(tls_listener, Some(acceptor)))
                } => {}
                () = shutdown => {}
            },
        }
    }

    /// Lets every worker drain its connections (up to the grace period), then returns.
    pub async fn drain(self) {
        drop(self.handoff); // each worker drains, then ends
        for worker in self.finished {
            let _ = worker.await;
        }
    }
}

/// A connection accepted by the control thread, on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// `None`: past `max_connections`, answered 429.
    permit: Option<OwnedSemaphorePermit>,
    /// The TLS listener's handshakes, for a connection accepted there.
    tls: Option<Arc<TlsAcceptor>>,
    /// The worker's count of open connections, decremented when this one closes.
    open: Option<Arc<AtomicUsize>>,
    /// Its place under `max_connections_per_client`, given back when it closes.
    place: Option<ClientPlace>,
}

/// The control thread's end of one worker's hand-off.
struct Handoff {
    sender: mpsc::UnboundedSender<Accepted>,
    /// The worker's open connections.
    open: Arc<AtomicUsize>,
}

/// Hands `job` to the live worker with the fewest open connections (ties go round robin from
/// `next`); gives it back when every worker has stopped.
fn hand_off(workers: &[Handoff], next: &mut usize, mut job: Accepted) -> Result<(), Accepted> {
    loop {
        let Some(index) = (0..workers.len())
            .map(|i| (*next + i) % workers.len())
            .filter(|&i| !workers[i].sender.is_closed())
            .min_by_key(|&i| workers[i].open.load(Ordering::Relaxed))
        else {
            return Err(job);
        };
        *next = (index + 1) % workers.len();
        let worker = &workers[index];
        worker.open.fetch_add(1, Ordering::Relaxed);
        job.open = Some(worker.open.clone());
        match worker.sender.send(job) {
            Ok(()) => return Ok(()),
            // That worker has just stopped: it is skipped from now on.
            Err(mpsc::error::SendError(back)) => {
                worker.open.fetch_sub(1, Ordering::Relaxed);
                job = back;
            }
        }
    }
}

/// One worker thread: serves the connections handed to it.
struct Worker {
    index: usize,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    limits: Limits,
    proxy: Arc<Proxy>,
    /// Where it sends its idle guard once its event loop runs.
    guard: std::sync::mpsc::Sender<IdleGuard>,
}

impl Worker {
    /// Serves what it is handed until the hand-off closes (shutdown), then drains up to the
    /// grace period. Tasks still running after that are dropped with the event loop.
    fn run(self) {
        worker::enter(self.index);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(worker = self.index, %error, "cannot start the event loop");
                return;
            }
        };
        let Self {
            index,
            mut accepted,
            limits,
            proxy,
            guard,
        } = self;
        runtime.block_on(async move {
            tokio::spawn(worker::outbox::flusher());
            let connections = Connections::new(limits, move |req, peer| proxy.handle(req, peer));
            let _ = guard.send(connections.guard());
            drop(guard);
            while let Some(Accepted {
                stream,
                peer,
                permit,
                tls,
                open,
                place,
            }) = accepted.recv().await
            {
                let closed = move || {
                    drop(place);
                    if let Some(open) = open {
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                };
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => connections.serve(stream, peer, permit, tls, closed),
                    Err(error) => {
                        tracing::warn!(worker = index, %error, "cannot register a connection");
                        closed();
                    }
                }
            }
            connections.drain().await;
        });
    }
}
