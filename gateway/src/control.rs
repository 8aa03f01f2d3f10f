//! `gateway run`: load the config, bind the listeners, start the proxy's worker threads and
//! the admin listener, and keep the config fresh. The binary's wiring: it puts the request path
//! ([`crate::proxy`]), the admin pages and the reload triggers together, and holds none of their
//! logic.
//!
//! The control path in one place: a config change (file watch, SIGHUP, poll) whose files two
//! reads agree on is loaded and validated in full; only a config with no error becomes a new
//! [`Snapshot`], built on a blocking thread (off the request path and off this thread's accept
//! loop) and published with one `ArcSwap::store` once its new DNS clusters have answered. A
//! rejected config is logged with its file and line, counted, and shown on `/config`; the
//! running one keeps serving.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::admin::{Admin, Live, Status};
use crate::config::{Diagnostic, LoadError, LoadOptions, Severity};
use crate::discovery::{DiscoveryError, DnsResolver, FIRST_LOOKUP_WAIT, RefreshBounds};
use crate::events::Kind as EventKind;
use crate::health::active::ActiveCheck;
use crate::metrics::TlsRefreshLabels;
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::handoff::{StartError, Workers};
use crate::proxy::listener::{self, Limits};
use crate::proxy::{Proxy, ProxySettings};
use crate::reload::{self, Changes, ConfigFiles, Trigger};
use crate::session::SessionKeys;
use crate::snapshot::{Context, Snapshot, SnapshotError};
use crate::tls::{Refresh, TlsAcceptor, TlsServers};
use crate::worker;

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
    /// Body limits, access log.
    pub proxy: ProxySettings,
    /// How often the config files are checked when no file event arrives.
    pub reload_poll: Duration,
    /// Active HTTP health checks for every cluster; `None`: passive only.
    pub active: Option<ActiveCheck>,
    /// Persistent sessions' keys (`--session-key-file`); `None`: a random key of this process.
    pub session_keys: Option<Arc<SessionKeys>>,
    /// The TLS listener and where certificates are.
    pub tls: TlsSettings,
}

/// `--listen-tls`, `--credentials-dir`, `--tls-handshake-timeout` (`--https-port` is the
/// proxy's: [`ProxySettings::https_redirect_port`]).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The TLS listener, serving the Gateways' HTTPS servers; `None`: no TLS.
    pub listen: Option<SocketAddr>,
    /// Where `credentialName: X` finds `X/tls.crt` and `X/tls.key`.
    pub credentials_dir: Option<PathBuf>,
    /// A handshake not finished within this is closed.
    pub handshake_timeout: Duration,
    /// How often certificate files are read again for a rotation (cert-manager replaces a
    /// Secret's files in place).
    pub refresh_every: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            credentials_dir: None,
            handshake_timeout: crate::tls::HANDSHAKE_TIMEOUT,
            refresh_every: Duration::from_secs(5),
        }
    }
}

/// Why a config is not served: at start the gateway does not start; on reload the running
/// config keeps serving. Every variant names the files (and, for findings, the line and field).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or folder could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Error findings, each with its file, line and field.
    #[error("{}", lines(.0))]
    Findings(Vec<Diagnostic>),
    /// The files hold no VirtualService.
    #[error("no VirtualService in {paths}: nothing to route")]
    NoVirtualService {
        /// The config paths, comma separated.
        paths: String,
    },
    /// The config passed its checks but a route cannot be built.
    #[error(transparent)]
    Snapshot(#[from] Box<SnapshotError>),
}

