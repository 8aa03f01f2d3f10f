//! `gateway run`: load the config, bind the listeners, serve, and keep the config fresh.
//!
//! The control path in one place: a config change (file watch, SIGHUP, poll) is loaded and
//! validated in full; only a config with no error becomes a new [`Snapshot`], built off the
//! request path and published with one `ArcSwap::store`. A rejected config is logged with its
//! file and line, counted, and shown on `/config`; the running one keeps serving.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admin::{Admin, Status};
use crate::config::{self, LoadOptions, Severity};
use crate::discovery::{DiscoveryError, DnsResolver, RefreshBounds};
use crate::health::active::ActiveCheck;
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::listener::{self, Connections, Limits};
use crate::proxy::{Proxy, ProxySettings};
use crate::reload::{self, Trigger};
use crate::snapshot::{Context, Snapshot};

/// Everything `gateway run` is configured with.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Istio YAML files or folders.
    pub config: Vec<PathBuf>,
    /// The proxy listener.
    pub listen: SocketAddr,
    /// Worker threads serving the proxy listener's connections, each with its own event loop;
    /// at least 1.
    pub workers: usize,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Namespace and cluster domain for short names.
    pub load: LoadOptions,
    /// Serve only VirtualServices bound to this Gateway (plus mesh ones).
    pub gateway: Option<String>,
    /// Ask this DNS server instead of the system's (`/etc/resolv.conf`).
    pub dns_server: Option<SocketAddr>,
    /// DNS re-resolution bounds.
    pub dns_refresh: RefreshBounds,
    /// Listener limits (connections, header size, drain grace).
    pub limits: Limits,
    /// Body limits.
    pub proxy: ProxySettings,
    /// How often the config files are checked when no file event arrives.
    pub reload_poll: Duration,
    /// Active HTTP health checks for every cluster; `None`: passive only.
    pub active: Option<ActiveCheck>,
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config has errors (each finding on its own line).
    #[error("the configuration has errors:\n{0}")]
    Config(String),
    /// A worker thread could not be started.
    #[error("cannot start worker thread {index}: {source}")]
    Worker {
        /// Which worker.
        index: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// DNS could not be set up.
    #[error(transparent)]
    Dns(#[from] DiscoveryError),
    /// The config watch could not be set up.
    #[error(transparent)]
    Reload(#[from] reload::ReloadError),
}

/// A gateway with its config loaded and its listeners bound, ready to serve.
pub struct Gateway {
    options: RunOptions,
    listener: TcpListener,
    admin_listener: TcpListener,
    snapshot: Arc<ArcSwap<Snapshot>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    ctx: Context,
    /// Fingerprint of the files as they were just before the running config was read.
    loaded_fingerprint: u64,
}

impl Gateway {
    /// Loads the config (refusing one with errors) and binds both listeners.
    pub async fn bind(options: RunOptions) -> Result<Self, RunError> {
        crate::proxy::upstream::set_workers(options.workers.max(1));
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let resolver = match options.dns_server {
            Some(server) => DnsResolver::with_name_server(server),
            None => DnsResolver::from_system()?,
        };
        let ctx = Context {
            resolver,
            bounds: options.dns_refresh,
            metrics: metrics.clone(),
            gateway: options.gateway.clone(),
            active: options.active.clone(),
        };
        // Taken before reading, so a change made while loading is seen by the first check.
        let loaded_fingerprint = reload::fingerprint(&options.config);
        let snapshot = load_snapshot(&options, None, &ctx).map_err(RunError::Config)?;
        let status = Arc::new(Status::default());
        status.loaded();
        metrics.reloaded(ReloadResult::Success);
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })
        };
        let listener = bind(options.listen).await?;
        let admin_listener = bind(options.admin).await?;
        Ok(Self {
            options,
            listener,
            admin_listener,
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            registry: Arc::new(registry),
            metrics,
            status,
            ctx,
            loaded_fingerprint,
        })
    }

    /// The proxy listener's address (useful when bound to port 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves: readiness turns 503 at once, the proxy stops accepting
    /// and drains in-flight requests for up to the grace period, then the admin listener stops.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let mut triggers = reload::watch(&self.options.config, self.options.reload_poll)?;
        let proxy = Arc::new(Proxy::new(
            self.snapshot.clone(),
            self.metrics.clone(),
            self.options.proxy,
        ));
        let admin = Admin {
            snapshot: self.snapshot.clone(),
            registry: self.registry.clone(),
            status: self.status.clone(),
        };
        tracing::info!(
            listen = %self.listen_addr(),
            admin = %self.admin_addr(),
            clusters = self.snapshot.load().clusters.len(),
            "gateway serving"
        );
        self.status.set_ready(true);

        let reloader = {
            let options = self.options.clone();
            let snapshot = self.snapshot.clone();
            let status = self.status.clone();
            let metrics = self.metrics.clone();
            let ctx = self.ctx.clone();
            let mut last = self.loaded_fingerprint;
            tokio::spawn(async move {
                while let Some(trigger) = triggers.next(Duration::from_millis(200)).await {
                    let now = reload::fingerprint(&options.config);
                    if trigger == Trigger::Files && now == last {
                        continue;
                    }
                    // Recorded even when the new files are rejected: they are not retried until
                    // they change again (or SIGHUP), so one bad edit logs one error.
                    last = now;
                    let previous = snapshot.load_full();
                    match load_snapshot(&options, Some(&previous), &ctx) {
                        Ok(next) => {
                            snapshot.store(Arc::new(next));
                            status.loaded();
                            metrics.reloaded(ReloadResult::Success);
                            tracing::info!(?trigger, "configuration reloaded");
                        }
                        Err(error) => {
                            tracing::error!(
                                ?trigger,
                                "configuration rejected, the previous one keeps serving:\n{error}"
                            );
                            status.rejected(error);
                            metrics.reloaded(ReloadResult::Failure);
                        }
                    }
                }
            })
        };

        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_limits = Limits {
            max_connections: 256,
            ..self.options.limits
        };
        let admin_task = tokio::spawn(listener::serve(
            self.admin_listener,
            admin_limits,
            move |req, _peer| {
                let response = admin.handle(&req);
                async move { response }
            },
            async move {
                let _ = admin_stopped.await;
            },
        ));

        // The proxy: worker threads, each with a single-threaded event loop, as nginx's worker
        // processes and Envoy's workers. A request and its upstream connection are always
        // handled by one thread, with no work stealing and no cross-thread wake-ups, and the
        // control path (this thread) never delays them. This thread accepts and hands each new
        // connection to the worker with the fewest open ones, as HAProxy does: the kernel's
        // SO_REUSEPORT hash left two workers about 45/55 of 64 keep-alive clients.
        let listener = self.listener;
        let permits = Arc::new(Semaphore::new(self.options.limits.max_connections));
        let workers = self.options.workers.max(1);
        let mut handoff = Vec::with_capacity(workers);
        let mut finished = Vec::with_capacity(workers);
        for index in 0..workers {
            let (to_worker, accepted) = tokio::sync::mpsc::unbounded_channel();
            let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
            let open = Arc::new(AtomicUsize::new(0));
            let worker = Worker {
                index,
                accepted,
                limits: self.options.limits,
                proxy: Arc::new(proxy.for_worker()),
            };
            std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    worker.run();
                    drop(done);
                })
                .map_err(|source| RunError::Worker { index, source })?;
            handoff.push(Handoff {
                sender: to_worker,
                open,
            });
            finished.push(done_rx);
        }

        tokio::pin!(shutdown);
        let mut next = 0;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        listener::accept_failed(&error).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Leaves this event loop (stays non-blocking) for the worker's.
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let accepted = Accepted {
                stream,
                peer,
                permit: permits.clone().try_acquire_owned().ok(),
                open: None,
            };
            if hand_off(&handoff, &mut next, accepted).is_err() {
                tracing::error!("every worker thread has stopped");
                break;
            }
        }
        self.status.set_ready(false);
        tracing::info!("shutting down: draining in-flight requests");
        drop(listener);
        drop(handoff); // each worker drains, then ends
        for worker in finished {
            let _ = worker.await;
        }
        reloader.abort();
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// A connection accepted by the control thread, on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// `None`: past `max_connections`, answered 429.
    permit: Option<OwnedSemaphorePermit>,
    /// The worker's count of open connections, decremented when this one closes.
    open: Option<Arc<AtomicUsize>>,
}

