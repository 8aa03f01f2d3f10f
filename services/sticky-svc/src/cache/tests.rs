use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;

pub(super) const COST: Duration = Duration::from_secs(5);
pub(super) const GRACE: Duration = Duration::from_secs(2);

fn cache(capacity: usize) -> Arc<Cache> {
    limited(capacity, 64)
}

/// A cache of `capacity` completed users and `max_first_calls` first calls in progress.
pub(super) fn limited(capacity: usize, max_first_calls: usize) -> Arc<Cache> {
    Arc::new(Cache::new(
        NonZeroUsize::new(capacity).unwrap(),
        NonZeroUsize::new(max_first_calls).unwrap(),
        GRACE,
    ))
}

/// A computation that sleeps `COST` and counts how often it was started.
pub(super) fn counted(calls: &Arc<AtomicUsize>) -> impl FnOnce() -> tokio::time::Sleep + use<> {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(COST)
    }
}

#[tokio::test(start_paused = true)]
async fn first_call_misses_then_hits() {
    let cache = cache(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    assert_eq!(
        cache.get_or_compute("ricky", counted(&calls)).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(started.elapsed(), COST);
    assert_eq!(
        cache.get_or_compute("ricky", counted(&calls)).await,
        Ok(Outcome::Hit)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.is_ready("ricky"));
    assert_eq!(cache.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_calls_pay_once() {
    let cache = cache(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (cache, compute) = (Arc::clone(&cache), counted(&calls));
            tokio::spawn(async move { cache.get_or_compute("ricky", compute).await })
        })
        .collect();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Ok(Outcome::Miss));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(started.elapsed(), COST, "one cost, not twenty");
}

#[tokio::test(start_paused = true)]
async fn other_users_never_wait_for_a_pending_one() {
    let cache = cache(10);
    let (_never_sent, stuck) = oneshot::channel::<()>();
    let blocked = Arc::clone(&cache);
    tokio::spawn(async move {
        blocked
            .get_or_compute("slow", move || async move {
                let _ = stuck.await;
            })
            .await
    });
    tokio::task::yield_now().await;
    assert_eq!(cache.pending(), 1);

    let started = Instant::now();
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        cache.get_or_compute("fast", counted(&calls)).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(
        cache.get_or_compute("fast", counted(&calls)).await,
        Ok(Outcome::Hit)
    );
    assert_eq!(started.elapsed(), COST);
    assert!(!cache.is_ready("slow"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_neither_restarts_nor_strands_the_computation() {
    let cache = cache(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, compute) = (Arc::clone(&cache), counted(&calls));
        tokio::spawn(async move { cache.get_or_compute("ricky", compute).await })
    };
    tokio::time::sleep(COST / 2).await;
    leader.abort(); // the client went away mid-call
    let started = Instant::now();
    assert_eq!(
        cache.get_or_compute("ricky", counted(&calls)).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(
        started.elapsed(),
        COST / 2,
        "the follower only waits for the rest"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_dead_computation_frees_its_slot() {
    let cache = cache(10);
    let outcome = cache
        .get_or_compute("ricky", || async {
            panic!("computation failed on purpose")
        })
        .await;
    assert_eq!(outcome, Err(CacheError::Abandoned));
    assert_eq!((cache.len(), cache.map_len()), (0, 0));
    let calls = Arc::new(AtomicUsize::new(0));
    let quick = Arc::clone(&calls);
    let again = cache.get_or_compute("ricky", move || async move {
        quick.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(again.await, Ok(Outcome::Miss));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn size_never_exceeds_capacity_and_eviction_is_fifo() {
    let cache = cache(8);
    let calls = Arc::new(AtomicUsize::new(0));
    for n in 0..100 {
        let user = format!("user-{n}");
        assert_eq!(
            cache.get_or_compute(&user, counted(&calls)).await,
            Ok(Outcome::Miss)
        );
        assert!(cache.len() <= 8 && cache.map_len() <= 8, "after {user}");
    }
    assert_eq!(cache.evictions(), 92);
    assert!(!cache.is_ready("user-91"), "the oldest go first");
    assert!((92..100).all(|n| cache.is_ready(&format!("user-{n}"))));
}

#[tokio::test]
async fn size_stays_bounded_under_concurrent_first_calls() {
    let cache = limited(4, 4);
    let (release, gate) = watch::channel(false);
    let mut callers = Vec::new();
    for n in 0..64 {
        let (shared, compute) = (Arc::clone(&cache), held(&gate));
        let user = format!("user-{}", n % 16);
        let call = async move { shared.get_or_compute(&user, compute).await };
        callers.push(spawn_admitted(call).await);
        assert!(
            cache.pending() <= 4 && cache.map_len() <= 4,
            "after caller {n}: {} first calls in progress, {} slots",
            cache.pending(),
            cache.map_len()
        );
    }
    // 16 users, 4 callers each: the first 4 users' callers wait, the other 12 users' are refused.
    assert_eq!((cache.pending(), cache.map_len()), (4, 4));
    assert_eq!(cache.refused(), 48);
    release.send_replace(true);
    let (mut misses, mut refused) = (0, 0);
    for caller in callers {
        match caller.await.unwrap() {
            Ok(Outcome::Miss) => misses += 1,
            Err(CacheError::TooManyFirstCalls) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((misses, refused), (16, 48));
    assert_eq!((cache.len(), cache.pending(), cache.map_len()), (4, 0, 4));
}

#[tokio::test]
async fn past_the_first_call_bound_only_new_users_are_refused() {
    let cache = limited(2, 2);
    assert_eq!(
        cache.get_or_compute("warm", || async {}).await,
        Ok(Outcome::Miss)
    );
    let (release, gate) = watch::channel(false);
    let mut callers = Vec::new();
    for user in ["a", "b", "a"] {
        let (shared, compute) = (Arc::clone(&cache), held(&gate));
        let call = async move { shared.get_or_compute(user, compute).await };
        callers.push(spawn_admitted(call).await);
    }
    assert_eq!(cache.pending(), 2);

    let new = at_once(cache.get_or_compute("c", || async {}));
    assert_eq!(new, Some(Err(CacheError::TooManyFirstCalls)), "at once");
    let warm = at_once(cache.get_or_compute("warm", || async {}));
    assert_eq!(warm, Some(Ok(Outcome::Hit)), "a cached user is served");
    assert_eq!(cache.refused(), 1);
    assert!(
        callers.iter().all(|caller| !caller.is_finished()),
        "the second caller of `a` joined its first call instead of being refused"
    );
    assert_eq!(cache.map_len(), 3, "a refused call leaves nothing behind");

    release.send_replace(true);
    for caller in callers {
        assert_eq!(caller.await.unwrap(), Ok(Outcome::Miss));
    }
    assert_eq!(cache.pending(), 0);
    assert_eq!(
        cache.get_or_compute("c", || async {}).await,
        Ok(Outcome::Miss),
        "room again once they completed"
    );
}

#[tokio::test]
async fn first_calls_in_progress_never_evict_cached_users() {
    let cache = limited(2, 8);
    for user in ["a", "b"] {
        assert_eq!(
            cache.get_or_compute(user, || async {}).await,
            Ok(Outcome::Miss)
        );
    }
    let (release, gate) = watch::channel(false);
    let mut flood = Vec::new();
    for n in 0..8 {
        let (shared, compute) = (Arc::clone(&cache), held(&gate));
        let call = async move {
            shared
                .get_or_compute(&format!("made-up-{n}"), compute)
                .await
        };
        flood.push(spawn_admitted(call).await);
    }
    assert_eq!(
        cache.pending(),
        8,
        "every made-up user's first call admitted"
    );
    assert_eq!(cache.evictions(), 0);
    for user in ["a", "b"] {
        let warm = at_once(cache.get_or_compute(user, || async {}));
        assert_eq!(warm, Some(Ok(Outcome::Hit)), "{user} is still cached");
    }
    assert_eq!(cache.map_len(), 2 + 8, "capacity + max_first_calls");

    // Completions do evict, earliest completed first: the documented price of FIFO.
    release.send_replace(true);
    for caller in flood {
        assert_eq!(caller.await.unwrap(), Ok(Outcome::Miss));
    }
    assert_eq!((cache.len(), cache.evictions()), (2, 8));
    assert!(!cache.is_ready("a") && !cache.is_ready("b"));
}

/// A computation that runs until `gate` opens.
pub(super) fn held(
    gate: &watch::Receiver<bool>,
) -> impl FnOnce() -> BoxFuture + Send + 'static + use<> {
    let mut gate = gate.clone();
    move || {
        Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
        })
    }
}

/// A boxed computation, so helpers can name their closures' output.
pub(super) type BoxFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spawns `call` and returns once it has been polled once: by then a cache call has been
/// answered, refused, or is waiting for a first call it started or joined.
pub(super) async fn spawn_admitted<T: Send + 'static>(
    call: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    let (admitted, is_admitted) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut call = pin!(call);
        let first = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        let _ = admitted.send(());
        match first {
            Poll::Ready(out) => out,
            Poll::Pending => call.await,
        }
    });
    is_admitted.await.expect("the caller was polled");
    task
}

/// `call`'s output if it is ready on its first poll, that is, without waiting for anything.
pub(super) fn at_once<F: Future>(call: F) -> Option<F::Output> {
    let mut call = pin!(call);
    match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
