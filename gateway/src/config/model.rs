//! The validated configuration the data path consumes: hosts fully qualified, durations as
//! [`Duration`], `oneof`s as enums, regexes compiled, Istio's defaults applied.
//!
//! Nothing here knows sockets or clocks. Each `spec` type converts through a function in a
//! submodule that records every broken rule (with its field path) in a `Problems` list; the
//! loader keeps a resource only when that list holds no error, so a half-valid resource never
//! reaches the data path.

mod destination_rule;
mod load_balancer;
mod request_match;
mod route_policy;
mod service_entry;
mod session;
mod tls;
mod virtual_service;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::diagnostic::{Location, Severity};
use super::duration;
use super::schema::Positions;

pub(crate) use destination_rule::destination_rule;
pub use destination_rule::{
    ConnectionPool, DestinationRule, OutlierDetection, PortTrafficPolicy, Subset, TlsSetting,
    TrafficPolicy,
};
pub use load_balancer::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MINIMUM_RING_SIZE, HashAlgorithm, HashKey, LoadBalancer,
    MAX_MAGLEV_TABLE_SIZE, MAX_RING_SIZE, SimpleLb,
};
pub use request_match::{RequestMatch, StringMatcher};
pub use route_policy::{
    DEFAULT_RETRY_ON, Fault, FaultAbort, FaultDelay, HeaderOperations, HeaderRules, RetryPolicy,
    Rewrite,
};
pub use service_entry::{
    Endpoint, Gateway, GatewayServer, Resolution, ServiceEntry, ServicePort, host_overlap,
};
pub(crate) use service_entry::{gateway, service_entry};
pub(crate) use session::session_policy;
pub use session::{Carrier, SessionPolicy};
pub use tls::{
    CipherError, ClientTls, ClientTlsSettings, ServerCredential, ServerTls, ServerTlsMode,
    TlsVersion, cipher_suite_names, iana_cipher_suite,
};
pub(crate) use virtual_service::virtual_service;
pub use virtual_service::{
    Destination, HttpRoute, RouteAction, VirtualService, WeightedDestination,
};

/// Every valid resource read, by kind, in the order read.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `Gateway`s.
    pub gateways: Vec<Gateway>,
    /// `VirtualService`s.
    pub virtual_services: Vec<VirtualService>,
    /// `DestinationRule`s.
    pub destination_rules: Vec<DestinationRule>,
    /// `ServiceEntry`s.
    pub service_entries: Vec<ServiceEntry>,
    /// Kubernetes `Service`s seen in the same files (skipped, but their names are real hosts
    /// that `gateway check` may match a DestinationRule against).
    pub kubernetes_services: Vec<KubernetesService>,
}

/// A Kubernetes `Service` document: its name is a host that exists, and its labels may ask for
/// persistent sessions; nothing else of it is read.
#[derive(Debug, Clone)]
pub struct KubernetesService {
    /// Identity and origin.
    pub meta: Meta,
    /// `name.namespace.svc.<cluster domain>`.
    pub host: String,
    /// The persistent sessions its labels ask for.
    pub session: Option<SessionPolicy>,
}

/// The Istio kinds the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `networking.istio.io` `Gateway`.
    Gateway,
    /// `VirtualService`.
    VirtualService,
    /// `DestinationRule`.
    DestinationRule,
    /// `ServiceEntry`.
    ServiceEntry,
    /// A Kubernetes core `Service` (only its name is used).
    Service,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gateway => "Gateway",
            Self::VirtualService => "VirtualService",
            Self::DestinationRule => "DestinationRule",
            Self::ServiceEntry => "ServiceEntry",
            Self::Service => "Service",
        })
    }
}

/// Identity and origin of one resource.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, else the loader's default namespace.
    pub namespace: String,
    /// `metadata.labels` (persistent sessions are asked for by a label).
    pub labels: Labels,
    /// `metadata.annotations` (a persistent session's timeouts and cookie).
    pub annotations: Labels,
    /// Where the document starts.
    pub location: Location,
    pub(crate) positions: Arc<Positions>,
}

