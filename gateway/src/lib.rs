//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules:
//! - [`hash`] — the stable hash (xxHash64) every replica agrees on, retry perturbation.
//! - [`maglev`] — Maglev lookup tables (Envoy's behaviour, weights, prime sizes).
//! - [`ring`] — ring hash (ketama), Istio's default consistent hash.
//! - [`balancer`] — one selection interface over round robin, random, least request, ring hash
//!   and Maglev, with retry fallback.

pub mod balancer;
pub mod hash;
pub mod maglev;
pub mod ring;
