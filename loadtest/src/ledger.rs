//! What the goose users saw, call by call: which host served each key, hit or miss, how long.
//!
//! One [`Ledger`] is shared by every goose user of a run. A call takes one short `Mutex`
//! (a few hash-map and histogram updates, never held across an await); goose's own metrics
//! channel costs more than that per request. Latencies go into HDR histograms, so memory stays
//! bounded however long the run. A run that must be judged call by call (`-s chaos`: which
//! calls were in flight while a replica was paused, and where each user went) also keeps a
//! [`Call`] per request, up to [`MAX_LOGGED_CALLS`].
//!
//! Second in the crate's line of modules: it may import `config` (it needs nothing from it), and
//! may not import `scenario`, `summary`, `verdict` or `runner`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use thiserror::Error;

/// How many distinct error messages are kept; more are counted under "other errors".
const MAX_ERROR_KINDS: usize = 20;

/// Most calls a call log keeps (48 bytes each, so 48 MB at most); later ones are only counted.
/// The CI chaos run (100 users for a minute) makes about 50 000.
pub const MAX_LOGGED_CALLS: usize = 1_000_000;

/// Why a call does not count as a served `/ping`.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// No answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The connection could not be opened.
    #[error("connection failed")]
    Connect,
    /// The connection broke, or the answer was not HTTP.
    #[error("transport error")]
    Transport,
    /// An answer other than 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// A 2xx without `x-served-by`: the answer did not come from sticky-svc.
    #[error("2xx without an x-served-by header")]
    NoServedBy,
    /// A 2xx whose `x-cache` is neither `hit` nor `miss`.
    #[error("2xx without x-cache: hit|miss")]
    NoCacheHeader,
}

/// Whether the service answered from its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// `x-cache: hit`.
    Hit,
    /// `x-cache: miss`: the call paid the first-call cost.
    Miss,
}

/// A served call's replica (an index into [`Book::hosts`]) and cache outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The host that answered.
    pub host: u16,
    /// Hit or miss.
    pub cache: Cache,
}

/// One request, as the call log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The user's key.
    pub key: u64,
    /// Wall-clock time the request was sent (just before goose sent it).
    pub sent: SystemTime,
    /// Goose's time to the answer's headers, or to the failure.
    pub latency: Duration,
    /// Who answered, or why the call failed.
    pub outcome: Result<Served, CallError>,
}

impl Call {
    /// When the answer (or the failure) came.
    pub fn ended(&self) -> SystemTime {
        self.sent + self.latency
    }
}

/// One key's history.
#[derive(Debug, Clone, Default)]
pub struct Track {
    /// The hosts that served the key, in order, one entry per change of host.
    pub hosts: Vec<u16>,
    /// Successful calls.
    pub calls: u64,
    /// Misses after the key's first successful call.
    pub lost_caches: u64,
}

impl Track {
    /// How many times the key changed host.
    pub fn moves(&self) -> usize {
        self.hosts.len().saturating_sub(1)
    }
}

/// Everything recorded so far; read it with [`Ledger::snapshot`].
#[derive(Debug, Clone)]
pub struct Book {
    /// Host names, indexed by the ids in [`Track::hosts`].
    pub hosts: Vec<String>,
    /// Per key.
    pub tracks: HashMap<u64, Track>,
    /// Successful calls.
    pub requests: u64,
    /// Failed calls.
    pub errors: u64,
    /// Failed calls by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency of misses, microseconds.
    pub cold: Histogram<u64>,
    /// Latency of hits, microseconds.
    pub warm: Histogram<u64>,
    /// Every call, in the order recorded, when the ledger keeps a call log; else empty.
    pub calls: Vec<Call>,
    /// Calls left out of a full call log.
    pub calls_dropped: u64,
}

