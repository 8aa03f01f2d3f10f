//! hostile: clients that misbehave on purpose, for tests, the chaos run and memory measurements
//! of the gateway (or any HTTP server of ours).
//!
//! A run opens a bounded number of connections to one target at a bounded rate (so it never
//! trips the server's SYN backlog), has each play one [`Mode`] — idle HTTP/1.1 or h2c keep-alive
//! connections, a stalled request body, a stalled request head, a flood of requests — keeps them
//! for a hold time, then drops them and reports what the server did: how many connections it
//! closed and when (the earliest and latest close, each measured from its connection's opening),
//! and the status of every answer seen. It only plays against loopback or private addresses
//! (this machine, the project's own containers).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hostile::PlanError> {
//! use std::time::Duration;
//!
//! let mut plan = hostile::Plan::new(hostile::Mode::IdleH1, "127.0.0.1:8080".parse().unwrap())?;
//! plan.connections = 100;
//! plan.hold = Duration::from_secs(5);
//! let report = hostile::run(&plan, std::future::pending(), |_, _| {}).await;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Modules, bottom to top: each may import only the modules listed above it.
//! - [`plan`]: the mode, the target and the bounds of a run, checked.
//! - [`rlimit`]: the process's open-files limit, raised to what a run needs.
//! - [`pace`]: when the next connection may be opened.
//! - [`tally`]: what the connections saw, counted, and the [`Report`] made of it.
//! - [`client`]: what one connection does in each mode.
//! - [`swarm`]: one run: open at the pace, hold, stop, report.

pub mod client;
pub mod pace;
pub mod plan;
pub mod rlimit;
pub mod swarm;
pub mod tally;

pub use plan::{Mode, Plan, PlanError};
pub use swarm::{Phase, run};
pub use tally::Report;
