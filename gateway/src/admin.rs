//! The admin listener (loopback by default): liveness, readiness, metrics, the live dashboard
//! (`/`, fed by `/events`: see `live`), and pages that show what the gateway is doing — the
//! effective config, each cluster's endpoints and table shares, and which endpoint a key maps
//! to (and mapped to before the last change) before any request is sent.
//!
//! Readiness depends on the gateway alone (config loaded, not draining), never on upstreams: a
//! cluster scaled to zero must answer 503 `no healthy upstream`, not take the gateway out of its
//! load balancer.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::balancer::PickContext;
use crate::body::{Body, full};
use crate::cluster::{Cluster, ClusterState};
use crate::config::model::{HashKey, RouteAction};
use crate::hash::key_hash;
use crate::metrics::{Metrics, render};
use crate::session::{SessionKeys, Timeouts, unix_now};
use crate::snapshot::Snapshot;
use crate::snapshot::routes::query_value;
use crate::tls::TlsAcceptor;

mod json;
mod live;

pub use live::{Live, MAX_STREAMS, USERS_WINDOW};

/// The dashboard: one page, its style and script inline (no CDN, works offline).
const DASHBOARD: &str = include_str!("admin/dashboard.html");

/// What the admin pages report besides the snapshot.
#[derive(Debug, Default)]
pub struct Status {
    ready: AtomicBool,
    reload: Mutex<ReloadStatus>,
}

/// The outcome of the last config load.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Successful loads so far (1 after start-up).
    pub generation: u64,
    /// The error of the last attempt, when it was rejected (the previous config keeps serving).
    pub last_error: Option<String>,
}

impl Status {
    /// Marks the gateway ready (config loaded, listeners bound) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` says ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Records a successful load.
    pub fn loaded(&self) {
        let mut r = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        r.generation += 1;
        r.last_error = None;
    }

    /// Records a rejected reload.
    pub fn rejected(&self, error: String) {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(error);
    }

    /// The last load's outcome.
    pub fn reload(&self) -> ReloadStatus {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The admin handler.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The snapshot the proxy serves.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// Readiness and reload outcome.
    pub status: Arc<Status>,
    /// The proxy's persistent-session keys, for `/lookup?session=`.
    pub session_keys: Arc<SessionKeys>,
    /// The metrics, for the timeline.
    pub metrics: Arc<Metrics>,
    /// The dashboard's feed.
    pub live: Live,
    /// The TLS listener's servers, with `--listen-tls`.
    pub tls: Option<Arc<TlsAcceptor>>,
}

impl Admin {
    /// Serves one admin request.
    pub fn handle<B>(&self, request: &Request<B>) -> Response<Body> {
        let query = request.uri().query().unwrap_or("");
        match request.uri().path() {
            "/" => {
                let mut response = Response::new(full(DASHBOARD));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            "/events" => self.live.stream(&self.metrics),
            "/state" => self.live.state(),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" if self.status.is_ready() => text(StatusCode::OK, "ready\n".into()),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
            "/metrics" => {
                let mut response = text(StatusCode::OK, render(&self.registry));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            "/config" => self.config(),
            "/clusters" => self.clusters(),
            "/lookup" => self.lookup(query),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; pages: / (dashboard) /events /state /healthz /readyz /metrics \
                 /config /clusters /lookup?cluster=HOST&key=KEY /lookup?session=VALUE\n"
                    .into(),
            ),
        }
    }

    fn config(&self) -> Response<Body> {
        let snapshot = self.snapshot.load();
        let services: Vec<Value> = snapshot
            .services
            .iter()
            .map(|vs| {
                let routes: Vec<Value> = vs
                    .routes
                    .iter()
                    .map(|r| {
                        let action = match &r.action {
                            RouteAction::Forward(dests) => json!(
                                dests
                                    .iter()
                                    .zip(&r.clusters)
                                    .map(|(d, c)| json!({"cluster": &*c.spec.name, "weight": d.weight}))
                                    .collect::<Vec<_>>()
                            ),
                            RouteAction::DirectResponse { status, body } => {
                                json!({"directResponse": {"status": status, "body": body}})
                            }
                        };
                        json!({
                            "route": &*r.label,
                            "match": r.matches.iter().map(json::request_match).collect::<Vec<_>>(),
                            "destinations": action,
                            "timeout": r.timeout.map(json::duration),
                            "retries": {
                                "attempts": r.retries.attempts,
                                "perTryTimeout": r.retries.per_try_timeout.map(json::duration),
                                "retryOn": r.retries.retry_on.join(","),
                            },
                        })
                    })
                    .collect();
                json!({"virtualService": &*vs.name, "hosts": vs.hosts, "http": routes})
            })
            .collect();
        let mut clusters: Vec<&Arc<Cluster>> = snapshot.clusters.values().collect();
        clusters.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let clusters: Vec<Value> = clusters
            .iter()
            .map(|c| cluster_spec(c, snapshot.hash_key(&c.spec.name)))
            .collect();
        let gateways: Vec<String> = snapshot
            .config
            .gateways
            .iter()
            .map(|g| g.meta.qualified_name())
            .collect();
        json_response(&json!({
            "reload": self.status.reload(),
            "gateways": gateways,
            "httpsServers": https_servers(self.tls.as_deref()),
            "virtualServices": services,
            "clusters": clusters,
        }))
    }

    fn clusters(&self) -> Response<Body> {
        let snapshot = self.snapshot.load();
        let mut clusters: Vec<&Arc<Cluster>> = snapshot.clusters.values().collect();
        clusters.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let list: Vec<Value> = clusters
            .iter()
            .map(|c| {
                let state = c.state();
                let shares = table_shares(&state);
                let endpoints: Vec<Value> = state
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        json!({
                            "address": &**e.label(),
                            "weight": e.weight(),
                            "healthy": !state.ejected[i],
                            "inFlight": e.in_flight.load(Ordering::Relaxed),
                            "tableShare": shares.get(i),
                        })
                    })
                    .collect();
                json!({
                    "cluster": &*c.spec.name,
                    "policy": json::policy(&c.spec.policy),
                    "routable": state.routable(),
                    "endpoints": endpoints,
                })
            })
            .collect();
        json_response(&json!({ "clusters": list }))
    }

