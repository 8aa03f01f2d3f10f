//! sticky-svc: the workload of the article "Sticky sessions with Istio", built as a real service.
//!
//! The first `GET /ping` of each user (named by the `x-user` header) costs a configurable delay,
//! 5 s by default; later calls for that user are answered from a bounded in-memory cache in
//! microseconds. Run several replicas behind a proxy that hashes on `x-user` and every user pays
//! the cost once; break the stickiness and users pay it again on every replica they land on.
//!
//! Modules:
//! - [`api`]: the router and its handlers, `x-user` validation, the response formats.
//! - [`cache`]: the bounded single-flight cache, its eviction policy.
//! - [`config`]: the command line and its environment twins.
//! - [`healthcheck`]: the `healthcheck` subcommand, a tiny HTTP/1.1 probe for shell-less images.
//! - [`metrics`]: the Prometheus registry.
//! - [`serve`]: the hyper server, its header limit and the drain on shutdown.
//! - [`shutdown`]: readiness and the SIGTERM/SIGINT listener.
//!
//! `main.rs` only parses the command line, sets up logging and calls [`api::app`] and
//! [`serve::serve`]; tests drive the same router in process and over real sockets.

pub mod api;
pub mod cache;
pub mod config;
pub mod healthcheck;
pub mod metrics;
pub mod serve;
pub mod shutdown;

pub use api::{AppState, Workload, app};
pub use serve::{ServeOptions, serve};
