//! Endpoint discovery: the set of addresses behind each cluster, from a ServiceEntry's `STATIC`
//! endpoints or from DNS.
//!
//! DNS works as Envoy's `STRICT_DNS`: every A and AAAA record of the name is an endpoint, and the
//! name is resolved again when its TTL runs out, the TTL clamped to [`RefreshBounds`] (default
//! 1 s to 5 s) so that a Kubernetes headless Service or a compose network alias is followed
//! within seconds of `kubectl scale` / `docker-compose up --scale`, even when the DNS server hands
//! out long TTLs (Docker's embedded DNS says 600 s).
//!
//! What an answer means:
//! - records → exactly those endpoints (sorted, so the set does not depend on answer order);
//! - "no such name" or "no records" → no endpoints: the cluster answers 503 at once;
//! - a failure (timeout, SERVFAIL, refused) → the last good set is kept, as Envoy does, and the
//!   name is tried again after the minimum refresh. A first lookup that fails has no set to
//!   keep: it publishes the empty set, so a subscriber knows the first lookup has ended.
//!
//! A config reload that adds a DNS cluster waits for its first lookup (at most
//! [`FIRST_LOOKUP_WAIT`]) before the new config is published, so the old config serves until
//! then instead of the new cluster answering 503.
//!
//! Each watch publishes through a `tokio::sync::watch` channel; whoever builds the balancer
//! tables subscribes. The resolver keeps no cache of its own: the watch loop is the cache.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::sync::watch;

use crate::endpoint::{Endpoint, EndpointSet, endpoint_set};

/// How often a DNS name is resolved again: its TTL, clamped to `[min, max]`; and how long a
/// failing name keeps its last answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    /// Never sooner than this (also the retry delay after a failed lookup).
    pub min: Duration,
    /// Never later than this, whatever the TTL says.
    pub max: Duration,
    /// `None` (the default, as Envoy): a failing lookup keeps the last set for as long as it
    /// fails. `Some(grace)`: once lookups have failed for `grace` since the last answer, the
    /// set is emptied. For DNS servers that answer nothing at all for a name that is gone, as
    /// Docker's embedded DNS does for a scaled-to-zero service when it cannot reach an upstream
    /// resolver (an offline laptop): without it the gateway would keep dead addresses.
    pub failure_grace: Option<Duration>,
}

impl Default for RefreshBounds {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(5),
            failure_grace: None,
        }
    }
}

impl RefreshBounds {
    /// The delay before the next lookup of a name whose answer lives `ttl`.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min, self.max.max(self.min))
    }
}

/// What can go wrong in discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The system resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system DNS configuration: {0}")]
    SystemConfig(String),
    /// A lookup failed for a reason other than "no such name".
    #[error("DNS lookup of {host} failed: {reason}")]
    Lookup {
        /// The name looked up.
        host: String,
        /// The resolver's words.
        reason: String,
    },
}

/// The addresses of one name and how long they are good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Every A and AAAA record, sorted; empty when the name does not exist.
    pub addrs: Vec<IpAddr>,
    /// Time to live of the answer (the minimum over its records).
    pub ttl: Duration,
}

/// A DNS stub resolver for discovery (hickory, no cache, A and AAAA).
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsResolver")
    }
}

