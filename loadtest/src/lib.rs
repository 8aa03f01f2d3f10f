//! loadtest: goose scenarios that prove sticky routing, and the verdict CI acts on.
//!
//! Each goose user calls `GET /ping` with its own `x-user` key and records which replica
//! answered (`x-served-by`) and whether the cache did (`x-cache: hit|miss`). From that the run
//! reports stickiness, lost caches, cold and warm latency and the spread of users over hosts,
//! and fails when a threshold is broken: goose alone would exit 0 with every request failed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = loadtest::Config::new("http://127.0.0.1:8080")?;
//! let summary = loadtest::run(&config).await?;
//! let verdict = summary.verdict(&config.thresholds);
//! println!("{summary}{verdict}");
//! # Ok(()) }
//! ```
//!
//! Modules, bottom to top: each may import only the modules listed above it, never one below.
//! - [`config`]: the command line and its checks, the scenario to run and the thresholds.
//! - [`ledger`]: the per-user record of hosts, cache outcomes and latencies.
//! - [`scenario`]: the `sticky`, `rebalance` and `cold-start` goose scenarios (`chaos` loads
//!   as `sticky` does).
//! - [`summary`]: the figures of a run, printed and written as JSON; [`summary::chaos`], those
//!   around the pause of a replica.
//! - [`verdict`]: the violations of the thresholds that fail a run.
//! - [`runner`]: one load test, from configuration to summary.

pub mod config;
pub mod ledger;
pub mod runner;
pub mod scenario;
pub mod summary;
pub mod verdict;

pub use config::{Cli, Config, ConfigError, Scenario, Thresholds};
pub use runner::{RunError, run};
pub use summary::Summary;
pub use verdict::{Verdict, Violation};