/// The control thread's end of one worker's hand-off.
struct Handoff {
    sender: tokio::sync::mpsc::UnboundedSender<Accepted>,
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
            Err(tokio::sync::mpsc::error::SendError(back)) => {
                worker.open.fetch_sub(1, Ordering::Relaxed);
                job = back;
            }
        }
    }
}

/// One worker thread: serves the connections handed to it.
struct Worker {
    index: usize,
    accepted: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    limits: Limits,
    proxy: Arc<Proxy>,
}

impl Worker {
    /// Serves what it is handed until the hand-off closes (shutdown), then drains up to the
    /// grace period. Tasks still running after that are dropped with the event loop.
    fn run(self) {
        crate::proxy::upstream::enter_worker(self.index);
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
        } = self;
        runtime.block_on(async move {
            tokio::spawn(crate::proxy::batch::flusher());
            let connections = Connections::new(limits, move |req, peer| {
                let proxy = proxy.clone();
                async move { proxy.handle(req, peer).await }
            });
            while let Some(Accepted {
                stream,
                peer,
                permit,
                open,
            }) = accepted.recv().await
            {
                let closed = move || {
                    if let Some(open) = open {
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                };
                match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => connections.serve(stream, peer, permit, closed),
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

/// Loads and validates the config, then builds its snapshot. The error text lists every error
/// finding, one per line with file and line.
fn load_snapshot(
    options: &RunOptions,
    previous: Option<&Snapshot>,
    ctx: &Context,
) -> Result<Snapshot, String> {
    let loaded = config::load_paths(&options.config, &options.load).map_err(|e| e.to_string())?;
    for finding in &loaded.diagnostics {
        match finding.severity {
            Severity::Error => {}
            Severity::Warning => tracing::warn!("{finding}"),
            Severity::Info => tracing::info!("{finding}"),
        }
    }
    if loaded.has_errors() {
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        return Err(errors.join("\n"));
    }
    if loaded.config.virtual_services.is_empty() {
        return Err(format!(
            "no VirtualService in {}: nothing to route",
            options
                .config
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Snapshot::build(Arc::new(loaded.config), previous, ctx).map_err(|e| e.to_string())
}
