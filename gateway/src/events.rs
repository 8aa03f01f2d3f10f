//! The timeline: what changed and when — replicas added and removed (with the share of the
//! table that moved), ejections and returns, active checks failing and passing, reloads, and
//! sessions re-issued — kept for the dashboard and pushed to its open pages as it happens.
//!
//! Bounded twice: the log keeps the last [`KEPT`] events, and each listener's queue is a
//! broadcast channel of [`QUEUED`] that a slow page falls behind on (it is then sent the log
//! again) rather than grows. Events come from control tasks and the reloader, a few a second at
//! most, never from the request path. A leaf: it imports nothing of the crate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events the log keeps.
pub const KEPT: usize = 200;

/// Events one listener may fall behind by before it is sent the whole log again.
const QUEUED: usize = 64;

/// What kind of change an event is; its name is the dashboard's `data-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Replicas joined a cluster.
    Added,
    /// Replicas left a cluster.
    Removed,
    /// Outlier detection took a replica out.
    Ejected,
    /// An ejection ended.
    Returned,
    /// A replica's active health checks started failing.
    ChecksFailing,
    /// A replica's active health checks pass again.
    ChecksPassing,
    /// The configuration was reloaded.
    Reload,
    /// A new configuration was rejected; the previous one keeps serving.
    ReloadRejected,
    /// Persistent sessions were re-issued (their endpoint left, or is out).
    Sessions,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increasing from 1 for the life of the process.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What changed.
    pub kind: Kind,
    /// The cluster it changed in, if one.
    pub cluster: Option<String>,
    /// What a person reads: which replicas, why, for how long, the reload's error.
    pub text: String,
    /// Share of the cluster's table (Maglev slots) whose replica changed, when the change
    /// rebuilt a hashing table.
    pub moved: Option<f64>,
}

/// The event log and its listeners.
#[derive(Debug)]
pub struct Events {
    log: Mutex<Log>,
    tx: broadcast::Sender<Event>,
}

#[derive(Debug, Default)]
struct Log {
    next_id: u64,
    kept: VecDeque<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            log: Mutex::default(),
            tx: broadcast::channel(QUEUED).0,
        }
    }
}

impl Events {
    /// Records an event now and sends it to the listeners.
    pub fn push(&self, kind: Kind, cluster: Option<&str>, text: String, moved: Option<f64>) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.next_id += 1;
        let event = Event {
            id: log.next_id,
            at_ms,
            kind,
            cluster: cluster.map(str::to_owned),
            text,
            moved,
        };
        if log.kept.len() == KEPT {
            log.kept.pop_front();
        }
        log.kept.push_back(event.clone());
        // Sent under the lock, so listeners see events in id order. No listener: not an error.
        let _ = self.tx.send(event);
    }

    /// The events kept, oldest first.
    pub fn history(&self) -> Vec<Event> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.kept.iter().cloned().collect()
    }

    /// A listener of the events pushed from now on, and the log up to now (taken together, so
    /// no event falls between them or is in both).
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        (log.kept.iter().cloned().collect(), self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_events_and_a_listener_gets_the_rest_in_order() {
        let events = Events::default();
        for i in 0..KEPT + 5 {
            events.push(Kind::Reload, None, format!("reload {i}"), None);
        }
        let (history, mut rx) = events.subscribe();
        assert_eq!(history.len(), KEPT);
        assert_eq!(history[0].text, "reload 5");
        assert_eq!(history.last().unwrap().id, (KEPT + 5) as u64);
        events.push(Kind::Added, Some("c"), "a".into(), Some(0.2));
        let next = rx.try_recv().unwrap();
        assert_eq!(
            (next.id, next.kind, next.moved),
            ((KEPT + 6) as u64, Kind::Added, Some(0.2))
        );
        assert!(rx.try_recv().is_err(), "nothing else was pushed");
    }

    #[test]
    fn a_listener_that_falls_behind_is_told_so_instead_of_queueing_without_end() {
        let events = Events::default();
        let (_, mut rx) = events.subscribe();
        for i in 0..QUEUED * 3 {
            events.push(Kind::Reload, None, format!("{i}"), None);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn kinds_are_named_as_the_dashboard_reads_them() {
        let json = serde_json::to_value(Kind::ReloadRejected).unwrap();
        assert_eq!(json, "reload-rejected");
        assert_eq!(
            serde_json::to_value(Kind::ChecksFailing).unwrap(),
            "checks-failing"
        );
    }
}
