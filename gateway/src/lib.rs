//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules:
//! - [`admin`] — the admin pages: health, readiness, metrics, config, clusters, key lookup.
//! - [`balancer`] — one selection interface over round robin, random, least request, ring hash
//!   and Maglev, with retry fallback.
//! - [`cluster`] — a cluster at run time: endpoints, balancer, pool, and the task that rebuilds
//!   the balancer on discovery and ejection changes.
//! - [`config`] — Istio YAML (Gateway, VirtualService, DestinationRule, ServiceEntry) → a
//!   validated model, with findings for every unsupported or invalid field and `gateway check`'s
//!   cross-resource analysis.
//! - [`control`] — `gateway run`: load, bind, serve, hot-reload; the control path.
//! - [`discovery`] — endpoint sets per cluster, from STATIC ServiceEntry endpoints or DNS.
//! - [`hash`] — the stable hash (xxHash64) every replica agrees on, retry perturbation.
//! - [`health`] — passive outlier detection (lock-free counters, pure ejection state machine).
//! - [`maglev`] — Maglev lookup tables (Envoy's behaviour, weights, prime sizes).
//! - [`metrics`] — Prometheus metrics with typed label sets.
//! - [`proxy`] — the request path (listener, header hygiene, upstream pools, retries).
//! - [`reload`] — when to reload the config (folder watch, SIGHUP, poll) and a content fingerprint.
//! - [`ring`] — ring hash (ketama), Istio's default consistent hash.
//! - [`snapshot`] — routes and clusters of one config, published whole; route matching.

pub mod admin;
pub mod balancer;
pub mod cluster;
pub mod config;
pub mod control;
pub mod discovery;
pub mod hash;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod ring;
pub mod snapshot;
