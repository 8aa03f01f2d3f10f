//! The slow-header and idle guard: a connection with no request in flight for longer than the
//! timeout is closed. That covers a client that trickles a request head (slowloris: its request
//! never starts) and a keep-alive connection left idle, as hyper's `header_read_timeout` does,
//! but a request in flight (a 5 s cold call) is never cut.
//!
//! Why not hyper's own timeout: it arms and cancels a tokio timer on every request, about 9% of
//! a warm call's instructions. Here a request costs two uncontended atomic additions and a
//! load; one task sweeps all connections four times per timeout (at most once a second) on a
//! coarse clock advanced by the sweeps. Idle time is counted from the end of the current sweep
//! period, never from before it, so a connection is closed between `timeout` and `timeout` +
//! two sweep periods after its last request, never early.
//!
//! Used by sticky-svc and by the gateway's listeners (which also hold a request in flight
//! until its response body is sent, since they stream bodies).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The guard of one server; cheap to clone.
#[derive(Clone)]
pub struct IdleGuard {
    shared: Arc<Shared>,
}

struct Shared {
    start: Instant,
    /// Milliseconds since `start`, as of the last sweep.
    now_ms: AtomicU64,
    period_ms: u64,
    timeout_ms: u64,
    connections: Mutex<Vec<Weak<Watch>>>,
}

/// What the guard knows of one connection.
pub struct Watch {
    /// The server's guard: its coarse clock. (Its list holds only weak references to watches,
    /// so this is no cycle.)
    shared: Arc<Shared>,
    in_flight: AtomicU32,
    /// Coarse time (ms) the connection last had no request in flight.
    idle_since_ms: AtomicU64,
    expired: Notify,
    /// Whether finished requests are signalled on `answered` (see [`Watch::report_answers`]).
    report_answers: AtomicBool,
    answered: Notify,
    /// Set by [`Watch::keep_open`].
    kept_open: AtomicBool,
    /// Set by [`Watch::abort_on_expiry`].
    task: OnceLock<AbortHandle>,
}

/// Marks one request in flight until dropped (also when the request is cancelled).
pub struct InFlight {
    watch: Arc<Watch>,
}

impl IdleGuard {
    /// A guard closing connections idle for `timeout`; its sweeper runs on the current tokio
    /// runtime until the last clone of the guard is dropped.
    pub fn start(timeout: Duration) -> Self {
        let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let shared = Arc::new(Shared {
            start: Instant::now(),
            now_ms: AtomicU64::new(0),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            connections: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.sweep();
            }
        });
        Self { shared }
    }

    /// Starts watching a new connection: its idle time counts from now.
    pub fn watch(&self) -> Arc<Watch> {
        let watch = Arc::new(Watch {
            shared: self.shared.clone(),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(self.shared.idle_from()),
            expired: Notify::new(),
            report_answers: AtomicBool::new(false),
            answered: Notify::new(),
            kept_open: AtomicBool::new(false),
            task: OnceLock::new(),
        });
        self.shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&watch));
        watch
    }
}

impl Shared {
    /// When idle time starts for a connection going idle now: the end of the current sweep
    /// period (the coarse clock may be up to one period behind).
    fn idle_from(&self) -> u64 {
        self.now_ms
            .load(Ordering::Relaxed)
            .saturating_add(self.period_ms)
    }

    /// Advances the coarse clock, forgets closed connections and wakes the expired ones.
    fn sweep(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.store(now, Ordering::Relaxed);
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.retain(|weak| {
            let Some(watch) = weak.upgrade() else {
                return false;
            };
            let idle_since = watch.idle_since_ms.load(Ordering::Relaxed);
            if watch.in_flight.load(Ordering::Relaxed) == 0
                && now.saturating_sub(idle_since) >= self.timeout_ms
            {
                // `notify_one` keeps the permit if the connection is not waiting right now.
                watch.expired.notify_one();
                if let Some(task) = watch.task.get() {
                    task.abort();
                }
            }
            true
        });
    }
}

impl Watch {
    /// Marks a request in flight on this connection until the returned value is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            watch: self.clone(),
        }
    }

    /// Exempts the connection from the guard from now on (the gateway's HTTP/2 clients, which
    /// keep a connection open between requests as a rule).
    /// Idempotent: it may be called on every request.
    pub fn keep_open(&self) {
        if !self.kept_open.load(Ordering::Relaxed) && !self.kept_open.swap(true, Ordering::Relaxed)
        {
            // One request that never ends.
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the connection when it expires by aborting `task`, the task that serves it (which
    /// must release what it holds on drop). An alternative to selecting on [`Watch::expired`]:
    /// that future is polled at every wake-up of the task, and each poll takes `Notify`'s lock
    /// (~700 instructions per proxied request in the gateway).
    pub fn abort_on_expiry(&self, task: AbortHandle) {
        let _ = self.task.set(task);
    }

    /// Resolves once the connection has been idle past the timeout.
    pub async fn expired(&self) {
        self.expired.notified().await;
    }

    /// From now on, each finished request wakes [`Watch::answered`] (off by default: it is
    /// only wanted for connections that must close after one answer).
    pub fn report_answers(&self) {
        self.report_answers.store(true, Ordering::Relaxed);
    }

    /// Resolves once a request has been answered (after [`Watch::report_answers`]).
    pub async fn answered(&self) {
        self.answered.notified().await;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The idle time restarts when the answer is ready (the write follows at once).
        self.watch
            .idle_since_ms
            .store(self.watch.shared.idle_from(), Ordering::Relaxed);
        self.watch.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.watch.report_answers.load(Ordering::Relaxed) {
            self.watch.answered.notify_one();
        }
    }
}
