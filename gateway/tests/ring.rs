//! Ring hash through the public API: pinned outputs and its defining properties.

use gateway::endpoint::Endpoint;
use gateway::hash::{key_hash, mix};
use gateway::ring::{RingHash, RingSize};
use proptest::prelude::*;

fn pods(n: usize) -> Vec<Endpoint> {
    (1..=n)
        .map(|i| Endpoint::new(format!("10.0.0.{i}:8080"), 1))
        .collect()
}

fn ring(endpoints: &[Endpoint]) -> RingHash {
    RingHash::build(endpoints, RingSize::DEFAULT).unwrap()
}

// Pinned: a change here re-maps users on every deployed gateway.
#[test]
fn golden_keys_map_to_pinned_endpoints() {
    let r = ring(&pods(5));
    assert_eq!(r.points(), 1025);
    let expected = [
        ("ricky", 1),
        ("alice", 0),
        ("bob", 4),
        ("carol", 4),
        ("dave", 1),
        ("eve", 1),
        ("mallory", 0),
        ("trent", 2),
    ];
    for (key, endpoint) in expected {
        assert_eq!(r.lookup(key_hash(key.as_bytes())), Some(endpoint), "{key}");
    }
    let small = RingHash::build(&pods(5), RingSize::new(16).unwrap()).unwrap();
    assert_eq!(small.points(), 20);
    let owners: Vec<usize> = (0..8u64).map(|i| small.lookup(i << 61).unwrap()).collect();
    assert_eq!(owners, [1, 1, 0, 1, 3, 4, 2, 0]);
}

#[test]
fn retries_move_clockwise_past_tried_endpoints() {
    let r = ring(&pods(4));
    for key in 0..200u64 {
        let hash = mix(key);
        let mut tried = vec![];
        for attempt in 0..4 {
            let e = r.pick(hash, attempt, &tried).unwrap();
            assert!(!tried.contains(&e));
            tried.push(e);
        }
        assert_eq!(r.pick(hash, 4, &tried), None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn removing_an_endpoint_moves_only_its_keys(
        n in 17usize..40,
        gone in any::<prop::sample::Index>(),
    ) {
        // With a minimum ring of 16·(n−1) points both rings give every endpoint exactly 16
        // points (⌈16(n−1)/n⌉ = 16), so the smaller ring is the larger one minus `gone`'s points.
        let size = RingSize::new(16 * (n as u64 - 1)).unwrap();
        let all = pods(n);
        let gone = gone.index(n);
        let mut fewer = all.clone();
        fewer.remove(gone);
        let (a, b) = (RingHash::build(&all, size).unwrap(), RingHash::build(&fewer, size).unwrap());
        prop_assert_eq!((a.points(), b.points()), (16 * n, 16 * (n - 1)));
        for h in (0..5_000u64).map(mix) {
            let before = &all[a.lookup(h).unwrap()].key;
            let after = &fewer[b.lookup(h).unwrap()].key;
            if before == &all[gone].key {
                prop_assert!(after != before);
            } else {
                prop_assert_eq!(after, before, "a key of a surviving endpoint moved");
            }
        }
    }

    #[test]
    fn the_order_of_endpoints_does_not_change_the_ring(n in 2usize..30, seed in any::<u64>()) {
        let eps = pods(n);
        let mut shuffled = eps.clone();
        for i in (1..n).rev() {
            shuffled.swap(i, (mix(seed ^ i as u64) % (i as u64 + 1)) as usize);
        }
        let (a, b) = (ring(&eps), ring(&shuffled));
        for h in (0..2_000u64).map(mix) {
            prop_assert_eq!(&eps[a.lookup(h).unwrap()].key, &shuffled[b.lookup(h).unwrap()].key);
        }
    }

    #[test]
    fn shares_follow_weights(weights in proptest::collection::vec(1u32..=4, 2..8)) {
        let eps: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint::new(format!("10.1.0.{i}:80"), w))
            .collect();
        // A large ring keeps the hash-space share close to the weight share.
        let r = RingHash::build(&eps, RingSize::new(1 << 16).unwrap()).unwrap();
        let total: u32 = weights.iter().sum();
        for (share, &w) in r.shares().iter().zip(&weights) {
            let ideal = f64::from(w) / f64::from(total);
            prop_assert!((share / ideal - 1.0).abs() < 0.1, "{:?} {:?}", r.shares(), weights);
        }
    }
}
