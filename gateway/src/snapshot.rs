//! What a request reads: the routes and clusters of one config, assembled off the request path
//! and published whole with `ArcSwap::store`. A request does one `load` and works on that
//! snapshot to its end, so a reload mid-request cannot tear it.
//!
//! Building a snapshot reuses every running cluster whose spec did not change, so a reload
//! that edits one route keeps the other clusters' pools, DNS watches and ejections. The hash
//! key of `consistentHash` belongs to the route's destinations ([`Route::hash_keys`]), not to
//! the cluster's spec: editing only the key keeps the running cluster too.
//!
//! A build is synchronous and may take a while (parsing, Maglev tables of static clusters):
//! the caller runs it on a blocking thread, then waits for the new clusters' first discovery
//! ([`Snapshot::discovered`]) before publishing it.
//!
//! Built off the request path, never mutated once published; this module may not import the request
//! path (`crate::proxy`) or the pool's internals.

pub mod clusters;
pub mod edits;
pub mod retry_on;
pub mod routes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::config::diagnostic::Location;
use crate::config::model::{Gateway, HashKey, HttpRoute, SessionPolicy, VirtualService};
use crate::discovery::{DnsResolver, RefreshBounds};
use crate::health::active::ActiveCheck;
use crate::metrics::Metrics;
use crate::tls::HostPattern;
use clusters::SpecError;
use edits::{EditError, Edits};
pub use retry_on::RetryOn;
pub use routes::VirtualRoutes;

/// One `http[]` route, resolved to running clusters.
#[derive(Debug)]
pub struct Route {
    /// `<namespace>/<VirtualService>/<route name or index>`, the metrics label.
    pub label: Arc<str>,
    /// The route as configured.
    pub http: HttpRoute,
    /// `route[]` clusters, parallel to the model's weighted destinations.
    pub clusters: Vec<Arc<Cluster>>,
    /// Parallel to `clusters`: what each destination's requests are hashed by (the
    /// `consistentHash` key of its DestinationRule); `None` when its cluster hashes nothing.
    pub hash_keys: Vec<Option<HashKey>>,
    /// The key of a sticky split: `Some` when the route splits by weight (two or more
    /// destinations of weight above 0) and every one of those destinations hashes on this same
    /// key. The request's key then picks the destination as well as the endpoint, so a user
    /// stays on one destination while the weights stay. `None` for one destination, and for a
    /// split whose destinations hash on different keys or on none (drawn at random).
    pub split_key: Option<HashKey>,
    /// Parallel to `clusters`: the persistent sessions of each destination's host (its
    /// ServiceEntry's or Kubernetes Service's labels); `None`: none.
    pub sessions: Vec<Option<Arc<SessionPolicy>>>,
    /// `retries.retryOn`, parsed.
    pub retry_on: RetryOn,
    /// `headers.request` / `headers.response` of the route.
    pub edits: Edits,
    /// Per `route[]` destination, parallel to `clusters`.
    pub destination_edits: Vec<Edits>,
}

impl std::ops::Deref for Route {
    type Target = HttpRoute;
    fn deref(&self) -> &HttpRoute {
        &self.http
    }
}

/// What the control path needs to start clusters.
#[derive(Debug, Clone)]
pub struct Context {
    /// Resolver for DNS clusters.
    pub resolver: DnsResolver,
    /// DNS refresh bounds.
    pub bounds: RefreshBounds,
    /// Metrics the clusters report to.
    pub metrics: Arc<Metrics>,
    /// `--gateway NAME`: serve only the VirtualServices bound to this Gateway (plus mesh ones).
    pub gateway: Option<String>,
    /// Active health checks for every cluster (`--health-check-path`).
    pub active: Option<ActiveCheck>,
    /// Every cluster's response idle timeout (`--response-idle-timeout`).
    pub response_idle_timeout: Option<Duration>,
}

