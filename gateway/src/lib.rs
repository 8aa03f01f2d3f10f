//! The sticky gateway: an L7 proxy that reads Istio's own YAML and sends each user to the same
//! replica by consistent hashing.
//!
//! Modules:
//!
//! - [`health`]: passive outlier detection (lock-free counters, pure ejection state machine).
pub mod health;
