//! Istio's own YAML as the gateway's configuration: load, validate, analyse.
//!
//! The pipeline, one module per step:
//!
//! - [`load`]: files and directories → YAML documents (multi-document, any mix of kinds);
//!   non-Istio kinds are skipped with an info finding;
//! - `schema`: each document walked against Istio's full field list, so a field is
//!   supported, reported as "not supported by this gateway, ignored", or an unknown-field error
//!   ([`supported_fields`] lists the supported ones);
//! - [`spec`]: serde types mirroring the YAML one to one;
//! - [`model`]: validated types the data path consumes (hosts qualified, oneofs as enums);
//! - [`check`](mod@check): analysis across resources (`gateway check`), stricter than `istioctl analyze`;
//! - [`diagnostic`]: every finding, with file, line, column, resource and field path;
//! - [`duration`]: Istio/Go duration strings.
//!
//! ```
//! use std::path::Path;
//! use gateway::config::model::{HashAlgorithm, HashKey, LoadBalancer};
//! use gateway::config::{LoadOptions, Loaded, load_source};
//!
//! let yaml = "
//! apiVersion: networking.istio.io/v1alpha3
//! kind: DestinationRule
//! metadata: {name: sticky-svc}
//! spec:
//!   host: sticky-svc
//!   trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {}}}}
//! ";
//! let mut loaded = Loaded::default();
//! load_source(Path::new("dr.yaml"), yaml, &LoadOptions::default(), &mut loaded);
//! assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
//! let rule = &loaded.config.destination_rules[0];
//! assert_eq!(rule.host, "sticky-svc.default.svc.cluster.local");
//! assert_eq!(
//!     rule.traffic_policy.load_balancer,
//!     Some(LoadBalancer::ConsistentHash {
//!         key: HashKey::Header(http::HeaderName::from_static("x-user")),
//!         algorithm: HashAlgorithm::Maglev { table_size: 65_537 },
//!     })
//! );
//! ```
//!
//! The config layer does no I/O but reading the files named, and knows nothing of sockets, time or
//! the request path.

pub mod check;
pub mod diagnostic;
pub mod duration;
pub mod load;
pub mod model;
mod schema;
pub mod spec;

pub use check::check;
pub use diagnostic::{Diagnostic, Location, Severity};
pub use load::{LoadError, LoadOptions, Loaded, config_files, load_paths, load_source};
pub use model::Config;
pub use schema::supported_fields;
