//! The `gateway` command line: parse arguments, set up logging, call the library.
//!
//! It holds no logic of its own: everything it runs is the `gateway` library's.

// glibc malloc/free were ~10% of a proxied request's instructions; mimalloc (as in sticky-svc)
// cut the total by 5.7% under callgrind (bench/peers-instructions.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gateway::config::{self, Diagnostic, LoadOptions, Severity};
use gateway::control::{Gateway, RunOptions, TlsSettings};
use gateway::discovery::RefreshBounds;
use gateway::health::active::ActiveCheck;
use gateway::proxy::ProxySettings;
use gateway::proxy::access_log::TARGET as ACCESS_LOG;
use gateway::proxy::listener::Limits;
use gateway::session::SessionKeys;

/// An L7 gateway that reads Istio YAML and routes by Maglev consistent hashing.
#[derive(Parser)]
#[command(name = "gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: route by the Istio YAML, hot-reloading it.
    Run(Box<RunArgs>),
    /// Validate and analyse Istio YAML (files or directories); exit 1 on any error.
    Check(CheckArgs),
    /// GET the admin /healthz of a running gateway; exit 0 when it answers 200 within 2s, 1
    /// otherwise (for container health checks in images with no shell or curl).
    Healthcheck(HealthcheckArgs),
    /// Make a local CA and a server certificate for development, as a Kubernetes TLS Secret's
    /// files; both are reused while they are still good.
    Cert(gateway::certgen::Request),
}

