//! Maglev through the public API: golden outputs pinned forever, Envoy's own expected tables,
//! and the properties the issue asks for.

use gateway::endpoint::Endpoint;
use gateway::hash::{key_hash, mix};
use gateway::maglev::{MaglevError, MaglevTable, TableSize};
use proptest::prelude::*;

fn pods(n: usize) -> Vec<Endpoint> {
    (1..=n)
        .map(|i| Endpoint::new(format!("10.0.0.{i}:8080"), 1))
        .collect()
}

fn table(endpoints: &[Endpoint], size: u64) -> MaglevTable {
    MaglevTable::build(endpoints, TableSize::new(size).unwrap()).unwrap()
}

fn slots(t: &MaglevTable) -> Vec<usize> {
    (0..t.size() as usize).map(|i| t.slot(i)).collect()
}

/// Keys of the slots, so tables built from differently ordered slices compare equal.
fn slot_keys<'a>(t: &MaglevTable, endpoints: &'a [Endpoint]) -> Vec<&'a str> {
    slots(t).into_iter().map(|e| &*endpoints[e].key).collect()
}

// If one of these golden tests fails, every deployed gateway would disagree with the new build
// about where users go: change the hash or the fill only with a migration plan.
#[test]
fn golden_keys_map_to_pinned_endpoints() {
    let t = table(&pods(5), 65_537);
    let expected = [
        ("ricky", 0x8092_ffcf_21da_9bb5, 3),
        ("alice", 0x4da1_0dd6_1a01_16b0, 3),
        ("bob", 0x1403_c0c4_0f49_b8e5, 0),
        ("carol", 0xe2fd_b994_ad3f_cba4, 3),
        ("dave", 0x3007_3198_76b9_05d8, 3),
        ("eve", 0xb591_f6de_7680_4368, 1),
        ("mallory", 0xc6b3_91c3_1f81_102c, 2),
        ("trent", 0x2770_eefd_63d9_bc06, 3),
    ];
    for (key, hash, endpoint) in expected {
        assert_eq!(key_hash(key.as_bytes()), hash, "hash of {key}");
        assert_eq!(t.lookup(hash), Some(endpoint), "endpoint of {key}");
    }
}

#[test]
fn golden_small_table_and_checksum_of_the_default_table() {
    let small = table(&pods(5), 31);
    assert_eq!(
        slots(&small),
        [
            0, 3, 2, 0, 1, 2, 4, 1, 3, 3, 1, 2, 2, 1, 1, 0, 1, 4, 4, 0, 3, 0, 4, 0, 2, 3, 0, 3, 4,
            4, 2
        ]
    );
    let t = table(&pods(5), 65_537);
    let checksum = slots(&t)
        .iter()
        .fold(0u64, |acc, &e| acc.wrapping_mul(31).wrapping_add(e as u64));
    assert_eq!(checksum, 0x4cfd_365c_3c88_38d9);
    assert_eq!(t.slot_counts(), [13_108, 13_108, 13_107, 13_107, 13_107]);
}