    /// Where a persistent-session value points: the cluster and endpoint it names (and whether
    /// a request carrying it would be sent there now), its times and which key verified it; or
    /// why it would be ignored. Timeouts are not applied here (they are the host's).
    fn lookup_session(&self, value: &str) -> Response<Body> {
        let keys = &*self.session_keys;
        let no_timeouts = Timeouts {
            idle: None,
            absolute: None,
        };
        let verified = match keys.decode(value, unix_now(), &no_timeouts) {
            Ok(verified) => verified,
            Err(why) => {
                return json_response(
                    &json!({"session": value, "ignored": why.as_str(), "why": why.to_string()}),
                );
            }
        };
        let snapshot = self.snapshot.load();
        let mut clusters: Vec<&Arc<Cluster>> = snapshot.clusters.values().collect();
        clusters.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let found = clusters.iter().find_map(|c| {
            let state = c.state();
            let name = &c.labels.cluster;
            let index = state.endpoints.iter().position(|e| {
                keys.endpoint_id(verified.key_index, name, e.label()) == verified.session.endpoint
            })?;
            let routable = state
                .session_endpoint(keys, name, verified.key_index, verified.session.endpoint)
                .is_some();
            Some(json!({
                "cluster": &**name,
                "endpoint": &**state.endpoints[index].label(),
                "sentThere": routable,
            }))
        });
        let s = verified.session;
        json_response(&json!({
            "session": value,
            "verifiedBy": verified.key_index,
            "created": s.created,
            "refreshed": s.refreshed,
            "replicaTag": format!("{:016x}", s.replica),
            "names": found,
        }))
    }

