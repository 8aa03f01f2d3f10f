//! A chaos run's figures: one replica paused, then resumed, while the load ran.
//!
//! Each user's **home** is the replica that answered its last call finished before the pause.
//! Its calls are then sorted by when they ran (in flight at some moment of the pause; sent once
//! the resume plus a settle time is over) and by whose users they are: the paused replica's, or
//! the others'. Pure: a [`Book`] with a call log and the [`Record`] of the pause in, [`Chaos`]
//! out; no clock, no I/O (the runner reads the record's file).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Latency, ms};
use crate::ledger::{Book, Cache, Call};

mod record;

pub use record::{Record, RecordError};

/// Most failed calls listed one by one.
const MAX_LISTED: usize = 10;
/// Most slow calls listed: the slowest few say enough.
const MAX_SLOWEST: usize = 5;

/// What the users of one side saw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Group {
    /// Users whose home is on this side.
    pub users: usize,
    /// Their calls, the whole run.
    pub calls: u64,
    /// Their failed calls, the whole run.
    pub errors: u64,
    /// Their slowest call of the whole run, served or failed, from its start, ms.
    pub max_ms: Option<f64>,
    /// Their calls in flight at some moment of the pause, served or failed.
    pub during: Latency,
    /// Users answered during the pause by a replica other than their home.
    pub moved: usize,
    /// Replicas other than their home that answered them during the pause, summed over the
    /// users: one per user that moved once, more for a user that moved on again.
    pub away_hosts: usize,
    /// Calls in flight during the pause answered with `x-cache: miss` (a first call paid).
    pub during_misses: u64,
    /// Their calls sent once the resume plus the settle time was over.
    pub after_calls: u64,
    /// Of those, calls not answered by the user's home from its cache (other host, miss, error).
    pub after_astray: u64,
    /// Users with such a call.
    pub after_astray_users: usize,
    /// Users without a call after the settle: whether they came home is not known.
    pub after_silent_users: usize,
}

/// One call named in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// The user's key index (`<key-prefix>-<user>`).
    pub user: u64,
    /// When it was sent, from the pause, ms (negative: before it).
    pub sent_ms: f64,
    /// From its start to its answer or failure, ms.
    pub latency_ms: f64,
    /// `<host> (hit|miss)`, or the failure.
    pub outcome: String,
}

/// Where one of the paused replica's users went from the pause on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    /// The user's key index.
    pub user: u64,
    /// Its calls from the pause on that were answered by another host than the call before,
    /// or failed, in the order they were sent.
    pub stops: Vec<Listed>,
}

/// The figures of a chaos run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chaos {
    /// The paused replica.
    pub replica: String,
    /// When it was paused, UTC RFC 3339.
    pub paused_at: String,
    /// When it was resumed.
    pub resumed_at: String,
    /// How long it was paused, seconds.
    pub paused_s: f64,
    /// How long after the resume users were given to come home, seconds.
    pub settle_s: f64,
    /// Users whose home was the paused replica.
    pub its_users: Group,
    /// Users whose home was another replica.
    pub other_users: Group,
    /// Users with no call finished before the pause: their home is not known.
    pub homeless_users: usize,
    /// Calls a full call log left out: the figures miss them.
    pub calls_dropped: u64,
    /// The paused replica's users' slowest calls, slowest first.
    pub slowest: Vec<Listed>,
    /// Where the paused replica's first users (by key) went, from the pause on.
    pub journeys: Vec<Journey>,
    /// Failed calls of any user, earliest first.
    pub failures: Vec<Listed>,
}