/// The shared recorder of a run.
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    next_key: AtomicU64,
    log_calls: bool,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// An empty ledger that keeps counters and histograms only.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// An empty ledger that also keeps a [`Call`] per request (up to [`MAX_LOGGED_CALLS`]).
    pub fn with_call_log() -> Self {
        Self::build(true)
    }

    fn build(log_calls: bool) -> Self {
        // 3 significant figures, auto-resizing: exact enough for p99, small in memory.
        let histogram = || Histogram::new(3).unwrap_or_else(|_| unreachable!("3 figures is valid"));
        Self {
            book: Mutex::new(Book {
                hosts: Vec::new(),
                tracks: HashMap::new(),
                requests: 0,
                errors: 0,
                errors_by_kind: BTreeMap::new(),
                cold: histogram(),
                warm: histogram(),
                calls: Vec::new(),
                calls_dropped: 0,
            }),
            next_key: AtomicU64::new(0),
            log_calls,
        }
    }

    /// A key id never handed out before in this run (for `cold-start`'s fresh users).
    pub fn fresh_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a served call of `key`, sent at `sent`.
    pub fn served(&self, key: u64, host: &str, cache: Cache, latency: Duration, sent: SystemTime) {
        let mut book = self.lock();
        let book = &mut *book;
        let host = match book.hosts.iter().position(|known| known == host) {
            Some(id) => id,
            None => {
                book.hosts.push(host.to_owned());
                book.hosts.len() - 1
            }
        };
        let host = u16::try_from(host).unwrap_or(u16::MAX);
        let track = book.tracks.entry(key).or_default();
        if track.hosts.last() != Some(&host) {
            track.hosts.push(host);
        }
        if track.calls > 0 && cache == Cache::Miss {
            track.lost_caches += 1;
        }
        track.calls += 1;
        book.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let histogram = match cache {
            Cache::Hit => &mut book.warm,
            Cache::Miss => &mut book.cold,
        };
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp to its
        // current range instead.
        if histogram.record(micros.max(1)).is_err() {
            histogram.saturating_record(micros);
        }
        let outcome = Ok(Served { host, cache });
        self.log(book, key, sent, latency, outcome);
    }

    /// Records a failed call of `key`, sent at `sent`, that failed after `latency`.
    pub fn failed(&self, key: u64, error: CallError, latency: Duration, sent: SystemTime) {
        let mut book = self.lock();
        self.log(&mut book, key, sent, latency, Err(error));
        book.errors += 1;
        let kind = error.to_string();
        if book.errors_by_kind.len() < MAX_ERROR_KINDS || book.errors_by_kind.contains_key(&kind) {
            *book.errors_by_kind.entry(kind).or_default() += 1;
        } else {
            *book
                .errors_by_kind
                .entry("other errors".to_owned())
                .or_default() += 1;
        }
    }

    fn log(
        &self,
        book: &mut Book,
        key: u64,
        sent: SystemTime,
        latency: Duration,
        outcome: Result<Served, CallError>,
    ) {
        if !self.log_calls {
            return;
        }
        if book.calls.len() < MAX_LOGGED_CALLS {
            book.calls.push(Call {
                key,
                sent,
                latency,
                outcome,
            });
        } else {
            book.calls_dropped += 1;
        }
    }

    /// A copy of what was recorded.
    pub fn snapshot(&self) -> Book {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panicking goose user leaves counters that are still whole numbers: keep them.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn tracks_host_changes_and_lost_caches_per_key() {
        let ledger = Ledger::new();
        ledger.served(1, "a", Cache::Miss, MS * 500, T0);
        ledger.served(1, "a", Cache::Hit, MS, T0);
        ledger.served(1, "b", Cache::Miss, MS * 500, T0);
        ledger.served(1, "a", Cache::Hit, MS, T0);
        ledger.served(2, "b", Cache::Hit, MS, T0);
        let book = ledger.snapshot();
        assert_eq!(book.hosts, ["a", "b"]);
        let one = &book.tracks[&1];
        assert_eq!(one.hosts, [0, 1, 0]);
        assert_eq!(one.moves(), 2);
        assert_eq!(one.lost_caches, 1);
        assert_eq!(one.calls, 4);
        // A key's first call may be warm (a rerun against a warm stack): not a lost cache.
        assert_eq!(book.tracks[&2].lost_caches, 0);
        assert_eq!(book.requests, 5);
        assert_eq!(book.cold.len(), 2);
        assert_eq!(book.warm.len(), 3);
    }

    #[test]
    fn counts_errors_by_kind_with_a_bounded_number_of_kinds() {
        let ledger = Ledger::new();
        ledger.failed(0, CallError::Status(503), MS, T0);
        ledger.failed(0, CallError::Status(503), MS, T0);
        ledger.failed(0, CallError::Timeout, MS, T0);
        for status in 0..100 {
            ledger.failed(0, CallError::Status(400 + status), MS, T0);
        }
        let book = ledger.snapshot();
        assert_eq!(book.errors, 103);
        assert_eq!(book.errors_by_kind["HTTP 503"], 2);
        assert_eq!(book.errors_by_kind["timed out"], 1);
        assert_eq!(book.errors_by_kind.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(book.errors_by_kind.values().sum::<u64>(), 103);
    }

    #[test]
    fn a_call_log_keeps_each_call_with_its_time_and_outcome() {
        let sent = T0 + Duration::from_secs(100);
        let quiet = Ledger::new();
        quiet.served(1, "a", Cache::Hit, MS, sent);
        assert!(quiet.snapshot().calls.is_empty(), "off unless asked for");

        let ledger = Ledger::with_call_log();
        ledger.served(1, "a", Cache::Miss, MS * 500, sent);
        ledger.failed(2, CallError::Timeout, MS * 900, sent + MS);
        let book = ledger.snapshot();
        assert_eq!(
            book.calls,
            [
                Call {
                    key: 1,
                    sent,
                    latency: MS * 500,
                    outcome: Ok(Served {
                        host: 0,
                        cache: Cache::Miss
                    }),
                },
                Call {
                    key: 2,
                    sent: sent + MS,
                    latency: MS * 900,
                    outcome: Err(CallError::Timeout),
                },
            ]
        );
        assert_eq!(book.calls[1].ended(), sent + MS * 901);
        assert_eq!(book.calls_dropped, 0);
    }

    #[test]
    fn fresh_keys_are_distinct() {
        let ledger = Ledger::new();
        assert_ne!(ledger.fresh_key(), ledger.fresh_key());
    }
}
