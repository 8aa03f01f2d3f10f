//! `DestinationRule` → per-host traffic policy: load balancer, connection pool, outlier
//! detection, upstream TLS, subsets and per-port overrides.
//!
//! Pure: spec in, model and findings out; no I/O.

use std::time::Duration;

use super::load_balancer::{LoadBalancer, load_balancer};
use super::tls::{ClientTls, client_tls};
use super::{Labels, Meta, Names, Problems};
use crate::config::spec;

/// A validated `DestinationRule`.
#[derive(Debug, Clone)]
pub struct DestinationRule {
    /// Identity and origin.
    pub meta: Meta,
    /// `host`, fully qualified.
    pub host: String,
    /// `trafficPolicy` (defaults when unset).
    pub traffic_policy: TrafficPolicy,
    /// `subsets[]`.
    pub subsets: Vec<Subset>,
}

/// `subsets[]` entry.
#[derive(Debug, Clone)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels` an endpoint must carry to belong to the subset.
    pub labels: Labels,
    /// `trafficPolicy`, overriding the rule's own where set.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, Default)]
pub struct TrafficPolicy {
    /// `loadBalancer`; `None` leaves the gateway's default.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`, with Istio's defaults.
    pub connection_pool: ConnectionPool,
    /// `outlierDetection`; `None` means no ejection, as in Istio.
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`; `None` leaves the level above's (plain text at the top).
    pub tls: Option<TlsSetting>,
    /// `portLevelSettings[]`.
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// `portLevelSettings[]` entry.
#[derive(Debug, Clone)]
pub struct PortTrafficPolicy {
    /// `port.number`.
    pub port: u16,
    /// `loadBalancer`.
    pub load_balancer: Option<LoadBalancer>,
    /// `connectionPool`.
    pub connection_pool: ConnectionPool,
    /// `outlierDetection`.
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`.
    pub tls: Option<TlsSetting>,
}

/// `tls` at one level of a traffic policy. `DISABLE` is kept apart from no `tls` at all, so
/// that a subset's or a port's `mode: DISABLE` turns off the TLS of the rule above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// `mode: DISABLE`, or no `mode` (Istio's default): plain text.
    Disable,
    /// TLS to the endpoints.
    Tls(ClientTls),
}

impl TlsSetting {
    /// The TLS to speak, `None` for plain text.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        match self {
            Self::Disable => None,
            Self::Tls(tls) => Some(tls),
        }
    }
}

impl DestinationRule {
    /// How the gateway speaks to the endpoints of a destination of this rule's host, in
    /// `subset` (a name; one the rule does not define counts as none) on `port`: the rule's
    /// `tls`, overridden by the subset's, then by the port-level settings for `port` (the
    /// subset's when it has any, else the rule's), each where written. The same precedence as
    /// the rest of the policy (`snapshot::clusters`). `None`: plain text.
    pub fn client_tls(&self, subset: Option<&str>, port: u16) -> Option<&ClientTls> {
        let subset = subset
            .and_then(|name| self.subsets.iter().find(|s| s.name == name))
            .and_then(|s| s.traffic_policy.as_ref());
        let mut tls = self.traffic_policy.tls.as_ref();
        let mut levels = &self.traffic_policy.port_level_settings;
        if let Some(sub) = subset {
            if sub.tls.is_some() {
                tls = sub.tls.as_ref();
            }
            if !sub.port_level_settings.is_empty() {
                levels = &sub.port_level_settings;
            }
        }
        if let Some(level) = levels.iter().find(|l| l.port == port)
            && level.tls.is_some()
        {
            tls = level.tls.as_ref();
        }
        tls.and_then(TlsSetting::client_tls)
    }
}

/// `connectionPool`, with Istio's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPool {
    /// `tcp.connectTimeout` (10s).
    pub connect_timeout: Duration,
    /// `tcp.maxConnections` (unlimited).
    pub max_connections: Option<u32>,
    /// `http.http1MaxPendingRequests` (unlimited).
    pub http1_max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests` (unlimited): requests in flight to an HTTP/2 cluster.
    pub http2_max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection` (unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// `http.idleTimeout` (1h).
    pub idle_timeout: Duration,
    /// `http.h2UpgradePolicy`: `Some(true)` for `UPGRADE`, `Some(false)` for `DO_NOT_UPGRADE`,
    /// `None` for `DEFAULT` or unset (the port's protocol decides).
    pub h2_upgrade: Option<bool>,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_connections: None,
            http1_max_pending_requests: None,
            http2_max_requests: None,
            max_requests_per_connection: None,
            idle_timeout: Duration::from_secs(3600),
            h2_upgrade: None,
        }
    }
}

/// `outlierDetection`, with Istio's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (5); 0 disables.
    pub consecutive_5xx_errors: u32,
    /// `consecutiveGatewayErrors` (off).
    pub consecutive_gateway_errors: Option<u32>,
    /// `interval` (10s).
    pub interval: Duration,
    /// `baseEjectionTime` (30s).
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (10).
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (0).
    pub min_health_percent: u32,
}

