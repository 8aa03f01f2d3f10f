//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules:
//! - [`config`]: Istio YAML (Gateway, VirtualService, DestinationRule, ServiceEntry) → a
//!   validated model, with findings for every unsupported or invalid field and `gateway check`'s
//!   cross-resource analysis.

pub mod config;