impl DnsResolver {
    /// Uses the system configuration (`/etc/resolv.conf`: name servers, search domains, ndots),
    /// so a short name resolves in a pod or container as it would with getaddrinfo.
    pub fn from_system() -> Result<Self, DiscoveryError> {
        let mut builder = TokioResolver::builder_tokio()
            .map_err(|e| DiscoveryError::SystemConfig(e.to_string()))?;
        tune(builder.options_mut());
        let inner = builder
            .build()
            .map_err(|e| DiscoveryError::SystemConfig(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Asks only this name server (UDP, then TCP on truncation), with no search domains.
    pub fn with_name_server(server: SocketAddr) -> Self {
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut ns.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        tune(builder.options_mut());
        let inner = builder
            .build()
            .expect("a resolver with one explicit name server builds");
        Self { inner }
    }

    /// Looks `host` up once. A name that does not exist, or has no address records, resolves
    /// to no addresses; other failures are errors.
    pub async fn resolve(&self, host: &str) -> Result<Resolved, DiscoveryError> {
        match self.inner.lookup_ip(host).await {
            Ok(lookup) => {
                let mut addrs: Vec<IpAddr> = lookup.iter().collect();
                addrs.sort();
                addrs.dedup();
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(Instant::now());
                Ok(Resolved { addrs, ttl })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Resolved {
                addrs: Vec::new(),
                ttl: Duration::ZERO,
            }),
            Err(e) => Err(DiscoveryError::Lookup {
                host: host.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// How long a query waits for its answer; a lookup makes up to [`LOOKUP_ATTEMPTS`] of them.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
const LOOKUP_ATTEMPTS: usize = 2;

/// The longest a config is held back for its new DNS clusters' first lookups: a lookup gives
/// up after `LOOKUP_TIMEOUT × LOOKUP_ATTEMPTS` (2 s), with room for a ServiceEntry that lists a
/// few names (resolved in turn). Past it the config is published, and a cluster still without
/// an answer serves 503 until one comes.
pub const FIRST_LOOKUP_WAIT: Duration = Duration::from_secs(5);

fn tune(opts: &mut ResolverOpts) {
    // Every lookup must reach the server: the watch loop decides when to ask again.
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Cluster DNS (CoreDNS, Docker's) answers in milliseconds; a slow answer is a failure.
    opts.timeout = LOOKUP_TIMEOUT;
    opts.attempts = LOOKUP_ATTEMPTS;
}

/// One name to resolve into endpoints on `port`, each with `weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    /// The DNS name.
    pub host: String,
    /// The port every resolved address gets.
    pub port: u16,
    /// The weight every resolved address gets.
    pub weight: u32,
}

/// Resolves `targets` until every receiver of `tx` is gone, publishing each new endpoint set.
///
/// The first lookup happens at once, and always publishes: its set, or the empty set when it
/// fails. After that a set is published only when it differs from the last one, so
/// subscribers rebuild tables only on real changes. When any target fails, nothing is
/// published (a partial answer would move users needlessly) and the lookup is retried after
/// `bounds.min`; past `bounds.failure_grace`, if set, the set is emptied.
pub async fn watch_dns(
    resolver: DnsResolver,
    targets: Vec<DnsTarget>,
    bounds: RefreshBounds,
    tx: watch::Sender<EndpointSet>,
) {
    let mut last: Option<EndpointSet> = None;
    let mut answered = Instant::now();
    loop {
        let delay = match resolve_all(&resolver, &targets).await {
            Ok((set, ttl)) => {
                answered = Instant::now();
                if last.as_ref() != Some(&set) {
                    tracing::info!(
                        host = %targets.first().map(|t| t.host.as_str()).unwrap_or(""),
                        endpoints = set.len(),
                        "DNS endpoint set changed"
                    );
                    tx.send_replace(set.clone());
                    last = Some(set);
                }
                bounds.clamp(ttl)
            }
            Err(e) if last.is_none() => {
                tracing::warn!(
                    error = %e,
                    "first DNS lookup failed: no endpoints until a lookup answers"
                );
                let empty = EndpointSet::from(Vec::new());
                tx.send_replace(empty.clone());
                last = Some(empty);
                bounds.min
            }
            Err(e) => {
                let failing = answered.elapsed();
                let expired = bounds.failure_grace.is_some_and(|grace| failing >= grace);
                if expired && last.as_ref().is_some_and(|set| !set.is_empty()) {
                    tracing::warn!(error = %e, ?failing, "DNS failing past the grace: no endpoints");
                    let empty = EndpointSet::from(Vec::new());
                    tx.send_replace(empty.clone());
                    last = Some(empty);
                } else if !expired {
                    tracing::warn!(error = %e, "keeping the last endpoint set");
                }
                bounds.min
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
    }
}

async fn resolve_all(
    resolver: &DnsResolver,
    targets: &[DnsTarget],
) -> Result<(EndpointSet, Duration), DiscoveryError> {
    let mut endpoints = Vec::new();
    let mut ttl = Duration::MAX;
    for target in targets {
        let resolved = resolver.resolve(&target.host).await?;
        if !resolved.addrs.is_empty() {
            ttl = ttl.min(resolved.ttl);
        }
        endpoints.extend(
            resolved
                .addrs
                .into_iter()
                .map(|ip| Endpoint::at(SocketAddr::new(ip, target.port), target.weight)),
        );
    }
    Ok((endpoint_set(endpoints), ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_clamped() {
        let b = RefreshBounds::default();
        assert_eq!(b.clamp(Duration::from_secs(600)), Duration::from_secs(5));
        assert_eq!(b.clamp(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(b.clamp(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