/// One side's running totals.
struct Tally {
    users: HashSet<u64>,
    calls: u64,
    errors: u64,
    max: Option<Duration>,
    during: Histogram<u64>,
    moved: HashSet<u64>,
    away: HashSet<(u64, u16)>,
    during_misses: u64,
    after_calls: u64,
    after_astray: u64,
    astray_users: HashSet<u64>,
    after_users: HashSet<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            users: HashSet::new(),
            calls: 0,
            errors: 0,
            max: None,
            during: Histogram::new(3).unwrap_or_else(|_| unreachable!("3 figures is valid")),
            moved: HashSet::new(),
            away: HashSet::new(),
            during_misses: 0,
            after_calls: 0,
            after_astray: 0,
            astray_users: HashSet::new(),
            after_users: HashSet::new(),
        }
    }

    fn add(&mut self, call: &Call, home: u16, record: &Record, settled: SystemTime) {
        self.users.insert(call.key);
        self.calls += 1;
        self.errors += u64::from(call.outcome.is_err());
        self.max = self.max.max(Some(call.latency));
        let at_home = |cache: Option<Cache>| match call.outcome {
            Ok(served) => served.host == home && cache.is_none_or(|c| served.cache == c),
            Err(_) => false,
        };
        if call.sent < record.resumed_at && call.ended() > record.paused_at {
            let micros = u64::try_from(call.latency.as_micros()).unwrap_or(u64::MAX);
            if self.during.record(micros.max(1)).is_err() {
                self.during.saturating_record(micros);
            }
            if let Ok(served) = call.outcome {
                if served.host != home {
                    self.moved.insert(call.key);
                    self.away.insert((call.key, served.host));
                }
                self.during_misses += u64::from(served.cache == Cache::Miss);
            }
        }
        if call.sent >= settled {
            self.after_calls += 1;
            self.after_users.insert(call.key);
            if !at_home(Some(Cache::Hit)) {
                self.after_astray += 1;
                self.astray_users.insert(call.key);
            }
        }
    }

    fn group(&self) -> Group {
        Group {
            users: self.users.len(),
            calls: self.calls,
            errors: self.errors,
            max_ms: self.max.map(|max| max.as_secs_f64() * 1000.0),
            during: Latency::of(&self.during),
            moved: self.moved.len(),
            away_hosts: self.away.len(),
            during_misses: self.during_misses,
            after_calls: self.after_calls,
            after_astray: self.after_astray,
            after_astray_users: self.astray_users.len(),
            after_silent_users: self.users.len() - self.after_users.len(),
        }
    }
}

/// Each user's home: the host of its last call answered before `paused_at`.
fn homes(calls: &[Call], paused_at: SystemTime) -> HashMap<u64, (SystemTime, u16)> {
    let mut homes: HashMap<u64, (SystemTime, u16)> = HashMap::new();
    for call in calls {
        let Ok(served) = call.outcome else { continue };
        let ended = call.ended();
        if ended > paused_at {
            continue;
        }
        let home = homes.entry(call.key).or_insert((ended, served.host));
        if ended >= home.0 {
            *home = (ended, served.host);
        }
    }
    homes
}

/// The chaos figures of `book`'s call log for the pause `record` describes, users being due
/// home `settle` after the resume.
pub fn figures(book: &Book, record: &Record, settle: Duration) -> Chaos {
    let homes = homes(&book.calls, record.paused_at);
    let paused = book.hosts.iter().position(|host| *host == record.replica);
    let settled = record.resumed_at + settle;
    let (mut its, mut others) = (Tally::new(), Tally::new());
    let mut homeless = HashSet::new();
    let mut slowest: Vec<&Call> = Vec::new();
    let mut travels: HashMap<u64, Vec<&Call>> = HashMap::new();
    for call in &book.calls {
        let Some(&(_, home)) = homes.get(&call.key) else {
            homeless.insert(call.key);
            continue;
        };
        if paused == Some(usize::from(home)) {
            its.add(call, home, record, settled);
            slowest.push(call);
            if call.ended() > record.paused_at {
                travels.entry(call.key).or_default().push(call);
            }
        } else {
            others.add(call, home, record, settled);
        }
    }
    slowest.sort_by_key(|call| std::cmp::Reverse(call.latency));
    let list = |call: &Call| listed(book, record, call);
    let mut failures: Vec<&Call> = book.calls.iter().filter(|c| c.outcome.is_err()).collect();
    failures.sort_by_key(|call| call.sent);
    let mut travellers: Vec<u64> = travels.keys().copied().collect();
    travellers.sort_unstable();
    let journeys = travellers
        .into_iter()
        .take(MAX_LISTED)
        .map(|user| {
            let mut calls = travels.remove(&user).unwrap_or_default();
            journey(user, &mut calls, homes[&user].1, &list)
        })
        .collect();
    Chaos {
        replica: record.replica.clone(),
        paused_at: humantime::format_rfc3339_millis(record.paused_at).to_string(),
        resumed_at: humantime::format_rfc3339_millis(record.resumed_at).to_string(),
        paused_s: seconds_between(record.paused_at, record.resumed_at),
        settle_s: settle.as_secs_f64(),
        its_users: its.group(),
        other_users: others.group(),
        homeless_users: homeless.len(),
        calls_dropped: book.calls_dropped,
        slowest: slowest.into_iter().take(MAX_SLOWEST).map(list).collect(),
        journeys,
        failures: failures.into_iter().take(MAX_LISTED).map(list).collect(),
    }
}

