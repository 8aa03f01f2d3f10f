//! The command line, checked into a [`Config`] the runner can trust: which [`Scenario`] to run,
//! against what, and the [`Thresholds`] the run is held to.
//!
//! Every flag has a default, so `loadtest` alone runs the `sticky` scenario with 100 users for
//! 30 s against `http://localhost`. Values clap cannot check by type (a run time that is not a
//! whole number of seconds, a percentage above 100, a host without a scheme) are refused by
//! [`Cli::into_config`] with a sentence naming the flag.
//!
//! The bottom of the crate's line of modules: every other module may read a [`Config`], and it
//! may import none of them (`ledger`, `scenario`, `summary`, `verdict`, `runner`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::Url;
use serde::Serialize;
use thiserror::Error;

/// Slack added to the ideal moved share when `--max-moved` is not given, in points: a
/// consistent hash over a few dozen users rarely lands exactly on the ideal.
pub const DEFAULT_MOVED_SLACK_PCT: f64 = 10.0;

/// Which load shape to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Each user loops on its own key; any host change is a stickiness violation.
    Sticky,
    /// As `sticky`, while replicas are scaled: one host change per user is allowed, and the
    /// share of users that moved is compared with the ideal for the change.
    Rebalance,
    /// Every call is a new user, at a fixed rate: measures the first-call cost.
    ColdStart,
    /// As `sticky`, while one replica is paused and resumed (`scripts/chaos.sh`): judged call
    /// by call against the pause window read from `--chaos-record` when the load ends.
    Chaos,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sticky => "sticky",
            Self::Rebalance => "rebalance",
            Self::ColdStart => "cold-start",
            Self::Chaos => "chaos",
        }
    }
}

/// What a run must achieve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// Most failed calls allowed.
    pub max_errors: u64,
    /// Least share of users served by one host, percent (`sticky` only).
    pub min_stickiness: Option<f64>,
    /// Most cache misses after users' first calls (`sticky` only).
    pub max_lost_caches: Option<u64>,
    /// Most users allowed to move, percent (`rebalance`); `None`: the ideal plus
    /// [`DEFAULT_MOVED_SLACK_PCT`].
    pub max_moved: Option<f64>,
    /// Highest warm p99.
    pub max_warm_p99: Duration,
    /// Most a cold call may take beyond the expected first-call cost (`cold-start`).
    pub max_cold_overhead: Duration,
    /// Longest call of a paused replica's users, from its start (`chaos`).
    pub max_chaos_latency: Duration,
}

/// A flag value clap accepted by type but that makes no sense.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    /// `--host` is not an absolute http(s) URL.
    #[error("--host {host:?} is not an http:// or https:// URL with a host name: {reason}")]
    Host {
        /// What was given.
        host: String,
        /// Why it was refused.
        reason: String,
    },
    /// `--users` is zero.
    #[error("--users must be at least 1")]
    NoUsers,
    /// `--run-time` is not a whole, positive number of seconds (goose counts in seconds).
    #[error("--run-time must be a whole number of seconds, at least 1s, got {0:?}")]
    RunTime(Duration),
    /// A rate flag is zero, negative or not a number.
    #[error("--{flag} must be a positive number, got {value}")]
    Rate {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// A percentage outside 0..=100.
    #[error("--{flag} is a percentage from 0 to 100, got {value}")]
    Percent {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// `--first-call-cost` is zero: the cold calls could not be told from warm ones.
    #[error("--first-call-cost must be more than zero")]
    NoCost,
    /// `--key-prefix` would not make a valid `x-user` value.
    #[error("--key-prefix must be 1 to 200 visible ASCII characters, got {0:?}")]
    KeyPrefix(String),
    /// `-s chaos` without `--chaos-record`, or `--chaos-record` with another scenario.
    #[error(
        "-s chaos and --chaos-record FILE go together: the file says which replica was paused and when"
    )]
    ChaosRecord,
}

