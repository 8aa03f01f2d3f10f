//! One load test, start to end: configure goose, run it, fold the ledger into a [`Summary`].
//!
//! The runner is a library function so the binary, `just load`, CI and the integration tests
//! all run the same code; tests call it in process against a stack on loopback. A `chaos` run
//! keeps every call, and reads the record of the pause only once the load has ended: the
//! script that pauses the replica writes it while the load runs. With `--ca-cert` it builds
//! each user's HTTPS client itself, trusting that CA (goose has no setting for it).
//!
//! The top of the crate's line of modules: it may import every other module, and no module
//! imports it (only `lib.rs` re-exports it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use goose::GooseAttack;
use goose::config::GooseConfiguration;
use goose::prelude::GooseError;
use thiserror::Error;

use crate::config::{Config, Scenario};
use crate::ledger::Ledger;
use crate::scenario;
use crate::summary::chaos::{self, Record};
use crate::summary::{GooseThreshold, Summary};

/// Goose's own threshold: every request must succeed. It marks the HTML/JSON reports; the
/// verdict comes from our counters (see [`crate::verdict`]).
pub const GOOSE_THRESHOLD: &str = "error-rate<=0%";

/// The load test could not run (as opposed to: it ran and broke a threshold).
#[derive(Debug, Error)]
pub enum RunError {
    /// A report's folder could not be created.
    #[error("cannot create the report folder {path}: {source}")]
    ReportDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP clients could not be built: for an https:// target, no CA certificates.
    #[error(
        "cannot build the HTTP client ({0}); an https:// target needs CA certificates \
         (/etc/ssl/certs, or SSL_CERT_FILE naming a PEM bundle)"
    )]
    Client(String),
    /// `--ca-cert`: the file could not be read, or holds no PEM certificate.
    #[error("cannot use the CA certificate file {path} (--ca-cert): {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Goose refused the configuration or failed while running.
    #[error("goose: {0}")]
    Goose(String),
    /// `chaos`: the record of the pause could not be read.
    #[error("cannot read the chaos record {path}: {reason}")]
    ChaosRecord {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<GooseError> for RunError {
    fn from(err: GooseError) -> Self {
        // Only the text is kept: it carries the detail, and keeps RunError Send + Sync.
        match err {
            GooseError::Reqwest(err) if err.is_builder() => Self::Client(err.to_string()),
            err => Self::Goose(err.to_string()),
        }
    }
}

/// Runs the load test `config` describes and summarises what the users saw.
pub async fn run(config: &Config) -> Result<Summary, RunError> {
    for report in &config.reports {
        if let Some(dir) = report.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RunError::ReportDir {
                path: dir.to_owned(),
                source,
            })?;
        }
    }
    let ledger = Arc::new(if config.scenario == Scenario::Chaos {
        Ledger::with_call_log()
    } else {
        Ledger::new()
    });
    let clients = match &config.ca_cert {
        Some(path) => user_clients(config, path)?,
        None => Vec::new(),
    };
    let scenario = scenario::goose_scenario(config, &run_id(), Arc::clone(&ledger), clients)?;
    let attack = GooseAttack::initialize_with_config(goose_configuration(config))?
        .register_scenario(scenario);
    let started = Instant::now();
    let rules = match attack.execute().await {
        Ok(metrics) => metrics.thresholds,
        Err(GooseError::ThresholdsFailed { metrics, .. }) => metrics.0.thresholds,
        Err(err) => return Err(err.into()),
    };
    let book = ledger.snapshot();
    let mut summary = Summary::new(
        config.scenario,
        config.host.as_str(),
        started.elapsed(),
        config.first_call_cost,
        &book,
    );
    if let Some(path) = &config.chaos_record {
        let record = read_record(path)?;
        summary.chaos = Some(chaos::figures(&book, &record, config.chaos_settle));
    }
    summary.goose_thresholds = rules
        .into_iter()
        .map(|rule| GooseThreshold {
            rule: rule.rule,
            observed: rule.observed,
            passed: rule.passed,
        })
        .collect();
    Ok(summary)
}

/// One client per goose user, trusting only the CA certificates in `path` (as `curl --cacert`):
/// built here, before any user starts, so a bad file or a client that cannot be built stops the
/// run at once instead of failing every request.
fn user_clients(config: &Config, path: &Path) -> Result<Vec<reqwest::Client>, RunError> {
    let refuse = |reason: String| RunError::CaCert {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|err| refuse(err.to_string()))?;
    let roots =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| refuse(err.to_string()))?;
    if roots.is_empty() {
        return Err(refuse("no PEM certificate in it".to_owned()));
    }
    (0..config.users)
        .map(|_| {
            // Goose's own client settings (user agent aside), on our roots alone: no system
            // store is read, which a FROM-scratch image does not have.
            reqwest::Client::builder()
                .user_agent(concat!("loadtest/", env!("CARGO_PKG_VERSION")))
                .timeout(config.timeout())
                .tls_certs_only(roots.iter().cloned())
                .build()
                .map_err(|err| RunError::Client(err.to_string()))
        })
        .collect()
}

fn read_record(path: &Path) -> Result<Record, RunError> {
    let refuse = |reason: String| RunError::ChaosRecord {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|err| refuse(err.to_string()))?;
    Record::parse(&text).map_err(|err| refuse(err.to_string()))
}

fn goose_configuration(config: &Config) -> GooseConfiguration {
    let mut goose = GooseConfiguration::default();
    goose.host = Some(config.host.to_string());
    goose.users = Some(config.users);
    goose.increase_rate = Some(config.hatch_rate.to_string());
    goose.run_time = Some(config.run_time.as_secs().to_string());
    goose.timeout = Some(config.timeout().as_secs().to_string());
    if config.scenario == Scenario::ColdStart {
        goose.throttle_requests = Some(config.cold_rate);
    }
    goose.report_file = config
        .reports
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    // A plain-http target never does TLS, yet reqwest's rustls verifier loads the system CA
    // store when each client is built, and fails without one: a FROM-scratch image has none.
    // Skipping verification for http:// targets only skips that load (sticky-svc never
    // redirects to https); https:// targets keep full verification and need a CA bundle.
    // With --ca-cert, goose's clients are never used: each user's is replaced by one of
    // `user_clients` (verifying against that CA) before its first request, so goose need not
    // load a system store for them either.
    goose.accept_invalid_certs = config.host.scheme() == "http" || config.ca_cert.is_some();
    goose.threshold = vec![GOOSE_THRESHOLD.to_owned()];
    // Judge the whole run: one early error must not cut the summary short.
    goose.no_threshold_abort = true;
    // Our summary is the output; goose's tables are in its reports.
    goose.no_print_metrics = true;
    goose.quiet = u8::from(!config.verbose);
    // No telnet control port: several runs (tests, CI) may share a machine. (The WebSocket
    // controller is off unless asked for.)
    goose.no_telnet = true;
    goose
}

/// Unique enough to keep `cold-start` keys of two runs apart.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{:x}-{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}
