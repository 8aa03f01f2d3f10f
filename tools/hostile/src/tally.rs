//! What the connections saw, counted as it happens, and the [`Report`] read from it.
//!
//! Each open connection holds an [`Open`]: it records the answers the connection saw and, if the
//! server closes it, when (since that connection opened); dropping it (the run's end) counts the
//! connection as no longer open without counting a server close.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::plan::Mode;

/// Counters shared by the connections of one run.
#[derive(Debug)]
pub struct Tally {
    start: Instant,
    attempted: AtomicU64,
    opened: AtomicU64,
    connect_failed: AtomicU64,
    open: AtomicU64,
    settled: AtomicU64,
    server_closed: AtomicU64,
    unanswered: AtomicU64,
    answers: Mutex<BTreeMap<u16, u64>>,
    close_after: Mutex<Option<(Duration, Duration)>>,
}

/// What a run saw, at one moment or at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What each connection did.
    pub mode: Mode,
    /// Where.
    pub target: SocketAddr,
    /// Connections planned.
    pub planned: usize,
    /// Connections tried so far.
    pub attempted: u64,
    /// Connections the server accepted.
    pub opened: u64,
    /// Connections not accepted (refused, timed out, no local port left).
    pub connect_failed: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections done with their opening move: answered, stalled, closed, or failed.
    pub settled: u64,
    /// Connections the server closed (FIN, reset or GOAWAY) while the run held them.
    pub server_closed: u64,
    /// Of those, the ones closed before any answer.
    pub unanswered: u64,
    /// Answers seen, by status.
    pub answers: BTreeMap<u16, u64>,
    /// The earliest and the latest server close, each since its connection opened.
    pub close_after: Option<(Duration, Duration)>,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// Empty counters; the run's clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            attempted: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            open: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            server_closed: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            answers: Mutex::new(BTreeMap::new()),
            close_after: Mutex::new(None),
        }
    }

    /// A connection is being tried.
    pub fn attempt(&self) {
        self.attempted.fetch_add(1, Relaxed);
    }

    /// A connection was not accepted.
    pub fn connect_failed(&self) {
        self.connect_failed.fetch_add(1, Relaxed);
        self.settled.fetch_add(1, Relaxed);
    }

    /// A connection was accepted; the returned [`Open`] records what happens to it.
    pub fn opened(self: &Arc<Self>) -> Open {
        self.opened.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        Open {
            tally: Arc::clone(self),
            at: Instant::now(),
            answered: false,
            settled: false,
        }
    }

    /// Connections done with their opening move so far.
    pub fn settled(&self) -> u64 {
        self.settled.load(Relaxed)
    }

    /// The counts now.
    pub fn report(&self, mode: Mode, target: SocketAddr, planned: usize) -> Report {
        Report {
            mode,
            target,
            planned,
            attempted: self.attempted.load(Relaxed),
            opened: self.opened.load(Relaxed),
            connect_failed: self.connect_failed.load(Relaxed),
            open: self.open.load(Relaxed),
            settled: self.settled.load(Relaxed),
            server_closed: self.server_closed.load(Relaxed),
            unanswered: self.unanswered.load(Relaxed),
            answers: self
                .answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            close_after: *self
                .close_after
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            elapsed: self.start.elapsed(),
        }
    }
}

/// One open connection's record.
#[derive(Debug)]
pub struct Open {
    tally: Arc<Tally>,
    at: Instant,
    answered: bool,
    settled: bool,
}

impl Open {
    /// The server answered with `status`.
    pub fn answered(&mut self, status: u16) {
        self.answered = true;
        *self
            .tally
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(status)
            .or_default() += 1;
    }

    /// The connection is done with its opening move (counted once).
    pub fn settled(&mut self) {
        if !std::mem::replace(&mut self.settled, true) {
            self.tally.settled.fetch_add(1, Relaxed);
        }
    }

    /// The server closed the connection now.
    pub fn server_closed(mut self) {
        let after = self.at.elapsed();
        self.tally.server_closed.fetch_add(1, Relaxed);
        if !self.answered {
            self.tally.unanswered.fetch_add(1, Relaxed);
        }
        let mut close_after = self
            .tally
            .close_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *close_after = Some(match *close_after {
            None => (after, after),
            Some((first, last)) => (first.min(after), last.max(after)),
        });
        drop(close_after);
        self.settled();
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.settled();
        self.tally.open.fetch_sub(1, Relaxed);
    }
}

impl fmt::Display for Report {
    /// One line of `key=value` words, for people and `awk` alike.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} opened={}/{} open={} server_closed={} unanswered={} close_after=",
            self.mode,
            self.target,
            self.opened,
            self.planned,
            self.open,
            self.server_closed,
            self.unanswered
        )?;
        match self.close_after {
            Some((first, last)) => write!(f, "{}..{}", Seconds(first), Seconds(last))?,
            None => f.write_str("-")?,
        }
        write!(f, " connect_failed={} answers=", self.connect_failed)?;
        if self.answers.is_empty() {
            f.write_str("-")?;
        }
        for (i, (status, count)) in self.answers.iter().enumerate() {
            write!(f, "{}{status}:{count}", if i == 0 { "" } else { "," })?;
        }
        write!(f, " elapsed={}", Seconds(self.elapsed))
    }
}

/// A duration as seconds with millisecond precision: `30.012s`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "127.0.0.1:8080";

    #[test]
    fn open_answered_closed_and_dropped_connections_are_counted_apart() {
        let tally = Arc::new(Tally::new());
        for _ in 0..4 {
            tally.attempt();
        }
        tally.connect_failed();
        let mut answered = tally.opened();
        answered.answered(200);
        answered.settled();
        let mut refused = tally.opened();
        refused.answered(429);
        refused.server_closed();
        let cut = tally.opened();
        cut.server_closed();

        let report = tally.report(Mode::Flood, TARGET.parse().unwrap(), 5);
        assert_eq!(
            (report.attempted, report.opened, report.connect_failed),
            (4, 3, 1)
        );
        assert_eq!((report.open, report.settled), (1, 4));
        assert_eq!((report.server_closed, report.unanswered), (2, 1));
        assert_eq!(report.answers, BTreeMap::from([(200, 1), (429, 1)]));
        let (first, last) = report.close_after.unwrap();
        assert!(first <= last);

        drop(answered);
        let report = tally.report(Mode::Flood, TARGET.parse().unwrap(), 5);
        assert_eq!(
            (report.open, report.server_closed),
            (0, 2),
            "dropping is not a server close"
        );
    }

    #[test]
    fn the_line_names_every_count() {
        let report = Report {
            mode: Mode::IdleH1,
            target: TARGET.parse().unwrap(),
            planned: 20,
            attempted: 20,
            opened: 20,
            connect_failed: 0,
            open: 18,
            settled: 20,
            server_closed: 2,
            unanswered: 0,
            answers: BTreeMap::from([(200, 19), (503, 1)]),
            close_after: Some((Duration::from_millis(300), Duration::from_millis(30_012))),
            elapsed: Duration::from_millis(31_500),
        };
        assert_eq!(
            report.to_string(),
            "idle-h1 127.0.0.1:8080 opened=20/20 open=18 server_closed=2 unanswered=0 \
             close_after=0.300s..30.012s connect_failed=0 answers=200:19,503:1 elapsed=31.500s"
        );
    }
}