/// Load scenarios that prove sticky routing: stickiness, lost caches, cold and warm latency.
///
/// Exit status: 0 when every threshold holds, 1 when one is broken, 2 on a usage error,
/// 3 when the load test could not run.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    /// The scenario to run.
    #[arg(short, long, value_enum, default_value_t = Scenario::Sticky)]
    pub scenario: Scenario,
    /// The gateway (or a single sticky-svc) to load, scheme and host, optional port.
    #[arg(
        short = 'H',
        long,
        env = "LOADTEST_HOST",
        default_value = "http://localhost"
    )]
    pub host: String,
    /// For an https:// host: trust the CA certificates in this PEM file, and only them, as
    /// `curl --cacert` does (a local CA such as `gateway cert`'s; no system store needed).
    /// Ignored for http:// hosts.
    #[arg(long, env = "LOADTEST_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Concurrent users (goose users); in `sticky`/`rebalance` each has its own `x-user` key.
    #[arg(short, long, default_value_t = 100)]
    pub users: usize,
    /// How long to load once every user has started, such as 30s or 2m (whole seconds).
    #[arg(short = 't', long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub run_time: Duration,
    /// Users started per second.
    #[arg(short = 'r', long, default_value_t = 20.0)]
    pub hatch_rate: f64,
    /// The workload's first-call cost, as the service was started with.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub first_call_cost: Duration,
    /// `cold-start`: new users (first calls) per second across all goose users; give enough
    /// users to keep this many first calls in flight (rate x cost).
    #[arg(long, default_value_t = 10)]
    pub cold_rate: usize,
    /// `sticky`/`rebalance`: each user's pause between two calls (0s: as fast as possible).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Prefix of the `x-user` keys: `<prefix>-<user index>`.
    #[arg(long, default_value = "user")]
    pub key_prefix: String,
    /// Fail when the warm (cache hit) p99 latency is above this.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub max_warm_p99: Duration,
    /// `sticky`: fail when fewer than this percent of users were served by one host only.
    #[arg(long, default_value_t = 100.0)]
    pub min_stickiness: f64,
    /// `sticky`: fail when more calls than this missed the cache after a user's first call
    /// (a replica that restarted under the same name, or evicted users, makes them pay again).
    #[arg(long, default_value_t = 0)]
    pub max_lost_caches: u64,
    /// `rebalance`: fail when more than this percent of users moved
    /// [default: the ideal for the observed replica change plus 10 points].
    #[arg(long)]
    pub max_moved: Option<f64>,
    /// `cold-start`: fail when the cold p99 is more than the first-call cost plus this.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_cold_overhead: Duration,
    /// `chaos`: JSON naming the paused replica and when it was paused and resumed
    /// (`{"replica", "paused_at", "resumed_at"}`, UTC RFC 3339), written while the load runs
    /// and read once it ends.
    #[arg(long, env = "LOADTEST_CHAOS_RECORD", value_name = "FILE")]
    pub chaos_record: Option<PathBuf>,
    /// `chaos`: fail when a call of the paused replica's users takes longer than this, from
    /// the moment it was sent.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub max_chaos_latency: Duration,
    /// `chaos`: from this long after the resume on, every call must be served by the user's
    /// own replica (the one before the pause) from its cache.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub chaos_settle: Duration,
    /// Where goose's report.html and report.json and our summary.json are written.
    #[arg(long, env = "LOADTEST_OUT_DIR", default_value = "target/loadtest")]
    pub out_dir: PathBuf,
    /// Goose report files instead of `<out-dir>/report.{html,json}`; repeatable, the
    /// extension picks the format (.html, .json, .md).
    #[arg(long, value_name = "FILE")]
    pub report_file: Vec<PathBuf>,
    /// Write no goose report (the summary is still written).
    #[arg(long, conflicts_with = "report_file")]
    pub no_reports: bool,
    /// Show goose's own progress log.
    #[arg(short, long)]
    pub verbose: bool,
}

/// A checked load test: what the runner needs, nothing from the command line's shape.
#[derive(Debug, Clone)]
pub struct Config {
    /// The scenario.
    pub scenario: Scenario,
    /// Base URL every request's path is joined to.
    pub host: Url,
    /// The PEM file of the CA certificates an https:// host is verified against, alone; `None`:
    /// the system's store.
    pub ca_cert: Option<PathBuf>,
    /// Goose users.
    pub users: usize,
    /// Load time after all users started.
    pub run_time: Duration,
    /// Users started per second.
    pub hatch_rate: f64,
    /// The workload's expected first-call cost.
    pub first_call_cost: Duration,
    /// New users per second in `cold-start`.
    pub cold_rate: usize,
    /// Pause between a user's calls in `sticky` and `rebalance`.
    pub pause: Duration,
    /// Prefix of the `x-user` keys.
    pub key_prefix: String,
    /// `chaos`: the pause window's file, read when the load ends.
    pub chaos_record: Option<PathBuf>,
    /// `chaos`: how long after the resume every user must be home again.
    pub chaos_settle: Duration,
    /// Goose report files to write.
    pub reports: Vec<PathBuf>,
    /// Whether goose logs its progress.
    pub verbose: bool,
    /// What makes the run fail.
    pub thresholds: Thresholds,
}

