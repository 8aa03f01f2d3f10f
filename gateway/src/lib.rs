//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules, from the top of the request path down (a module may import those below it, never
//! one above; `scripts/check-imports.py` checks it in `just test`):
//! - [`control`] — `gateway run`: load, bind, start the workers and the admin listener,
//!   hot-reload. The binary's wiring.
//! - [`admin`] — the admin pages: health, readiness, metrics, config, clusters, key lookup.
//! - [`reload`] — when to reload the config (folder watch, SIGHUP, poll), and the files' content
//!   once two reads agree.
//! - [`proxy`] — the request path: listener and worker hand-off, route, affinity, forwarding
//!   with retries, access log.
//! - [`snapshot`] — routes and clusters of one config, published whole; route matching, header
//!   edits and `retryOn` parsed once.
//! - [`cluster`] — a cluster at run time: endpoints, balancer, pool, and the task that rebuilds
//!   the balancer on discovery, ejection and active-check changes.
//! - [`upstream`] — the connection pool of a cluster: HTTP/1.1 and HTTP/2 clients.
//! - [`discovery`] — endpoint sets per cluster, from DNS (STATIC sets come from the config).
//! - [`metrics`] — Prometheus metrics with typed label sets.
//! - [`config`] — Istio YAML (Gateway, VirtualService, DestinationRule, ServiceEntry) → a
//!   validated model, with findings for every unsupported or invalid field and `gateway check`'s
//!   cross-resource analysis.
//! - [`balancer`] — one selection interface over round robin, random, least request, ring hash
//!   and Maglev, with retry fallback.
//! - [`maglev`] — Maglev lookup tables (Envoy's behaviour, weights, prime sizes).
//! - [`ring`] — ring hash (ketama), Istio's default consistent hash.
//! - [`health`] — passive outlier detection (lock-free counters, pure ejection state machine)
//!   and active check state.
//! - Leaves, used by any module above: [`endpoint`] (the one endpoint type), [`events`] (the
//!   dashboard's timeline), [`distinct`] (distinct users per replica, in fixed memory), [`hash`] (request
//!   keys by XXH3, endpoint keys by xxHash64 with seeds, retry perturbation), [`body`] (the one
//!   body type), [`worker`] (per-worker-thread index and output batching).
//! - Beside the request path: [`certgen`] — `gateway cert`, a local CA and server certificates.

pub mod admin;
pub mod balancer;
pub mod body;
pub mod certgen;
pub mod cluster;
pub mod config;
pub mod control;
pub mod discovery;
pub mod distinct;
pub mod endpoint;
pub mod events;
pub mod hash;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod ring;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod upstream;
pub mod worker;