// Expected tables from Envoy's maglev_lb_test.cc (Basic, BasicWithHostName, Weighted): with the
// same endpoints Envoy and this gateway fill identical tables.
#[test]
fn envoy_builds_the_same_tables() {
    let addresses: Vec<Endpoint> = (90..=95)
        .map(|p| Endpoint::new(format!("127.0.0.1:{p}"), 1))
        .collect();
    assert_eq!(slots(&table(&addresses, 7)), [2, 4, 0, 1, 5, 0, 3]);
    let names: Vec<Endpoint> = (90..=95).map(|p| Endpoint::new(p.to_string(), 1)).collect();
    assert_eq!(slots(&table(&names, 7)), [2, 5, 0, 3, 4, 1, 0]);
    let weighted = [
        Endpoint::new("127.0.0.1:90", 1),
        Endpoint::new("127.0.0.1:91", 2),
    ];
    let t = table(&weighted, 17);
    assert_eq!(
        slots(&t),
        [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
    );
    assert_eq!(t.slot_counts(), [6, 11]);
    // Envoy's BasicWithRetryHostPredicate: hash 10 lands on :91; avoiding it gives :90.
    let t = table(&addresses, 7);
    assert_eq!(t.pick(10, 0, &[]), Some(1));
    assert_eq!(t.pick(10, 0, &[1]), Some(0));
}

#[test]
fn weights_one_to_two_split_the_default_table_as_envoy_does() {
    let t = table(&[Endpoint::new("a", 1), Endpoint::new("b", 2)], 65_537);
    assert_eq!(t.slot_counts(), [21_846, 43_691]);
}

#[test]
fn a_zero_weight_endpoint_is_the_same_as_an_absent_one() {
    // The data path can eject an endpoint by zeroing its weight and keep its indices aligned.
    let all = pods(6);
    let mut ejected = all.clone();
    ejected[2].weight = 0;
    let mut without = all.clone();
    without.remove(2);
    let (a, b) = (table(&ejected, 4_099), table(&without, 4_099));
    assert_eq!(slot_keys(&a, &ejected), slot_keys(&b, &without));
    assert!(!a.is_member(2) && a.is_member(3));
}

#[test]
fn bad_input_is_rejected_with_a_clear_error() {
    let err = MaglevTable::build(&pods(2), TableSize::DEFAULT);
    assert!(err.is_ok());
    let mut dup = pods(3);
    dup[2].key = dup[0].key.clone();
    let err = MaglevTable::build(&dup, TableSize::DEFAULT).unwrap_err();
    assert!(matches!(err, MaglevError::Endpoint(_)));
    assert_eq!(
        err.to_string(),
        "endpoint key \"10.0.0.1:8080\" appears twice (#0 and #2); each endpoint needs a unique hash key"
    );
    assert_eq!(
        TableSize::new(65_539 * 3).unwrap_err().to_string(),
        "maglev tableSize 196617 is not a prime number; use a prime such as 65537 or 655373"
    );
}

#[test]
fn retries_walk_away_from_every_tried_endpoint() {
    let t = table(&pods(4), 65_537);
    for key in 0..200u64 {
        let hash = mix(key);
        let mut tried = vec![];
        for attempt in 0..4 {
            let e = t.pick(hash, attempt, &tried).unwrap();
            assert!(!tried.contains(&e), "attempt {attempt} reused {e}");
            tried.push(e);
        }
        assert_eq!(t.pick(hash, 4, &tried), None);
    }
}

#[test]
fn more_than_65535_endpoints_use_wide_slots() {
    let many: Vec<Endpoint> = (0..70_000)
        .map(|i| Endpoint::new(format!("e{i}"), 1))
        .collect();
    let t = table(&many, 655_373);
    assert_eq!(t.slot_bytes(), 4 * 655_373);
    let counts = t.slot_counts();
    assert!(
        counts.iter().all(|&c| c == 9 || c == 10),
        "each gets ⌊M/N⌋ or ⌈M/N⌉"
    );
}

/// Fraction of `keys` hashed keys whose endpoint key differs between two tables.
fn moved(a: &MaglevTable, a_eps: &[Endpoint], b: &MaglevTable, b_eps: &[Endpoint]) -> f64 {
    const KEYS: u64 = 20_000;
    let changed = (0..KEYS)
        .map(mix)
        .filter(|&h| a_eps[a.lookup(h).unwrap()].key != b_eps[b.lookup(h).unwrap()].key)
        .count();
    changed as f64 / KEYS as f64
}

fn endpoints_strategy(max: usize) -> impl Strategy<Value = Vec<Endpoint>> {
    proptest::collection::hash_set("[a-z0-9.:]{1,20}", 2..max).prop_map(|keys| {
        keys.into_iter()
            .map(|k| Endpoint::new(k, 1))
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn equal_weights_fill_every_slot_evenly(
        eps in endpoints_strategy(60),
        size in prop::sample::select(vec![251u64, 1_009, 4_099, 65_537]),
    ) {
        let t = table(&eps, size);
        let counts = t.slot_counts();
        prop_assert_eq!(counts.iter().sum::<u64>(), size);
        let n = eps.len() as u64;
        let (low, high) = (size / n, size.div_ceil(n));
        prop_assert!(counts.iter().all(|&c| c == low || c == high), "{:?}", counts);
    }

    #[test]
    fn the_order_of_endpoints_does_not_change_the_table(
        eps in endpoints_strategy(40),
        seed in any::<u64>(),
    ) {
        let mut shuffled = eps.clone();
        // Fisher–Yates driven by the proptest seed, so the test stays deterministic per case.
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (mix(seed ^ i as u64) % (i as u64 + 1)) as usize);
        }
        let a = table(&eps, 4_099);
        let b = table(&shuffled, 4_099);
        prop_assert_eq!(slot_keys(&a, &eps), slot_keys(&b, &shuffled));
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth(
        n in 3usize..40,
        gone in any::<prop::sample::Index>(),
    ) {
        let all = pods(n);
        let mut fewer = all.clone();
        fewer.remove(gone.index(n));
        let ideal = 1.0 / n as f64;
        let m = moved(&table(&all, 65_537), &all, &table(&fewer, 65_537), &fewer);
        prop_assert!(m > ideal - 0.015 && m < ideal + 0.03, "moved {} ideal {}", m, ideal);
    }

    #[test]
    fn adding_one_moves_about_one_over_n_plus_one(n in 2usize..40) {
        let before = pods(n);
        let after = pods(n + 1);
        let ideal = 1.0 / (n + 1) as f64;
        let m = moved(&table(&before, 65_537), &before, &table(&after, 65_537), &after);
        prop_assert!(m > ideal - 0.015 && m < ideal + 0.03, "moved {} ideal {}", m, ideal);
    }

    #[test]
    fn shares_follow_weights_within_one_percent(
        weights in proptest::collection::vec(1u32..=2, 2..12),
    ) {
        let eps: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint::new(format!("10.1.0.{i}:80"), w))
            .collect();
        let counts = table(&eps, 65_537).slot_counts();
        prop_assert_eq!(counts.iter().sum::<u64>(), 65_537, "every slot filled");
        let total: u32 = weights.iter().sum();
        for (c, &w) in counts.iter().zip(&weights) {
            let ideal = 65_537.0 * f64::from(w) / f64::from(total);
            prop_assert!((*c as f64 / ideal - 1.0).abs() < 0.01, "{:?} {:?}", counts, weights);
        }
    }
}
