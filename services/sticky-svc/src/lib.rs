//! sticky-svc: the workload of the article "Sticky sessions with Istio", built as a real service.
//!
//! The first `GET /ping` of each user (named by the `x-user` header) costs a configurable delay,
//! 5 s by default; later calls for that user are answered from a bounded in-memory cache in
//! microseconds. Run several replicas behind a proxy that hashes on `x-user` and every user pays
//! the cost once; break the stickiness and users pay it again on every replica they land on.
//!
//! Modules:
//! - [`api`]: the application ([`App`]: `GET /ping` straight to the workload, the rest through
//!   an axum router), `x-user` validation, the response formats.
//! - [`cache`]: the bounded single-flight cache, its eviction policy.
//! - [`config`]: the command line and its environment twins.
//! - [`limits`]: how much the service takes on at once (connections, first calls in progress).
//! - [`metrics`]: the Prometheus registry.
//! - [`mod@serve`]: the hyper server, its header limit and the drain on shutdown, over plain
//!   TCP ([`serve()`]) or TLS ([`serve_tls`]).
//! - [`shutdown`]: readiness and the SIGTERM/SIGINT listener.
//! - [`tls`]: `--tls-cert`/`--tls-key` read into a rustls server (aws-lc-rs, ALPN h2 and
//!   http/1.1), and the handshake with its timeout.
//!
//! `main.rs` only parses the command line, sets up logging and calls [`app`] and [`serve()`] or
//! [`serve_tls`] (the `healthcheck` subcommand calls the workspace's `healthcheck` crate, shared
//! with the gateway); tests drive the same application in process (tower `oneshot`) and over
//! real sockets.
//!
//! ```no_run
//! use std::num::NonZeroUsize;
//! use std::time::Duration;
//!
//! use sticky_svc::limits::Limits;
//! use sticky_svc::shutdown::Readiness;
//! use sticky_svc::{AppState, ServeOptions, Workload, app, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let readiness = Readiness::new();
//! let workload = Workload {
//!     host: "sticky-svc-0".into(),
//!     first_call_cost: Duration::from_secs(5),
//!     cache_capacity: NonZeroUsize::new(100_000).unwrap(),
//! };
//! // At most 10 000 connections and 10 000 first calls in progress; a first call nobody
//! // waits for is cancelled after 2 s.
//! let state = AppState::with_limits(workload, Limits::default(), readiness.clone())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let options = ServeOptions {
//!     grace: Duration::from_secs(10),
//!     max_header_bytes: 16 * 1024,
//!     header_read_timeout: Duration::from_secs(30),
//!     readiness,
//! };
//! // Serve until Ctrl-C, then drain.
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! serve(listener, app(state), options, shutdown).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod cache;
pub mod config;
pub mod limits;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod tls;

pub use api::{App, AppState, Workload, app};
pub use serve::{ServeOptions, serve, serve_tls};
