//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules:
//!
//! - [`discovery`]: endpoint sets per cluster, from STATIC ServiceEntry endpoints or DNS.
//! - [`health`]: passive outlier detection (lock-free counters, pure ejection state machine).
//! - [`metrics`]: Prometheus metrics with typed label sets.
//! - [`proxy`]: the request path (listener, header hygiene, upstream pools, retries).
//! - [`reload`]: when to reload the config (folder watch, SIGHUP, poll) and a content fingerprint.
pub mod discovery;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod reload;
