//! How much the service takes on at once: connections, and first calls in progress.
//!
//! These bounds keep hostile clients from turning everyone's calls into 503s. A flood of
//! made-up users meets the first-call bound (`max_first_calls`: past it a *new* user's first
//! call is refused at once, cached users and users whose first call is in progress are not);
//! first calls whose callers are all gone are cancelled after `abandon_grace`, so a client
//! must stay connected to keep one running; and connections past `max_connections` are
//! answered 503 and closed, so sockets and their buffers stay bounded. The cache's own bound,
//! `--cache-capacity`, counts completed users only (see [`crate::cache`]).
//!
//! It may not accept connections or answer requests: `serve` asks [`Connections::admit`] for
//! each connection, and the cache applies the first-call bounds.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The service's limits; [`Default`] gives the command line's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: NonZeroUsize,
    /// First calls in progress at once; past it a new user's first call is answered 503.
    pub max_first_calls: NonZeroUsize,
    /// How long a first call nobody waits for keeps running before it is cancelled.
    pub abandon_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: const { NonZeroUsize::new(10_000).unwrap() },
            max_first_calls: const { NonZeroUsize::new(10_000).unwrap() },
            abandon_grace: Duration::from_secs(2),
        }
    }
}

/// The connection limit: one permit per connection served, held until it closes.
#[derive(Debug)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
    refused: AtomicU64,
}

impl Connections {
    /// Room for `max` connections at once.
    pub fn new(max: NonZeroUsize) -> Self {
        let max = max.get().min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            refused: AtomicU64::new(0),
        }
    }

    /// A place for one more connection, to hold while it is served; `None` (and counted) when
    /// every place is taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok();
        if permit.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }

    /// Connections served now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// The most connections served at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_given_back_when_a_connection_ends() {
        let connections = Connections::new(NonZeroUsize::new(2).unwrap());
        let first = connections.admit().expect("room for one");
        let _second = connections.admit().expect("room for two");
        assert_eq!(connections.open(), 2);
        assert!(connections.admit().is_none(), "no room for a third");
        assert_eq!(connections.refused(), 1);
        drop(first);
        assert_eq!(connections.open(), 1);
        assert!(connections.admit().is_some());
    }
}