impl Meta {
    /// `Kind/name`, as findings name a resource.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// `namespace/name`, as a VirtualService's `gateways` name a Gateway.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether `reference` (`namespace/name`) names this resource.
    pub fn is_named(&self, reference: &str) -> bool {
        reference.split_once('/') == Some((self.namespace.as_str(), self.name.as_str()))
    }

    /// Where field `path` (e.g. `spec.host`) of this resource is written.
    pub fn location_of(&self, path: &str) -> Location {
        let (line, column) = self.positions.at(path);
        Location {
            file: self.location.file.clone(),
            line,
            column,
        }
    }
}

/// How short names become fully qualified: Istio's rules with this document's namespace.
#[derive(Debug, Clone)]
pub struct Names {
    /// Namespace of the document being converted.
    pub namespace: String,
    /// Cluster domain, `cluster.local` unless configured.
    pub cluster_domain: String,
}

impl Names {
    /// `sticky-svc` → `sticky-svc.<ns>.svc.<domain>`. A name with a dot, a wildcard or an IP is
    /// already what Istio calls fully qualified and is kept (lowercased, as DNS is
    /// case-insensitive).
    pub fn fqdn(&self, host: &str) -> String {
        let host = host.trim().to_ascii_lowercase();
        if host.contains('.') || host.contains('*') || host.contains(':') || host.is_empty() {
            host
        } else {
            format!("{host}.{}.svc.{}", self.namespace, self.cluster_domain)
        }
    }
}

/// Rules broken while converting one resource, by field path.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub list: Vec<(Severity, String, String)>,
}

impl Problems {
    pub fn error(&mut self, path: impl Into<String>, rule: impl fmt::Display) {
        self.list
            .push((Severity::Error, path.into(), rule.to_string()));
    }

    pub fn warn(&mut self, path: impl Into<String>, rule: impl fmt::Display) {
        self.list
            .push((Severity::Warning, path.into(), rule.to_string()));
    }

    /// A duration field: parsed, and at least 1ms with millisecond precision unless
    /// `allow_zero` and it is zero (Istio's `ValidateDuration`).
    pub fn duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        allow_zero: bool,
    ) -> Option<Duration> {
        let text = text?;
        match duration::parse(text) {
            Ok(d) if d.is_zero() && allow_zero => Some(d),
            Ok(d) if d < Duration::from_millis(1) => {
                self.error(path, format!("{text:?} is shorter than 1ms"));
                None
            }
            Ok(d) if d.subsec_nanos() % 1_000_000 != 0 => {
                self.error(
                    path,
                    format!("{text:?}: only millisecond precision is supported"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// A port number in 1..=65535.
    pub fn port(&mut self, path: &str, number: Option<u32>) -> Option<u16> {
        match number.map(u16::try_from) {
            Some(Ok(port)) if port != 0 => Some(port),
            Some(_) => {
                let n = number.unwrap_or_default();
                self.error(path, format!("port {n} is out of range 1..65535"));
                None
            }
            None => None,
        }
    }

    /// A percentage in 0..=100.
    pub fn percent(&mut self, path: &str, value: Option<f64>) -> Option<f64> {
        let value = value?;
        if (0.0..=100.0).contains(&value) {
            Some(value)
        } else {
            self.error(path, format!("{value} is out of range 0..100"));
            None
        }
    }

    /// A limit where 0, like unset in proto3, means none (Istio's connection pool fields).
    pub fn limit(&mut self, path: &str, value: Option<i64>) -> Option<u32> {
        self.count(path, value).filter(|v| *v != 0)
    }

    /// A count that must not be negative.
    pub fn count(&mut self, path: &str, value: Option<i64>) -> Option<u32> {
        let value = value?;
        match u32::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(path, format!("{value} must be between 0 and {}", u32::MAX));
                None
            }
        }
    }
}

/// Labels of a subset or endpoint.
pub type Labels = BTreeMap<String, String>;