pub(crate) fn destination_rule(
    spec: spec::DestinationRuleSpec,
    meta: Meta,
    names: &Names,
    p: &mut Problems,
) -> DestinationRule {
    let host = match spec.host.filter(|h| !h.trim().is_empty()) {
        Some(h) => {
            super::virtual_service::check_host(p, "spec.host", &h);
            names.fqdn(&h)
        }
        None => {
            p.error("spec.host", "host is required");
            String::new()
        }
    };
    let top_policy = spec
        .traffic_policy
        .map(|t| traffic_policy(t, "spec.trafficPolicy", &meta, p))
        .unwrap_or_default();
    let mut subsets: Vec<Subset> = Vec::new();
    for (i, s) in spec.subsets.unwrap_or_default().into_iter().enumerate() {
        let at = format!("spec.subsets[{i}]");
        let name = s.name.unwrap_or_default();
        if name.is_empty() {
            p.error(format!("{at}.name"), "name is required");
        } else if subsets.iter().any(|other| other.name == name) {
            p.error(
                format!("{at}.name"),
                format!("subset {name:?} is defined twice"),
            );
        }
        let policy = s
            .traffic_policy
            .map(|t| traffic_policy(t, &format!("{at}.trafficPolicy"), &meta, p));
        subsets.push(Subset {
            name,
            labels: s.labels.unwrap_or_default(),
            traffic_policy: policy,
        });
    }
    DestinationRule {
        meta,
        host,
        traffic_policy: top_policy,
        subsets,
    }
}

fn traffic_policy(
    t: spec::TrafficPolicy,
    path: &str,
    meta: &Meta,
    p: &mut Problems,
) -> TrafficPolicy {
    let tls = |tls: Option<spec::ClientTlsSettings>, path: &str, p: &mut Problems| {
        tls.map(|t| match client_tls(t, &format!("{path}.tls"), meta, p) {
            Some(tls) => TlsSetting::Tls(tls),
            None => TlsSetting::Disable,
        })
    };
    let mut port_level_settings: Vec<PortTrafficPolicy> = Vec::new();
    for (i, s) in t
        .port_level_settings
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let at = format!("{path}.portLevelSettings[{i}]");
        let number = s.port.and_then(|port| port.number);
        let Some(port) = p.port(&format!("{at}.port.number"), number) else {
            if number.is_none() {
                p.error(format!("{at}.port.number"), "port number is required");
            }
            continue;
        };
        if port_level_settings.iter().any(|other| other.port == port) {
            p.error(
                format!("{at}.port.number"),
                format!("port {port} is set twice"),
            );
        }
        port_level_settings.push(PortTrafficPolicy {
            port,
            load_balancer: s
                .load_balancer
                .and_then(|l| load_balancer(l, &format!("{at}.loadBalancer"), p)),
            connection_pool: connection_pool(s.connection_pool, &format!("{at}.connectionPool"), p),
            outlier_detection: s
                .outlier_detection
                .map(|o| outlier_detection(o, &format!("{at}.outlierDetection"), p)),
            tls: tls(s.tls, &at, p),
        });
    }
    TrafficPolicy {
        load_balancer: t
            .load_balancer
            .and_then(|l| load_balancer(l, &format!("{path}.loadBalancer"), p)),
        connection_pool: connection_pool(t.connection_pool, &format!("{path}.connectionPool"), p),
        outlier_detection: t
            .outlier_detection
            .map(|o| outlier_detection(o, &format!("{path}.outlierDetection"), p)),
        tls: tls(t.tls, path, p),
        port_level_settings,
    }
}

fn connection_pool(
    c: Option<spec::ConnectionPoolSettings>,
    path: &str,
    p: &mut Problems,
) -> ConnectionPool {
    let mut pool = ConnectionPool::default();
    let Some(c) = c else { return pool };
    if let Some(tcp) = c.tcp {
        pool.max_connections = p.limit(&format!("{path}.tcp.maxConnections"), tcp.max_connections);
        let at = format!("{path}.tcp.connectTimeout");
        if let Some(d) = p.duration(&at, tcp.connect_timeout.as_deref(), false) {
            pool.connect_timeout = d;
        }
    }
    if let Some(http) = c.http {
        let at = format!("{path}.http");
        pool.http1_max_pending_requests = p.limit(
            &format!("{at}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        pool.http2_max_requests =
            p.limit(&format!("{at}.http2MaxRequests"), http.http2_max_requests);
        pool.max_requests_per_connection = p.limit(
            &format!("{at}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        if let Some(d) = p.duration(
            &format!("{at}.idleTimeout"),
            http.idle_timeout.as_deref(),
            false,
        ) {
            pool.idle_timeout = d;
        }
        pool.h2_upgrade = match http.h2_upgrade_policy.as_deref() {
            None | Some("DEFAULT") => None,
            Some("UPGRADE") => Some(true),
            Some("DO_NOT_UPGRADE") => Some(false),
            Some(other) => {
                p.error(
                    format!("{at}.h2UpgradePolicy"),
                    format!("{other:?} is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE"),
                );
                None
            }
        };
    }
    pool
}

fn outlier_detection(o: spec::OutlierDetection, path: &str, p: &mut Problems) -> OutlierDetection {
    let percent = |p: &mut Problems, field: &str, v: Option<i64>, default: u32| {
        p.percent(&format!("{path}.{field}"), v.map(|v| v as f64))
            .map_or(default, |v| v as u32)
    };
    let interval = p.duration(&format!("{path}.interval"), o.interval.as_deref(), false);
    let base = p.duration(
        &format!("{path}.baseEjectionTime"),
        o.base_ejection_time.as_deref(),
        false,
    );
    OutlierDetection {
        consecutive_5xx_errors: o.consecutive_5xx_errors.unwrap_or(5),
        consecutive_gateway_errors: o.consecutive_gateway_errors,
        interval: interval.unwrap_or(Duration::from_secs(10)),
        base_ejection_time: base.unwrap_or(Duration::from_secs(30)),
        max_ejection_percent: percent(
            p,
            "maxEjectionPercent",
            // proto3 cannot tell 0 from unset; Istio then keeps Envoy's default.
            o.max_ejection_percent.filter(|v| *v != 0),
            10,
        ),
        min_health_percent: percent(p, "minHealthPercent", o.min_health_percent, 0),
    }
}