/// The calls of one user where its host changed (from `home` at first) or that failed.
fn journey(user: u64, calls: &mut [&Call], home: u16, list: &dyn Fn(&Call) -> Listed) -> Journey {
    calls.sort_by_key(|call| call.sent);
    let mut last = Some(home);
    let mut stops = Vec::new();
    for call in calls.iter() {
        let host = call.outcome.ok().map(|served| served.host);
        if host.is_none() || host != last {
            stops.push(list(call));
        }
        last = host.or(last);
    }
    Journey { user, stops }
}

fn listed(book: &Book, record: &Record, call: &Call) -> Listed {
    let outcome = match call.outcome {
        Ok(served) => {
            let host = book.hosts.get(usize::from(served.host));
            let cache = match served.cache {
                Cache::Hit => "hit",
                Cache::Miss => "miss",
            };
            format!("{} ({cache})", host.map_or("?", String::as_str))
        }
        Err(error) => error.to_string(),
    };
    Listed {
        user: call.key,
        sent_ms: seconds_between(record.paused_at, call.sent) * 1000.0,
        latency_ms: call.latency.as_secs_f64() * 1000.0,
        outcome,
    }
}

/// `to - from` in seconds, negative when `to` is earlier.
fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.during;
        write!(
            f,
            "{} users, {} calls, {} failed, slowest {}\n      during the pause {} calls, p50 {}, p99 {}, max {}, {} cold; {} users answered elsewhere, by {} replicas in all\n      after the settle {} calls, {} not home and warm ({} users), {} users without a call",
            self.users,
            self.calls,
            self.errors,
            ms(self.max_ms),
            d.count,
            ms(d.p50_ms),
            ms(d.p99_ms),
            ms(d.max_ms),
            self.during_misses,
            self.moved,
            self.away_hosts,
            self.after_calls,
            self.after_astray,
            self.after_astray_users,
            self.after_silent_users
        )
    }
}

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user {} sent {:+.2} s from the pause: {:.2} ms, {}",
            self.user,
            self.sent_ms / 1000.0,
            self.latency_ms,
            self.outcome
        )
    }
}

impl fmt::Display for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  chaos        {} paused {:.1} s, {} to {}; users due home, warm, {:.1} s after",
            self.replica, self.paused_s, self.paused_at, self.resumed_at, self.settle_s
        )?;
        writeln!(f, "    its users  {}", self.its_users)?;
        writeln!(f, "    others     {}", self.other_users)?;
        if self.homeless_users > 0 {
            writeln!(
                f,
                "    no home    {} users had no call answered before the pause",
                self.homeless_users
            )?;
        }
        if self.calls_dropped > 0 {
            writeln!(
                f,
                "    dropped    {} calls (call log full)",
                self.calls_dropped
            )?;
        }
        for call in &self.slowest {
            writeln!(f, "    slowest    {call}")?;
        }
        for journey in &self.journeys {
            let stops: Vec<String> = journey
                .stops
                .iter()
                .map(|stop| {
                    format!(
                        "{:+.2} s {} {:.0} ms",
                        stop.sent_ms / 1000.0,
                        stop.outcome,
                        stop.latency_ms
                    )
                })
                .collect();
            writeln!(
                f,
                "    journey    user {}: {}",
                journey.user,
                stops.join(" -> ")
            )?;
        }
        for call in &self.failures {
            writeln!(f, "    failed     {call}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