impl Context {
    /// A context for tests: system-less resolver on a dead port, fresh metrics.
    pub fn for_tests() -> Self {
        Self {
            resolver: DnsResolver::with_name_server("127.0.0.1:9".parse().expect("address")),
            bounds: RefreshBounds::default(),
            metrics: Metrics::new(&mut Registry::default()),
            gateway: None,
            active: None,
            response_idle_timeout: None,
        }
    }
}

/// Routes and clusters of one config.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Applicable VirtualServices, in config order.
    pub services: Vec<VirtualRoutes>,
    /// Every cluster a route names, by name.
    pub clusters: HashMap<Arc<str>, Arc<Cluster>>,
    /// The hosts of the HTTP servers with `tls.httpsRedirect`, and the HTTPS port each is sent
    /// to (its Gateway's first HTTPS server's, else 443).
    https_redirects: Vec<(HostPattern, u16)>,
}

/// Why a config cannot be served: what, and where (file, line, field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A route's destination cannot become a cluster.
    #[error("{location}: {resource}: {field}: {source}")]
    Destination {
        /// Where the field is written.
        location: Location,
        /// `VirtualService/name`.
        resource: String,
        /// The field: `spec.http[i].route[j].destination`.
        field: String,
        /// Why.
        source: SpecError,
    },
    /// A `headers` block of a route or destination holds an invalid name or value.
    #[error("{location}: {resource}: {field}: {source}")]
    Headers {
        /// Where the field is written.
        location: Location,
        /// `VirtualService/name`.
        resource: String,
        /// The field: `spec.http[i].headers` or `spec.http[i].route[j].headers`.
        field: String,
        /// Why.
        source: EditError,
    },
}

