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
//! A connection may have a timeout of its own ([`Watch::close_gracefully_after`]): the gateway's
//! HTTP/2 clients keep connections open longer between requests (Envoy's and nginx's HTTP/2
//! idle timeouts), and such a connection is not aborted when it expires but told to close
//! gracefully (GOAWAY): [`Watch::should_close`] turns true and the waker its task registered
//! ([`Watch::register_waker`]) is woken. [`IdleGuard::close_all`] tells every connection the
//! same, for a server's drain.
//!
//! A connection may also ask to be told when it is idle ([`Watch::rest_when_idle`]): each
//! sweep that finds it with no request in flight sets [`Watch::take_rest`] and wakes its task,
//! which may then let go of what it only needs while serving (the gateway's HTTP/1.1 listener
//! drops hyper's connection state and buffers, ~16 KiB, until the next request arrives). No
//! timer is armed for it: the sweep that counts idle time does it, at most once per period.
//!
//! Used by sticky-svc and by the gateway's listeners (which also hold a request in flight
//! until its response body is sent, since they stream bodies).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::Waker;
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
    /// Sweeps done so far ([`IdleGuard::sweeps`]).
    sweeps: AtomicU64,
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
    /// Set by [`Watch::abort_on_expiry`].
    task: OnceLock<AbortHandle>,
    /// This connection's own timeout (ms), set by [`Watch::close_gracefully_after`]; 0: the
    /// guard's, and expiry aborts the task.
    timeout_ms: AtomicU64,
    /// The connection task's waker ([`Watch::register_waker`]), woken to close gracefully.
    waker: OnceLock<Waker>,
    /// Told to close gracefully (expired with its own timeout, or [`IdleGuard::close_all`]).
    closing: AtomicBool,
    /// [`REST_NONE`], [`REST_ARMED`] ([`Watch::rest_when_idle`], until [`Watch::cancel_rest`])
    /// or [`REST_ASKED`] (by a sweep that found the connection idle, until
    /// [`Watch::take_rest`]).
    rest: AtomicU8,
}

