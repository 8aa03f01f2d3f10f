//! The `sticky-svc` binary: parse the command line, set up logging, run the library.
//!
//! It holds no logic of its own: everything it runs is the `sticky_svc` library's.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sticky_svc::config::{Cli, Command, HealthcheckArgs, LogFormat, ServeArgs};
use sticky_svc::shutdown::{Readiness, Signals};
use sticky_svc::tls::Tls;
use sticky_svc::{AppState, ServeOptions, Workload, app, serve, serve_tls};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Healthcheck(args)) => health(cli.listen, &args),
        None => run(cli.listen, cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sticky-svc: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn health(listen: SocketAddr, args: &HealthcheckArgs) -> anyhow::Result<()> {
    healthcheck::check(healthcheck::target(listen), args.timeout)?;
    Ok(())
}

fn run(listen: SocketAddr, args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .with_context(|| format!("invalid log filter {:?}", args.log_filter))?;
    // Colours only on a terminal: escape codes in a container's log file are noise.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    // One worker: a current-thread runtime, which skips the cross-thread wake-ups a one-thread
    // multi-thread runtime still pays (that is the setting the benchmark compares with nginx).
    let mut runtime = match args.workers.map(|workers| workers.get()) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_until_signal(listen, args))
}

async fn serve_until_signal(listen: SocketAddr, args: ServeArgs) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let limits = args.limits();
    let tls = match args.tls_files()? {
        Some((cert, key)) => {
            let mut tls = Tls::from_pem_files(cert, key)?;
            tls.handshake_timeout = args.tls_handshake_timeout;
            Some(tls)
        }
        None => None,
    };
    let host = match args.host_name {
        Some(host) => host,
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    let readiness = Readiness::new();
    let workload = Workload {
        host: host.clone(),
        first_call_cost: args.first_call_cost,
        cache_capacity: args.cache_capacity,
    };
    let state = AppState::with_limits(workload, limits, readiness.clone())?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        host,
        first_call_cost = ?args.first_call_cost,
        cache_capacity = args.cache_capacity,
        max_first_calls = limits.max_first_calls,
        abandon_grace = ?limits.abandon_grace,
        max_connections = limits.max_connections,
        tls = tls.is_some(),
        "sticky-svc starting"
    );
    let options = ServeOptions {
        grace: args.shutdown_grace,
        max_header_bytes: args.max_header_bytes,
        header_read_timeout: args.header_read_timeout,
        readiness,
    };
    let shutdown = async {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutdown requested");
    };
    let drained = match tls {
        Some(tls) => serve_tls(listener, app(state), options, tls, shutdown).await?,
        None => serve(listener, app(state), options, shutdown).await?,
    };
    if drained.abandoned > 0 {
        tracing::warn!(
            abandoned = drained.abandoned,
            "exiting with connections still open"
        );
    }
    Ok(())
}