impl Snapshot {
    /// Assembles a snapshot, reusing `previous`'s clusters whose spec is unchanged. Must run in
    /// a Tokio runtime (new clusters start tasks).
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Snapshot>,
        ctx: &Context,
    ) -> Result<Self, Box<SnapshotError>> {
        let mut clusters: HashMap<Arc<str>, Arc<Cluster>> = HashMap::new();
        let mut services = Vec::new();
        for (vs, hosts) in config
            .virtual_services
            .iter()
            .filter_map(|vs| served_hosts(vs, &config, ctx).map(|hosts| (vs, hosts)))
        {
            let vs_name = vs.meta.qualified_name();
            let mut routes = Vec::new();
            for http in &vs.http {
                let label: Arc<str> = match &http.name {
                    Some(name) => format!("{vs_name}/{name}").into(),
                    None => format!("{vs_name}/{}", http.index).into(),
                };
                let route_field = format!("spec.http[{}]", http.index);
                let bad_headers = |field: String| {
                    move |source| {
                        Box::new(SnapshotError::Headers {
                            location: vs.meta.location_of(&field),
                            resource: vs.meta.resource(),
                            field,
                            source,
                        })
                    }
                };
                let edits = Edits::compile(&http.headers)
                    .map_err(bad_headers(format!("{route_field}.headers")))?;
                let mut destination_edits = Vec::new();
                let mut route_clusters = Vec::new();
                let mut hash_keys = Vec::new();
                let mut sessions = Vec::new();
                if let crate::config::model::RouteAction::Forward(dests) = &http.action {
                    for (j, wd) in dests.iter().enumerate() {
                        let dest_field = format!("{route_field}.route[{j}]");
                        destination_edits.push(
                            Edits::compile(&wd.headers)
                                .map_err(bad_headers(format!("{dest_field}.headers")))?,
                        );
                        let (mut spec, hash_key) = clusters::cluster_spec(&wd.destination, &config)
                            .map_err(|source| {
                                let field = format!("{dest_field}.destination");
                                Box::new(SnapshotError::Destination {
                                    location: vs.meta.location_of(&field),
                                    resource: vs.meta.resource(),
                                    field,
                                    source,
                                })
                            })?;
                        spec.active = ctx.active.clone();
                        spec.pool.response_idle_timeout = ctx.response_idle_timeout;
                        let cluster = match clusters.get(&spec.name) {
                            Some(c) => c.clone(),
                            None => {
                                let running = previous.and_then(|p| p.clusters.get(&spec.name));
                                let reused = running.filter(|c| c.spec == spec).cloned();
                                let c = reused.unwrap_or_else(|| {
                                    Arc::new(Cluster::start(
                                        spec,
                                        &ctx.resolver,
                                        ctx.bounds,
                                        ctx.metrics.clone(),
                                        running.map(|c| &**c),
                                    ))
                                });
                                clusters.insert(c.spec.name.clone(), c.clone());
                                c
                            }
                        };
                        route_clusters.push(cluster);
                        hash_keys.push(hash_key);
                        sessions.push(
                            clusters::session_policy(&config, &wd.destination.host).map(Arc::new),
                        );
                    }
                }
                let split_key = match &http.action {
                    crate::config::model::RouteAction::Forward(dests) => {
                        split_key(dests.iter().map(|d| d.weight), &hash_keys)
                    }
                    crate::config::model::RouteAction::DirectResponse { .. } => None,
                };
                routes.push(Route {
                    label,
                    retry_on: RetryOn::parse(&http.retries.retry_on),
                    http: http.clone(),
                    clusters: route_clusters,
                    hash_keys,
                    split_key,
                    sessions,
                    edits,
                    destination_edits,
                });
            }
            services.push(VirtualRoutes {
                name: vs_name.into(),
                hosts,
                routes,
            });
        }
        let https_redirects = https_redirects(&config);
        Ok(Self {
            config,
            services,
            clusters,
            https_redirects,
        })
    }

    /// Whether any route's destination has persistent sessions.
    pub fn has_sessions(&self) -> bool {
        self.services
            .iter()
            .flat_map(|s| &s.routes)
            .any(|r| r.sessions.iter().any(Option::is_some))
    }

    /// Waits, at most `bound`, until every cluster has been discovered once (at once for the
    /// clusters already running and the static ones; a new DNS cluster's first lookup, answered
    /// or failed); returns the names of those still waiting.
    pub async fn discovered(&self, bound: Duration) -> Vec<Arc<str>> {
        let deadline = tokio::time::Instant::now() + bound;
        let mut waiting = Vec::new();
        for (name, cluster) in &self.clusters {
            // One deadline for all: they look up at the same time, each in its own task.
            if tokio::time::timeout_at(deadline, cluster.discovered())
                .await
                .is_err()
            {
                waiting.push(name.clone());
            }
        }
        waiting
    }

    /// The hash key of the cluster named `name`, as its routes' destinations carry it.
    pub fn hash_key(&self, name: &str) -> Option<&HashKey> {
        self.services
            .iter()
            .flat_map(|vs| &vs.routes)
            .flat_map(|r| r.clusters.iter().zip(&r.hash_keys))
            .find(|(c, _)| &*c.spec.name == name)
            .and_then(|(_, key)| key.as_ref())
    }

    /// The route for a request, if any.
    pub fn route(&self, parts: &http::request::Parts) -> Option<&Route> {
        routes::find(&self.services, parts)
    }

    /// A cluster by its full name, or by host (the first cluster of that host).
    /// Whether any HTTP server redirects to HTTPS (so a request's host need not be looked at).
    pub fn has_https_redirects(&self) -> bool {
        !self.https_redirects.is_empty()
    }

    /// The HTTPS port a plain request for `host` (no port, lowercase) is redirected to, when
    /// an HTTP server with `tls.httpsRedirect` takes it (the most specific pattern wins).
    pub fn https_redirect(&self, host: &str) -> Option<u16> {
        self.https_redirects
            .iter()
            .filter_map(|(pattern, port)| Some((pattern.rank(Some(host))?, *port)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, port)| port)
    }

    /// Says this snapshot is the one serving: its clusters tell the timeline what they
    /// changed (see [`Cluster::published`]). Call after storing it.
    pub fn published(&self) {
        for cluster in self.clusters.values() {
            cluster.published();
        }
    }

    pub fn cluster(&self, name_or_host: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name_or_host).or_else(|| {
            let mut by_host: Vec<_> = self
                .clusters
                .iter()
                .filter(|(name, _)| name.rsplit('|').next() == Some(name_or_host))
                .collect();
            by_host.sort_by(|a, b| a.0.cmp(b.0));
            by_host.first().map(|(_, c)| *c)
        })
    }
}

