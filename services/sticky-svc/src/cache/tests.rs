use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;

const COST: Duration = Duration::from_secs(5);

fn cache(capacity: usize) -> Arc<Cache> {
    Arc::new(Cache::new(NonZeroUsize::new(capacity).unwrap()))
}

/// A computation that sleeps `COST` and counts how often it was started.
fn counted(calls: &Arc<AtomicUsize>) -> impl FnOnce() -> tokio::time::Sleep + use<> {
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

#[tokio::test(start_paused = true)]
async fn size_stays_bounded_under_concurrent_first_calls() {
    let cache = cache(4);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 0..64 {
        let (shared, compute) = (Arc::clone(&cache), counted(&calls));
        tasks.push(tokio::spawn(async move {
            shared
                .get_or_compute(&format!("user-{}", n % 16), compute)
                .await
        }));
        assert!(cache.map_len() <= 4);
    }
    let mut saturated = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(CacheError::Saturated) => saturated += 1,
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(cache.len() <= 4 && cache.map_len() <= 4);
    }
    assert!(
        saturated > 0,
        "4 slots cannot hold 16 concurrent first calls"
    );
}

#[tokio::test]
async fn saturated_when_every_slot_is_pending() {
    let cache = cache(2);
    let mut holds = Vec::new();
    for user in ["a", "b"] {
        let (release, stuck) = oneshot::channel::<()>();
        holds.push(release);
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            let work = move || async move {
                let _ = stuck.await;
            };
            cache.get_or_compute(user, work).await
        });
    }
    while cache.pending() < 2 {
        tokio::task::yield_now().await;
    }
    let third = cache.get_or_compute("c", || async {}).await;
    assert_eq!(third, Err(CacheError::Saturated));
    assert_eq!(cache.len(), 2, "a refused call leaves nothing behind");
    drop(holds);
    while cache.pending() > 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        cache.get_or_compute("c", || async {}).await,
        Ok(Outcome::Miss)
    );
    assert_eq!(cache.evictions(), 1);
}