    fn lookup(&self, query: &str) -> Response<Body> {
        let param = |name| query_value(query, name).map(percent_decoded);
        if let Some(value) = param("session") {
            return self.lookup_session(&value);
        }
        let (Some(cluster), Some(key)) = (param("cluster"), param("key")) else {
            return text(
                StatusCode::BAD_REQUEST,
                "usage: /lookup?cluster=HOST&key=KEY\n".into(),
            );
        };
        let (cluster, key) = (cluster.as_str(), key.as_str());
        let snapshot = self.snapshot.load();
        let Some(cluster) = snapshot.cluster(cluster) else {
            return text(StatusCode::NOT_FOUND, format!("no cluster {cluster}\n"));
        };
        if !cluster.spec.policy.is_consistent_hash() {
            return text(
                StatusCode::CONFLICT,
                format!(
                    "cluster {} does not hash keys ({})\n",
                    cluster.spec.name,
                    json::policy_name(&cluster.spec.policy)
                ),
            );
        }
        let hash = key_hash(key.as_bytes());
        let lookup = |state: &ClusterState| {
            state
                .balancer
                .as_ref()
                .and_then(|b| b.pick(&PickContext::new(0).key_hash(Some(hash))).ok())
                .map(|p| state.endpoints[p.endpoint].label().to_string())
        };
        let previous = cluster.previous();
        json_response(&json!({
            "cluster": &*cluster.spec.name,
            "key": key,
            "hash": format!("{hash:016x}"),
            "endpoint": lookup(&cluster.state()),
            "before": previous.as_ref().map(|p| json!({
                "endpoint": lookup(&p.state),
                "changedAtMs": p.replaced_at_ms,
            })),
        }))
    }
}

/// The TLS listener's servers: hosts, files, the certificate's end, and what is wrong (no
/// certificate to serve; a change of the files not taken). `null` without `--listen-tls`.
pub(crate) fn https_servers(tls: Option<&TlsAcceptor>) -> Value {
    let Some(tls) = tls else { return Value::Null };
    let servers = tls.servers();
    let list: Vec<Value> = servers
        .servers()
        .iter()
        .map(|s| {
            let files = s.files.as_ref();
            json!({
                "server": s.label,
                "hosts": s.hosts(),
                "certificate": files.map(|f| f.certificate.display().to_string()),
                "privateKey": files.map(|f| f.private_key.display().to_string()),
                "caCertificates": files.and_then(|f| f.ca.as_ref()).map(|p| p.display().to_string()),
                "notAfter": s.not_after(),
                "problem": s.problem(),
                "rejected": s.rejected(),
            })
        })
        .collect();
    Value::Array(list)
}

/// A cluster's spec, and the hash key its routes use (kept on the routes: see `ClusterSpec`).
fn cluster_spec(c: &Cluster, hash_key: Option<&HashKey>) -> Value {
    json!({
        "name": &*c.spec.name,
        "source": json::source(&c.spec.source),
        "policy": json::policy(&c.spec.policy),
        "hashKey": hash_key.map(json::hash_key),
        "connectTimeout": json::duration(c.spec.pool.connect_timeout),
        "maxInFlight": c.spec.pool.max_in_flight,
        "maxConnections": c.spec.pool.max_connections,
        "protocol": if c.spec.pool.http2 { "HTTP/2" } else { "HTTP/1.1" },
        "outlierDetection": c.spec.outlier.as_ref().map(json::outlier),
    })
}

/// Share of the table (Maglev slots, ring points) each endpoint holds; empty for other policies.
fn table_shares(state: &ClusterState) -> Vec<f64> {
    let Some(balancer) = &state.balancer else {
        return Vec::new();
    };
    if let Some(table) = balancer.maglev() {
        let size = table.size() as f64;
        return table
            .slot_counts()
            .iter()
            .map(|&n| n as f64 / size)
            .collect();
    }
    balancer.ring().map(|r| r.shares()).unwrap_or_default()
}

/// A query value with its `%XX` escapes decoded (browsers escape `|` in cluster names, and keys
/// may hold spaces or `&`); `+` is kept as it is, as a key typed into curl means it. Bytes that
/// are not UTF-8 become U+FFFD.
fn percent_decoded(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn query_values_are_percent_decoded_but_plus_is_kept() {
        assert_eq!(
            percent_decoded("outbound%7C8080%7C%7Csticky-svc"),
            "outbound|8080||sticky-svc"
        );
        assert_eq!(percent_decoded("ricky%20%26%20co+x"), "ricky & co+x");
        // A stray or short escape stays as written; bad UTF-8 is replaced, not a panic.
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4");
        assert_eq!(percent_decoded("%ff"), "\u{fffd}");
    }
}