const REST_NONE: u8 = 0;
const REST_ARMED: u8 = 1;
const REST_ASKED: u8 = 2;

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
            sweeps: AtomicU64::new(0),
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

    /// How many sweeps have run: a test that must show something did *not* happen at a sweep
    /// waits for a few more to have run, rather than for a while.
    pub fn sweeps(&self) -> u64 {
        self.shared.sweeps.load(Ordering::Relaxed)
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
            task: OnceLock::new(),
            timeout_ms: AtomicU64::new(0),
            waker: OnceLock::new(),
            closing: AtomicBool::new(false),
            rest: AtomicU8::new(REST_NONE),
        });
        self.shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&watch));
        watch
    }

    /// Closes the connection idle the longest (no request in flight), as its expiry would: for
    /// a server at its connection limit, to make room for a new client rather than refuse it.
    /// False when every connection has a request in flight.
    pub fn evict_idlest(&self) -> bool {
        let idlest = {
            let connections = self
                .shared
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            connections
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|w| w.in_flight.load(Ordering::Relaxed) == 0 && !w.should_close())
                .min_by_key(|w| w.idle_since_ms.load(Ordering::Relaxed))
        };
        let Some(watch) = idlest else {
            return false;
        };
        if watch.timeout_ms.load(Ordering::Relaxed) != 0 {
            watch.close();
        } else if let Some(task) = watch.task.get() {
            task.abort();
        } else {
            return false;
        }
        true
    }

    /// Tells every connection to close gracefully ([`Watch::should_close`]), waking the tasks
    /// that registered a waker; for a server's drain.
    pub fn close_all(&self) {
        let connections = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for watch in connections.iter().filter_map(Weak::upgrade) {
            watch.close();
        }
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
            let timeout = match watch.timeout_ms.load(Ordering::Relaxed) {
                0 => self.timeout_ms,
                own => own,
            };
            if watch.in_flight.load(Ordering::Relaxed) == 0
                && now.saturating_sub(idle_since) >= timeout
            {
                // `notify_one` keeps the permit if the connection is not waiting right now.
                watch.expired.notify_one();
                if watch.timeout_ms.load(Ordering::Relaxed) != 0 {
                    watch.close();
                } else if let Some(task) = watch.task.get() {
                    task.abort();
                }
            }
            if watch.in_flight.load(Ordering::Relaxed) == 0 {
                watch.ask_to_rest();
            }
            true
        });
        self.sweeps.fetch_add(1, Ordering::Relaxed);
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

    /// Closes the connection when it expires by aborting `task`, the task that serves it (which
    /// must release what it holds on drop). An alternative to selecting on [`Watch::expired`]:
    /// that future is polled at every wake-up of the task, and each poll takes `Notify`'s lock
    /// (~700 instructions per proxied request in the gateway).
    pub fn abort_on_expiry(&self, task: AbortHandle) {
        let _ = self.task.set(task);
    }

    /// From now on the connection has its own idle `timeout`, and expiring closes it
    /// gracefully ([`Watch::should_close`], the registered waker woken) rather than aborting
    /// its task: for a connection that can close without losing anything in flight (HTTP/2's
    /// GOAWAY). Cheap enough to call on every request.
    pub fn close_gracefully_after(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if self.timeout_ms.load(Ordering::Relaxed) != ms {
            self.timeout_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Registers the waker of the task that serves the connection, woken when it should close
    /// gracefully. The first call wins (a task's waker does not change); later calls cost one
    /// load, so the connection's future may call it at every poll.
    pub fn register_waker(&self, waker: &Waker) {
        if self.waker.get().is_none() {
            let _ = self.waker.set(waker.clone());
        }
    }

    /// Whether the connection has been told to close gracefully.
    pub fn should_close(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn close(&self) {
        if !self.closing.swap(true, Ordering::Relaxed)
            && let Some(waker) = self.waker.get()
        {
            waker.wake_by_ref();
        }
    }

    /// Asks to be told ([`Watch::take_rest`] true, the registered waker woken) at each sweep
    /// that finds the connection with no request in flight, until [`Watch::cancel_rest`]. One
    /// load when already asked: cheap enough to call on every request.
    pub fn rest_when_idle(&self) {
        if self.rest.load(Ordering::Relaxed) == REST_NONE {
            self.rest.store(REST_ARMED, Ordering::Relaxed);
        }
    }

    /// Undoes [`Watch::rest_when_idle`]: no more wake-ups to rest.
    pub fn cancel_rest(&self) {
        if self.rest.load(Ordering::Relaxed) != REST_NONE {
            self.rest.store(REST_NONE, Ordering::Relaxed);
        }
    }

    /// Whether a sweep found the connection idle since this was last true (after
    /// [`Watch::rest_when_idle`]). One load when not: the connection's future may call it at
    /// every poll.
    pub fn take_rest(&self) -> bool {
        self.rest.load(Ordering::Relaxed) == REST_ASKED
            && self
                .rest
                .compare_exchange(REST_ASKED, REST_ARMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether no request is in flight on the connection.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }

    fn ask_to_rest(&self) {
        if self.rest.load(Ordering::Relaxed) == REST_ARMED
            && self
                .rest
                .compare_exchange(REST_ARMED, REST_ASKED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            && let Some(waker) = self.waker.get()
        {
            waker.wake_by_ref();
        }
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use super::*;

    /// Waits, woken by the watch, until `told` holds, or gives up after `limit`.
    async fn told_within(watch: &Watch, limit: Duration, told: impl Fn(&Watch) -> bool) -> bool {
        let waiting = poll_fn(|cx| {
            watch.register_waker(cx.waker());
            if told(watch) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(limit, waiting).await.is_ok()
    }

    /// Waits until the watch is told to close, or gives up after `limit`.
    async fn closes_within(watch: &Watch, limit: Duration) -> bool {
        told_within(watch, limit, Watch::should_close).await
    }

    #[tokio::test]
    async fn a_graceful_connection_is_woken_to_close_after_its_own_timeout() {
        let guard = IdleGuard::start(Duration::from_secs(3600));
        let watch = guard.watch();
        watch.close_gracefully_after(Duration::from_millis(100));
        assert!(closes_within(&watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_it_open() {
        let guard = IdleGuard::start(Duration::from_secs(3600));
        let watch = guard.watch();
        watch.close_gracefully_after(Duration::from_millis(50));
        let in_flight = watch.request();
        assert!(!closes_within(&watch, Duration::from_millis(400)).await);
        drop(in_flight);
        assert!(closes_within(&watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn close_all_tells_every_connection() {
        let guard = IdleGuard::start(Duration::from_secs(3600));
        let (a, b) = (guard.watch(), guard.watch());
        let _busy = b.request();
        guard.close_all();
        assert!(a.should_close() && b.should_close());
        assert!(closes_within(&a, Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn the_idlest_connection_is_evicted_one_in_flight_never() {
        let guard = IdleGuard::start(Duration::from_secs(3600));
        let busy = guard.watch();
        let _in_flight = busy.request();
        assert!(!guard.evict_idlest(), "nothing idle to evict");
        let idle = guard.watch();
        let task = tokio::spawn(std::future::pending::<()>());
        idle.abort_on_expiry(task.abort_handle());
        assert!(guard.evict_idlest());
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(ended.expect("aborted").unwrap_err().is_cancelled());
    }

    /// Waits until the watch is asked to rest, or gives up after `limit`.
    async fn asked_to_rest_within(watch: &Watch, limit: Duration) -> bool {
        told_within(watch, limit, Watch::take_rest).await
    }

    #[tokio::test]
    async fn an_idle_connection_is_asked_to_rest_until_cancelled() {
        let guard = IdleGuard::start(Duration::from_millis(100));
        let watch = guard.watch();
        assert!(
            !asked_to_rest_within(&watch, Duration::from_millis(100)).await,
            "not without asking"
        );
        watch.rest_when_idle();
        assert!(asked_to_rest_within(&watch, Duration::from_secs(5)).await);
        assert!(!watch.take_rest(), "once per sweep");
        assert!(asked_to_rest_within(&watch, Duration::from_secs(5)).await);
        watch.cancel_rest();
        assert!(!asked_to_rest_within(&watch, Duration::from_millis(200)).await);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_not_asked_to_rest() {
        let guard = IdleGuard::start(Duration::from_millis(100));
        let watch = guard.watch();
        let in_flight = watch.request();
        assert!(!watch.is_idle());
        watch.rest_when_idle();
        assert!(!asked_to_rest_within(&watch, Duration::from_millis(300)).await);
        drop(in_flight);
        assert!(watch.is_idle());
        assert!(asked_to_rest_within(&watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn without_its_own_timeout_an_idle_connection_is_aborted() {
        let guard = IdleGuard::start(Duration::from_millis(50));
        let watch = guard.watch();
        let task = tokio::spawn(std::future::pending::<()>());
        watch.abort_on_expiry(task.abort_handle());
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(
            ended
                .expect("aborted within 5 s")
                .unwrap_err()
                .is_cancelled()
        );
        assert!(!watch.should_close(), "aborted, not closed gracefully");
    }
}