#[derive(Args)]
struct RunArgs {
    /// Istio YAML files or directories (Gateway, VirtualService, DestinationRule, ServiceEntry).
    #[arg(long, env = "GATEWAY_CONFIG", required = true, value_delimiter = ',')]
    config: Vec<PathBuf>,
    /// Proxy listener.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// TLS listener serving the Gateways' HTTPS servers (SNI picks the server, ALPN h2 and
    /// http/1.1); unset: no TLS.
    #[arg(long, env = "GATEWAY_LISTEN_TLS")]
    listen_tls: Option<SocketAddr>,
    /// Where `credentialName: X` finds `X/tls.crt`, `X/tls.key` (and `X/ca.crt` or
    /// `X-cacert/ca.crt` for MUTUAL): Kubernetes TLS Secrets mounted as volumes.
    #[arg(long, env = "GATEWAY_CREDENTIALS_DIR")]
    credentials_dir: Option<PathBuf>,
    /// A TLS handshake not finished within this is closed.
    #[arg(long, env = "GATEWAY_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    tls_handshake_timeout: Duration,
    /// How often certificate files are read again to pick up a rotation (cert-manager and
    /// Kubernetes replace a mounted Secret's files in place).
    #[arg(long, env = "GATEWAY_TLS_REFRESH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    tls_refresh_interval: Duration,
    /// The port `tls.httpsRedirect` sends clients to (default: the Gateway's HTTPS server's
    /// port number), for when the HTTPS listener is published on another port.
    #[arg(long, env = "GATEWAY_HTTPS_PORT")]
    https_port: Option<u16>,
    /// Admin listener (/ dashboard, /healthz /readyz /metrics /config /clusters /lookup).
    #[arg(long, env = "GATEWAY_ADMIN", default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Threads serving proxied connections, each with its own single-threaded event loop;
    /// default: the number of CPUs. One more thread runs the control path and accepts, handing
    /// each new connection to the worker with the fewest open ones.
    #[arg(long, env = "GATEWAY_WORKERS")]
    workers: Option<usize>,
    /// Serve only the VirtualServices bound to this Gateway (`name` or `namespace/name`).
    #[arg(long, env = "GATEWAY_GATEWAY")]
    gateway: Option<String>,
    /// Namespace of documents without metadata.namespace.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Cluster domain that qualifies short host names.
    #[arg(long, env = "GATEWAY_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// DNS server for discovery (`ip:port`); default: the system's, from /etc/resolv.conf.
    #[arg(long, env = "GATEWAY_DNS_SERVER")]
    dns_server: Option<SocketAddr>,
    /// Re-resolve DNS no sooner than this, whatever the TTL.
    #[arg(long, env = "GATEWAY_DNS_MIN_REFRESH", default_value = "1s", value_parser = humantime::parse_duration)]
    dns_min_refresh: Duration,
    /// Re-resolve DNS no later than this, whatever the TTL.
    #[arg(long, env = "GATEWAY_DNS_MAX_REFRESH", default_value = "5s", value_parser = humantime::parse_duration)]
    dns_max_refresh: Duration,
    /// Once DNS lookups of a name have failed (no answer, SERVFAIL) this long, drop its
    /// endpoints instead of keeping the last answer (default: keep them, as Envoy).
    #[arg(long, env = "GATEWAY_DNS_FAILURE_GRACE", value_parser = humantime::parse_duration)]
    dns_failure_grace: Option<Duration>,
    /// Connections served at once; more get 429.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Connections one client address may have open at once; more get 429. Off by default:
    /// behind a NAT or Docker's port proxy every client shares one address.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS_PER_CLIENT")]
    max_connections_per_client: Option<u32>,
    /// Largest request head (request line + headers); more gets 431.
    #[arg(long, env = "GATEWAY_MAX_HEADER_SIZE", default_value_t = 64 * 1024)]
    max_header_size: usize,
    /// Largest request body; more gets 413.
    #[arg(long, env = "GATEWAY_MAX_BODY_SIZE", default_value_t = 64 * 1024 * 1024)]
    max_body_size: u64,
    /// Request bodies up to this size are kept so the request can be retried.
    #[arg(long, env = "GATEWAY_RETRY_BUFFER_SIZE", default_value_t = 64 * 1024)]
    retry_buffer_size: u64,
    /// A connection with no request in flight this long (a trickled request head, an idle
    /// HTTP/1.1 keep-alive connection) is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// A request body that makes no progress this long gets 408 and its connection closes.
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// The whole request must have arrived this long after its headers, or 408 (default: no
    /// deadline, only --body-timeout).
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// The timeout, up to the response headers, of a route whose VirtualService sets none (Istio
    /// has none; nginx's proxy_read_timeout is 60 s). `0s`: none.
    #[arg(long, env = "GATEWAY_ROUTE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    route_timeout: Duration,
    /// A response body with no data from its replica this long is cut (its client connection
    /// closed mid-body), as nginx's proxy_read_timeout; a body that keeps moving is never cut.
    /// `0s`: never.
    #[arg(long, env = "GATEWAY_RESPONSE_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    response_idle_timeout: Duration,
    /// Keys of persistent sessions (hosts labelled istio.io/persistent-session[-header]): one
    /// secret of at least 32 characters per line (`openssl rand -base64 48`); the first signs,
    /// every one verifies (rotation: add the new key first, remove the old one once its
    /// sessions have expired). Every gateway replica given the same file honours the others'
    /// sessions. Without it a random key is made, and sessions hold only within this process.
    #[arg(long, env = "GATEWAY_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
    /// A persistent session unused this long ends (the Gateway API's idleTimeout), where its
    /// host's sticky.dev/session-idle-timeout annotation sets no other. `0s`: never.
    #[arg(long, env = "GATEWAY_SESSION_IDLE_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    session_idle_timeout: Duration,
    /// A persistent session ends this long after it was created (the Gateway API's
    /// absoluteTimeout), where sticky.dev/session-absolute-timeout sets no other. `0s`: never.
    #[arg(long, env = "GATEWAY_SESSION_ABSOLUTE_TIMEOUT", default_value = "24h", value_parser = humantime::parse_duration)]
    session_absolute_timeout: Duration,
    /// An HTTP/2 client connection with no stream open this long is sent GOAWAY and closed.
    #[arg(long, env = "GATEWAY_HTTP2_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    http2_idle_timeout: Duration,
    /// Ping an HTTP/2 client connection after this long without a frame; close it when the
    /// ping goes unanswered (20 s at most). `0s`: no pings.
    #[arg(long, env = "GATEWAY_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    http2_keepalive_interval: Duration,
    /// Streams one HTTP/2 client connection may have open at once.
    #[arg(
        long,
        env = "GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 100
    )]
    http2_max_concurrent_streams: u32,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// How often the config is re-read when no file event arrives.
    #[arg(long, env = "GATEWAY_RELOAD_POLL", default_value = "5s", value_parser = humantime::parse_duration)]
    reload_poll: Duration,
    /// Active health checks: GET this path on every endpoint (off when unset).
    #[arg(long, env = "GATEWAY_HEALTH_CHECK_PATH")]
    health_check_path: Option<String>,
    /// Time between active checks of one endpoint.
    #[arg(long, env = "GATEWAY_HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    health_check_interval: Duration,
    /// An active check slower than this fails.
    #[arg(long, env = "GATEWAY_HEALTH_CHECK_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    health_check_timeout: Duration,
    /// Failed checks in a row that take an endpoint out.
    #[arg(long, env = "GATEWAY_HEALTH_CHECK_UNHEALTHY", default_value_t = 2)]
    health_check_unhealthy: u32,
    /// Passed checks in a row that bring it back.
    #[arg(long, env = "GATEWAY_HEALTH_CHECK_HEALTHY", default_value_t = 1)]
    health_check_healthy: u32,
    /// One access log line per request, on stdout (text, or JSON with `--log-format json`).
    #[arg(long, env = "GATEWAY_ACCESS_LOG")]
    access_log: bool,
    /// Log format (`human` is accepted for `text`, as sticky-svc's former word).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The `LOG_FORMAT` words, the same in every binary of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    #[value(alias = "human")]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