/// The one key every destination of weight above 0 hashes on, when there are two or more of
/// them (`weights` and `keys` are parallel); `None` otherwise.
fn split_key(weights: impl Iterator<Item = u32>, keys: &[Option<HashKey>]) -> Option<HashKey> {
    let mut weighted = weights.zip(keys).filter(|(w, _)| *w > 0).map(|(_, k)| k);
    let first = weighted.next()?.as_ref()?;
    let mut others = 0;
    for key in weighted {
        if key.as_ref() != Some(first) {
            return None;
        }
        others += 1;
    }
    (others > 0).then(|| first.clone())
}

/// The hosts this process serves `vs` for; `None` when it does not serve it.
///
/// Istio applies a VirtualService at a gateway only when its `gateways` name that gateway, and
/// there only for the hosts it shares with the Gateway's `servers[].hosts`; one without
/// `gateways` applies to sidecars (`mesh`). This process is the gateway, so it serves:
/// VirtualServices with no `gateways` or with `mesh`, for all their hosts; those naming a
/// Gateway present in the config (or the one `--gateway` picks), for the hosts they share
/// with its servers (`Gateway::served_hosts`: `*` behind a server for `shop.example.com`
/// serves `shop.example.com`), not at all when they share none; and, when the config holds
/// no Gateway at all, every VirtualService for all its hosts, so the article's YAML works
/// with or without its Gateway resource. A picked Gateway the config does not hold limits
/// nothing: its servers are unknown.
pub fn served_hosts(vs: &VirtualService, config: &Config, ctx: &Context) -> Option<Vec<String>> {
    if vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh") {
        return Some(vs.hosts.clone());
    }
    if config.gateways.is_empty() && ctx.gateway.is_none() {
        return Some(vs.hosts.clone());
    }
    let bound: Vec<&Gateway> = match &ctx.gateway {
        Some(picked) => {
            let picked_name = short(picked);
            if !vs
                .gateways
                .iter()
                .any(|g| g == picked || short(g) == picked_name)
            {
                return None;
            }
            let held: Vec<&Gateway> = config
                .gateways
                .iter()
                .filter(|gw| {
                    gw.meta.is_named(picked) || (!picked.contains('/') && gw.meta.name == *picked)
                })
                .collect();
            if held.is_empty() {
                return Some(vs.hosts.clone());
            }
            held
        }
        None => config
            .gateways
            .iter()
            .filter(|gw| vs.gateways.iter().any(|g| gw.meta.is_named(g)))
            .collect(),
    };
    let mut hosts: Vec<String> = Vec::new();
    for gateway in bound {
        for host in gateway.served_hosts(&vs.meta.namespace, &vs.hosts) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    (!hosts.is_empty()).then_some(hosts)
}

/// The name part of a Gateway reference (`namespace/name` or `name`).
fn short(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

#[cfg(test)]
mod tests;

/// The redirects of `config`'s Gateways (see [`Snapshot::https_redirect`]).
fn https_redirects(config: &Config) -> Vec<(HostPattern, u16)> {
    let mut out = Vec::new();
    for gateway in &config.gateways {
        let port = gateway
            .servers
            .iter()
            .find(|s| s.tls.is_some())
            .map_or(443, |s| s.port);
        for server in gateway.servers.iter().filter(|s| s.https_redirect) {
            out.extend(server.hosts.iter().map(|h| (HostPattern::parse(h), port)));
        }
    }
    out
}
