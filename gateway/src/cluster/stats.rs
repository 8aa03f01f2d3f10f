//! What the dashboard shows of one endpoint beyond its place in the table: the responses it
//! sent, its cold and warm calls (`x-cache: miss|hit`, sticky-svc's header and a common one of
//! caches), the name it gives in `x-served-by`, the distinct users it served lately, and its
//! health as the control task last judged it.
//!
//! The request path calls [`EndpointStats::answered`] once per response it relays: a counter,
//! two header lookups, and a HyperLogLog register (`crate::distinct`); the name is hashed and
//! only written when it changes. The rest is read by the admin sampler once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::HeaderMap;
use http::header::HeaderName;
use prometheus_client::metrics::counter::Counter;

use crate::distinct::Distinct;
use crate::session::replica_tag;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// Longest `x-served-by` kept as a replica's name; longer ones are cut at a character boundary.
const MAX_NAME: usize = 64;

/// An endpoint's health as its cluster's control task last published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// In the balancer.
    #[default]
    Healthy,
    /// Taken out by outlier detection until `until`. `used`: the cluster is in panic
    /// (fewer healthy than `minHealthPercent`), so it is still sent requests.
    Ejected {
        /// Which threshold it crossed.
        reason: &'static str,
        /// When it is due back.
        until: Instant,
        /// Still used, the cluster being in panic.
        used: bool,
    },
    /// Its active health checks fail.
    FailingChecks,
}

/// One endpoint's live figures. Shared across state rebuilds with its [`super::EndpointState`].
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Responses relayed from it.
    responses: AtomicU64,
    /// `x-cache: hit` answers (the series of `gateway_upstream_cache_total{result="hit"}`).
    hits: Counter,
    /// `x-cache: miss` answers.
    misses: Counter,
    /// A tag of the last `x-served-by`, so an unchanged name costs no lock.
    name_tag: AtomicU64,
    name: Mutex<Option<Arc<str>>>,
    /// Distinct users (request key hashes) lately.
    users: Distinct,
    health: Mutex<Health>,
}

/// What the sampler reads of an endpoint at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSample {
    /// Responses relayed so far.
    pub responses: u64,
    /// Warm calls so far.
    pub hits: u64,
    /// Cold calls so far.
    pub misses: u64,
    /// The name it gave last in `x-served-by`.
    pub name: Option<Arc<str>>,
    /// Distinct users in the last one to two windows.
    pub users: u64,
    /// As last published.
    pub health: Health,
}

impl EndpointStats {
    /// Stats counting cold and warm calls into these counters (the metric family's series).
    pub fn new(hits: Counter, misses: Counter) -> Self {
        Self {
            hits,
            misses,
            ..Self::default()
        }
    }

    /// Counts one response relayed from the endpoint, with the hash of the request's key when
    /// it had one.
    #[inline]
    pub fn answered(&self, headers: &HeaderMap, key_hash: Option<u64>) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        if let Some(hash) = key_hash {
            self.users.insert(hash);
        }
        // One pass over the few fields of a response, rather than two lookups by name (each
        // hashes the name: ~180 instructions apiece). The first of each counts, as `get` would.
        let (mut cache, mut served_by) = (None, None);
        for (name, value) in headers {
            if cache.is_none() && *name == X_CACHE {
                cache = Some(value);
            } else if served_by.is_none() && *name == X_SERVED_BY {
                served_by = Some(value);
            }
        }
        if let Some(cache) = cache {
            let value = cache.as_bytes();
            if value.eq_ignore_ascii_case(b"hit") {
                self.hits.inc();
            } else if value.eq_ignore_ascii_case(b"miss") {
                self.misses.inc();
            }
        }
        if let Some(name) = served_by {
            let tag = replica_tag(name.as_bytes());
            if self.name_tag.load(Ordering::Relaxed) != tag {
                self.rename(
                    tag,
                    std::str::from_utf8(name.as_bytes()).unwrap_or("(not UTF-8)"),
                );
            }
        }
    }

    #[cold]
    fn rename(&self, tag: u64, name: &str) {
        let mut end = name.len().min(MAX_NAME);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = Some(name[..end].into());
        self.name_tag.store(tag, Ordering::Relaxed);
    }

    /// Sets the health the control task judged.
    pub fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }

    /// Starts a new distinct-users window ([`Distinct::rotate`]).
    pub fn rotate_users(&self) {
        self.users.rotate();
    }

    /// The figures now.
    pub fn sample(&self) -> StatsSample {
        StatsSample {
            responses: self.responses.load(Ordering::Relaxed),
            hits: self.hits.get(),
            misses: self.misses.get(),
            name: self.name.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            users: self.users.estimate(),
            health: *self.health.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn counts_cold_and_warm_calls_users_and_keeps_the_last_name() {
        let (hits, misses) = (Counter::default(), Counter::default());
        let stats = EndpointStats::new(hits.clone(), misses.clone());
        let cold = headers(&[("x-cache", "miss"), ("x-served-by", "sticky-svc-1")]);
        let warm = headers(&[("x-cache", "HIT"), ("x-served-by", "sticky-svc-1")]);
        for user in 0..10u64 {
            let hash = crate::hash::key_hash(&user.to_le_bytes());
            stats.answered(&cold, Some(hash));
            stats.answered(&warm, Some(hash));
            stats.answered(&warm, Some(hash));
        }
        // Another upstream's headers, and none: counted as responses only.
        stats.answered(&headers(&[("x-cache", "stale")]), None);
        stats.answered(&HeaderMap::new(), None);
        let sample = stats.sample();
        assert_eq!(
            (sample.responses, sample.hits, sample.misses, sample.users),
            (32, 20, 10, 10)
        );
        assert_eq!(sample.name.as_deref(), Some("sticky-svc-1"));
        // The metric series are the same counters.
        assert_eq!((hits.get(), misses.get()), (20, 10));

        // A new replica on the address: the new name.
        stats.answered(&headers(&[("x-served-by", "sticky-svc-7")]), None);
        assert_eq!(stats.sample().name.as_deref(), Some("sticky-svc-7"));
        // A long name is cut at a character boundary; bytes that are not UTF-8 say so.
        let mut map = HeaderMap::new();
        map.insert(
            "x-served-by",
            HeaderValue::from_str(&"é".repeat(100)).unwrap(),
        );
        stats.answered(&map, None);
        let name = stats.sample().name.unwrap();
        assert_eq!(
            (name.len(), name.chars().all(|c| c == 'é')),
            (MAX_NAME, true)
        );
        map.insert("x-served-by", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        stats.answered(&map, None);
        assert_eq!(stats.sample().name.as_deref(), Some("(not UTF-8)"));
    }
}