struct HealthcheckArgs {
    /// The admin listener to ask (a wildcard address, 0.0.0.0 or ::, is asked on loopback).
    #[arg(long, env = "GATEWAY_ADMIN", default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
}

#[derive(Args)]
struct CheckArgs {
    /// YAML files or directories (read recursively: *.yaml, *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Namespace of documents without metadata.namespace.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Cluster domain that qualifies short host names.
    #[arg(long, env = "GATEWAY_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Where `credentialName: X` finds `X/tls.crt` and `X/tls.key`: each HTTPS server's
    /// certificate is checked (missing, unreadable, expired, not covering the hosts).
    #[arg(long, env = "GATEWAY_CREDENTIALS_DIR")]
    credentials_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One line per finding, then a summary.
    Text,
    /// One JSON object: findings and counts.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Check(args) => {
            logging(LogFormat::Text, "warn", false);
            check(&args)
        }
        Command::Healthcheck(args) => Ok(health(args.admin)),
        Command::Cert(request) => gateway::certgen::ensure(&request, std::time::SystemTime::now())
            .map(|outcome| {
                print!("{outcome}");
                ExitCode::SUCCESS
            })
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`); with `access_log`, the access log
/// (target `access`, see `gateway::proxy::access_log`) to stdout, whatever `RUST_LOG` says, as
/// nginx keeps its access log apart from its error log.
fn logging(format: LogFormat, default: &str, access_log: bool) {
    use std::io::IsTerminal;

    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{Layer, Registry, fmt};

    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    // Static directives only (no filter function): a callsite that is off is then off for
    // good, at one atomic load per request, rather than asking every filter every time.
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(default))
            .add_directive(
                format!("{ACCESS_LOG}=off")
                    .parse()
                    .expect("a valid directive"),
            )
    };
    // Colours only for a terminal: not in files, pipes or `docker logs`.
    let logs = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let logs: Boxed = match format {
        LogFormat::Text => logs.with_filter(filter()).boxed(),
        LogFormat::Json => logs.json().with_filter(filter()).boxed(),
    };
    let mut layers = vec![logs];
    if access_log {
        let only_access = Targets::new().with_target(ACCESS_LOG, tracing::Level::INFO);
        let access = fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(std::io::stdout().is_terminal())
            .with_target(false);
        layers.push(match format {
            LogFormat::Text => access.with_filter(only_access).boxed(),
            LogFormat::Json => access
                .json()
                .with_current_span(false)
                .with_span_list(false)
                .with_filter(only_access)
                .boxed(),
        });
    }
    tracing_subscriber::registry().with(layers).init();
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    logging(args.log_format, "info", args.access_log);
    let workers = match args.workers {
        Some(0) => anyhow::bail!("--workers must be at least 1"),
        Some(workers) => workers,
        None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    let session_keys = match &args.session_key_file {
        Some(path) => Some(std::sync::Arc::new(
            SessionKeys::from_file(path).context("--session-key-file")?,
        )),
        None => None,
    };
    // The control path (config reloads, discovery, health checks, admin) on this thread; the
    // proxy on `workers` threads of their own (see `Gateway::serve`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let options = RunOptions {
        config: args.config,
        listen: args.listen,
        workers,
        admin: args.admin,
        load: LoadOptions {
            namespace: args.namespace,
            cluster_domain: args.cluster_domain,
        },
        gateway: args.gateway,
        dns_server: args.dns_server,
        dns_refresh: RefreshBounds {
            min: args.dns_min_refresh,
            max: args.dns_max_refresh,
            failure_grace: args.dns_failure_grace,
        },
        limits: Limits {
            max_connections: args.max_connections,
            max_header_bytes: args.max_header_size,
            header_read_timeout: args.idle_timeout,
            http2_idle_timeout: args.http2_idle_timeout,
            http2_keepalive: Some(args.http2_keepalive_interval).filter(|d| !d.is_zero()),
            http2_max_streams: args.http2_max_concurrent_streams,
            max_connections_per_client: args.max_connections_per_client,
            grace: args.shutdown_grace,
        },
        proxy: ProxySettings {
            max_body_bytes: args.max_body_size,
            retry_buffer_bytes: args.retry_buffer_size,
            access_log: args.access_log,
            body_timeout: args.body_timeout,
            request_timeout: args.request_timeout,
            route_timeout: Some(args.route_timeout).filter(|d| !d.is_zero()),
            response_idle_timeout: Some(args.response_idle_timeout).filter(|d| !d.is_zero()),
            session_idle_timeout: Some(args.session_idle_timeout).filter(|d| !d.is_zero()),
            session_absolute_timeout: Some(args.session_absolute_timeout).filter(|d| !d.is_zero()),
            https_redirect_port: args.https_port,
        },
        reload_poll: args.reload_poll,
        session_keys,
        tls: TlsSettings {
            listen: args.listen_tls,
            credentials_dir: args.credentials_dir,
            handshake_timeout: args.tls_handshake_timeout,
            refresh_every: args.tls_refresh_interval,
        },
        active: args.health_check_path.map(|path| ActiveCheck {
            path,
            interval: args.health_check_interval,
            timeout: args.health_check_timeout,
            unhealthy_threshold: args.health_check_unhealthy,
            healthy_threshold: args.health_check_healthy,
        }),
    };
    runtime.block_on(async {
        let gateway = Gateway::bind(options).await?;
        gateway.serve(shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// How long `gateway healthcheck` waits for the admin listener, connecting included.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `gateway healthcheck`: the admin listener's /healthz through the workspace's `healthcheck`
/// crate (no DNS, no TLS, no runtime), the same client as `sticky-svc healthcheck`.
fn health(admin: SocketAddr) -> ExitCode {
    match healthcheck::check(healthcheck::target(admin), HEALTHCHECK_TIMEOUT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}`: the error and its cause, e.g. "cannot connect to …: Connection refused".
            eprintln!("gateway healthcheck: {:#}", anyhow::Error::new(error));
            ExitCode::FAILURE
        }
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let options = LoadOptions {
        namespace: args.namespace.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    let loaded = config::load_paths(&args.paths, &options).context("loading configuration")?;
    let mut findings = loaded.diagnostics;
    findings.extend(config::check(&loaded.config));
    findings.extend(gateway::tls::check_certificates(
        &loaded.config.gateways,
        args.credentials_dir.as_deref(),
    ));
    findings.sort_by(|a, b| {
        a.location
            .cmp(&b.location)
            .then(b.severity.cmp(&a.severity))
    });
    let count = |s: Severity| findings.iter().filter(|d| d.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let c = &loaded.config;
    let resources = c.gateways.len()
        + c.virtual_services.len()
        + c.destination_rules.len()
        + c.service_entries.len();
    match args.format {
        Format::Text => {
            for d in &findings {
                println!("{d}");
            }
            println!(
                "{} error{}, {} warning{}; {resources} valid Istio resource{} read",
                errors,
                plural(errors),
                warnings,
                plural(warnings),
                plural(resources)
            );
        }
        Format::Json => {
            let report = serde_json::json!({
                "errors": errors,
                "warnings": warnings,
                "resources": resources,
                "findings": findings.iter().collect::<Vec<&Diagnostic>>(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_format_takes_text_json_and_sticky_svcs_old_human() {
        let parse = |word: &str| {
            let cli = Cli::try_parse_from([
                "gateway",
                "run",
                "--config",
                "istio.yaml",
                "--log-format",
                word,
            ])?;
            let Command::Run(args) = cli.command else {
                unreachable!("`run` parses as Run")
            };
            Ok::<_, clap::Error>(args.log_format)
        };
        assert_eq!(parse("text").unwrap(), LogFormat::Text);
        assert_eq!(parse("human").unwrap(), LogFormat::Text);
        assert_eq!(parse("json").unwrap(), LogFormat::Json);
        assert!(parse("pretty").is_err());
        // Read from the definition, not a parse: a LOG_FORMAT in the test's environment would win.
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        let flag = run.get_arguments().find(|arg| arg.get_id() == "log_format");
        assert_eq!(flag.unwrap().get_default_values(), ["text"]);
    }
}