fn lines(findings: &[Diagnostic]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config has errors (each finding on its own line).
    #[error("the configuration has errors:\n{0}")]
    Config(#[from] ConfigError),
    /// A worker thread could not be started.
    #[error(transparent)]
    Worker(#[from] StartError),
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
    /// The TLS listener and its handshakes, with `--listen-tls`.
    tls: Option<(TcpListener, Arc<TlsAcceptor>)>,
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
        worker::set_count(options.workers.max(1));
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
            response_idle_timeout: options.proxy.response_idle_timeout,
        };
        // The fingerprint of exactly the texts loaded: any later change is seen by the first
        // check. At start one read is enough: a save caught half-way is loaded, and replaced
        // as soon as the rest is written (its events trigger a reload).
        let files = ConfigFiles::read_blocking(options.config.clone().into()).await;
        let loaded_fingerprint = files.fingerprint();
        let snapshot = load_snapshot(files, &options, None, &ctx).await?;
        let status = Arc::new(Status::default());
        status.loaded();
        metrics.reloaded(ReloadResult::Success);
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })
        };
        let listener = bind(options.listen).await?;
        let tls = match options.tls.listen {
            Some(addr) => {
                let servers = tls_servers(&snapshot, &options.tls);
                let acceptor = TlsAcceptor::new(servers, options.tls.handshake_timeout);
                Some((bind(addr).await?, Arc::new(acceptor)))
            }
            None => {
                if snapshot
                    .config
                    .gateways
                    .iter()
                    .flat_map(|g| &g.servers)
                    .any(|s| s.tls.is_some())
                {
                    tracing::warn!(
                        "the config has HTTPS servers but no --listen-tls: they are not served"
                    );
                }
                None
            }
        };
        let admin_listener = bind(options.admin).await?;
        Ok(Self {
            options,
            listener,
            tls,
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

    /// The TLS listener's address, with `--listen-tls`.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
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
        let triggers = reload::watch(&self.options.config, self.options.reload_poll)?;
        if self.options.session_keys.is_none() && self.snapshot.load().has_sessions() {
            tracing::warn!(
                "no --session-key-file: persistent sessions are signed with a random key of this process, so they hold only while it runs and no other gateway replica honours them"
            );
        }
        let session_keys =
            (self.options.session_keys.clone()).unwrap_or_else(|| Arc::new(SessionKeys::random()));
        let proxy = Arc::new(
            Proxy::new(
                self.snapshot.clone(),
                self.metrics.clone(),
                self.options.proxy,
            )
            .with_session_keys(session_keys.clone()),
        );
        let (live, sampler) = Live::start(
            self.snapshot.clone(),
            self.metrics.clone(),
            self.status.clone(),
            self.tls.as_ref().map(|(_, a)| a.clone()),
        );
        let admin = Admin {
            snapshot: self.snapshot.clone(),
            registry: self.registry.clone(),
            status: self.status.clone(),
            session_keys,
            metrics: self.metrics.clone(),
            live,
            tls: self.tls.as_ref().map(|(_, a)| a.clone()),
        };
        tracing::info!(
            listen = %self.listen_addr(),
            admin = %self.admin_addr(),
            clusters = self.snapshot.load().clusters.len(),
            "gateway serving"
        );
        self.snapshot.load().published();
        self.status.set_ready(true);

        let acceptor = self.tls.as_ref().map(|(_, a)| a.clone());
        let rotation = acceptor.clone().map(|acceptor| {
            let (snapshot, settings) = (self.snapshot.clone(), self.options.tls.clone());
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(settings.refresh_every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let servers = acceptor.servers();
                    // Off this thread: reading and parsing files.
                    let metrics = metrics.clone();
                    let recovered = tokio::task::spawn_blocking(move || {
                        refresh_certificates(&servers, &metrics)
                    })
                    .await;
                    if recovered.unwrap_or(false) {
                        acceptor.update(tls_servers(&snapshot.load(), &settings));
                    }
                }
            })
        });
        let reloader = {
            let options = self.options.clone();
            let snapshot = self.snapshot.clone();
            let status = self.status.clone();
            let metrics = self.metrics.clone();
            let ctx = self.ctx.clone();
            let mut changes = Changes::new(
                triggers,
                &options.config,
                self.loaded_fingerprint,
                Duration::from_millis(200),
            );
            // One reload at a time: a later config is built only once the earlier one is
            // stored or rejected, so it can never be overtaken.
            tokio::spawn(async move {
                while let Some((trigger, files)) = changes.next().await {
                    let previous = snapshot.load_full();
                    match load_snapshot(files, &options, Some(previous), &ctx).await {
                        Ok(next) => {
                            if let Some(acceptor) = &acceptor {
                                acceptor.update(tls_servers(&next, &options.tls));
                            }
                            snapshot.store(Arc::new(next));
                            status.loaded();
                            metrics.reloaded(ReloadResult::Success);
                            tracing::info!(?trigger, "configuration reloaded");
                            let why = match trigger {
                                Trigger::Files => "the files changed",
                                Trigger::Signal => "SIGHUP",
                            };
                            let generation = status.reload().generation;
                            let text =
                                format!("configuration reloaded ({why}): generation {generation}");
                            metrics.events.push(EventKind::Reload, None, text, None);
                            // Then what the new config changed in its clusters.
                            snapshot.load().published();
                        }
                        Err(error) => {
                            tracing::error!(
                                ?trigger,
                                "configuration rejected, the previous one keeps serving:\n{error}"
                            );
                            status.rejected(error.to_string());
                            metrics.reloaded(ReloadResult::Failure);
                            let text = format!("rejected, the previous one keeps serving: {error}");
                            metrics
                                .events
                                .push(EventKind::ReloadRejected, None, text, None);
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

        // The proxy: worker threads of their own, fed by this thread's accept loop.
        let mut workers = Workers::start(self.options.workers, self.options.limits, &proxy)?;
        workers
            .accept(
                self.listener,
                self.tls,
                self.options.limits.max_connections,
                shutdown,
            )
            .await;
        self.status.set_ready(false);
        tracing::info!("shutting down: draining in-flight requests");
        workers.drain().await;
        reloader.abort();
        if let Some(rotation) = rotation {
            rotation.abort();
        }
        // Ends the dashboards' event streams, so the admin listener drains at once.
        sampler.abort();
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

/// Loads and validates the config from `files`, then builds its snapshot, all on a blocking
/// thread (parsing a big config or building Maglev tables never holds the accept loop on this
/// thread); then waits, at most [`FIRST_LOOKUP_WAIT`], for its new DNS clusters' first lookups,
/// so that a new cluster is not published before it has endpoints.
async fn load_snapshot(
    files: ConfigFiles,
    options: &RunOptions,
    previous: Option<Arc<Snapshot>>,
    ctx: &Context,
) -> Result<Snapshot, ConfigError> {
    let (paths, load, ctx) = (options.config.clone(), options.load.clone(), ctx.clone());
    let built = tokio::task::spawn_blocking(move || {
        build_snapshot(files, &paths, &load, previous.as_deref(), &ctx)
    })
    .await;
    let snapshot = match built {
        Ok(snapshot) => snapshot?,
        // A blocking task is never cancelled while the runtime runs: this is a panic.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    for cluster in snapshot.discovered(FIRST_LOOKUP_WAIT).await {
        tracing::warn!(
            %cluster,
            wait = ?FIRST_LOOKUP_WAIT,
            "no DNS answer yet: the cluster serves 503 until its first lookup answers"
        );
    }
    Ok(snapshot)
}

/// Loads and validates the config, then builds its snapshot (blocking).
fn build_snapshot(
    files: ConfigFiles,
    paths: &[PathBuf],
    load: &LoadOptions,
    previous: Option<&Snapshot>,
    ctx: &Context,
) -> Result<Snapshot, ConfigError> {
    let loaded = files.load(load)?;
    for finding in &loaded.diagnostics {
        match finding.severity {
            Severity::Error => {}
            Severity::Warning => tracing::warn!("{finding}"),
            Severity::Info => tracing::info!("{finding}"),
        }
    }
    if loaded.has_errors() {
        let errors = loaded
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        return Err(ConfigError::Findings(errors));
    }
    if loaded.config.virtual_services.is_empty() {
        return Err(ConfigError::NoVirtualService {
            paths: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Snapshot::build(Arc::new(loaded.config), previous, ctx)?)
}

/// The HTTPS servers of `snapshot`'s Gateways, their certificates read now.
fn tls_servers(snapshot: &Snapshot, settings: &TlsSettings) -> TlsServers {
    TlsServers::build(
        &snapshot.config.gateways,
        settings.credentials_dir.as_deref(),
    )
}

/// Reads the HTTPS servers' certificate files again, swapping in the rotated ones; a bad one
/// keeps the old certificate, logged. True when a server without a certificate now has one.
fn refresh_certificates(servers: &TlsServers, metrics: &Metrics) -> bool {
    let mut recovered = false;
    for (server, result) in servers.refresh() {
        let count = |result| {
            let server = server.to_owned();
            metrics
                .tls_refreshes
                .get_or_create(&TlsRefreshLabels { server, result })
                .inc();
        };
        match &result {
            Refresh::Rotated => count("rotated"),
            Refresh::Failed(_) => count("failed"),
            Refresh::Recovered => count("recovered"),
            Refresh::Unchanged => {}
        }
        match result {
            Refresh::Rotated => {
                tracing::info!(%server, "certificate rotated: new handshakes use the new one");
            }
            Refresh::Failed(error) => {
                tracing::error!(%server, %error, "new certificate not usable: the old one keeps serving");
            }
            Refresh::Recovered => {
                tracing::info!(%server, "certificate now usable: the server serves again");
                recovered = true;
            }
            Refresh::Unchanged => {}
        }
    }
    recovered
}