impl Config {
    /// A configuration with the command line's defaults for `host`: handy for tests.
    pub fn new(host: &str) -> Result<Self, ConfigError> {
        Cli::parse_from(["loadtest", "--host", host, "--no-reports"]).into_config()
    }

    /// The per-request timeout: a cold call must never time out, a hung one must. In `chaos`
    /// it is well above `--max-chaos-latency`, so a slow call is measured, not cut short.
    pub fn timeout(&self) -> Duration {
        let timeout = self.first_call_cost * 2 + Duration::from_secs(10);
        if self.scenario == Scenario::Chaos {
            timeout.max(self.thresholds.max_chaos_latency + Duration::from_secs(10))
        } else {
            timeout
        }
    }
}

impl Cli {
    /// Checks the values clap could not, and resolves the report paths.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let host = parse_host(&self.host)?;
        if self.users == 0 {
            return Err(ConfigError::NoUsers);
        }
        if self.run_time.subsec_nanos() != 0 || self.run_time.is_zero() {
            return Err(ConfigError::RunTime(self.run_time));
        }
        check_rate("hatch-rate", self.hatch_rate)?;
        if self.cold_rate == 0 {
            return Err(ConfigError::Rate {
                flag: "cold-rate",
                value: 0.0,
            });
        }
        if self.first_call_cost.is_zero() {
            return Err(ConfigError::NoCost);
        }
        check_percent("min-stickiness", self.min_stickiness)?;
        if let Some(moved) = self.max_moved {
            check_percent("max-moved", moved)?;
        }
        let prefix_ok = (1..=200).contains(&self.key_prefix.len())
            && self.key_prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            return Err(ConfigError::KeyPrefix(self.key_prefix));
        }
        if (self.scenario == Scenario::Chaos) != self.chaos_record.is_some() {
            return Err(ConfigError::ChaosRecord);
        }
        let reports = if self.no_reports {
            Vec::new()
        } else if self.report_file.is_empty() {
            vec![
                self.out_dir.join("report.html"),
                self.out_dir.join("report.json"),
            ]
        } else {
            self.report_file
        };
        let thresholds = Thresholds {
            max_errors: 0,
            min_stickiness: (self.scenario == Scenario::Sticky).then_some(self.min_stickiness),
            max_lost_caches: (self.scenario == Scenario::Sticky).then_some(self.max_lost_caches),
            max_moved: self.max_moved,
            max_warm_p99: self.max_warm_p99,
            max_cold_overhead: self.max_cold_overhead,
            max_chaos_latency: self.max_chaos_latency,
        };
        Ok(Config {
            scenario: self.scenario,
            // Only https needs it: a plain-http run with the variable set is not an error.
            ca_cert: self.ca_cert.filter(|_| host.scheme() == "https"),
            host,
            users: self.users,
            run_time: self.run_time,
            hatch_rate: self.hatch_rate,
            first_call_cost: self.first_call_cost,
            cold_rate: self.cold_rate,
            pause: self.pause,
            key_prefix: self.key_prefix,
            chaos_record: self.chaos_record,
            chaos_settle: self.chaos_settle,
            reports,
            verbose: self.verbose,
            thresholds,
        })
    }
}

fn parse_host(host: &str) -> Result<Url, ConfigError> {
    let refuse = |reason: &str| ConfigError::Host {
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(host).map_err(|err| refuse(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("there is no host name"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(refuse("give the base URL only; the scenarios call /ping"));
    }
    Ok(url)
}

fn check_rate(flag: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Rate { flag, value })
    }
}

fn check_percent(flag: &'static str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Percent { flag, value })
    }
}

#[cfg(test)]
mod tests;
