use super::*;
use crate::endpoint::sorted_members;
use crate::hash::mix;

/// A plain transcription of Envoy's `constructImplementationInternals` (permutation index
/// `next`, `(offset + skip·next) % M`, a full table scan per probe): the oracle. Its weight rule
/// is Envoy's multiplied through by the total weight, as in `populate`.
fn envoy_fill(endpoints: &[Endpoint], m: u64) -> Vec<u32> {
    struct Entry {
        offset: u64,
        skip: u64,
        next: u64,
        target: u64,
        weight: u64,
        index: u32,
    }
    let sorted = sorted_members(endpoints).unwrap();
    let max = sorted.iter().map(|s| u64::from(s.weight)).max().unwrap();
    let mut entries: Vec<Entry> = sorted
        .iter()
        .map(|s| {
            let key = endpoints[s.index as usize].key.as_bytes();
            Entry {
                offset: seeded(key, 0) % m,
                skip: seeded(key, 1) % (m - 1) + 1,
                next: 0,
                target: 0,
                weight: u64::from(s.weight),
                index: s.index,
            }
        })
        .collect();
    let mut table: Vec<Option<u32>> = vec![None; m as usize];
    let mut filled = 0;
    let mut iteration = 1u64;
    while filled < m {
        for e in entries.iter_mut() {
            if filled == m {
                break;
            }
            if iteration * e.weight < e.target {
                continue;
            }
            e.target += max;
            let mut c = (e.offset + e.skip * e.next) % m;
            while table[c as usize].is_some() {
                e.next += 1;
                c = (e.offset + e.skip * e.next) % m;
            }
            table[c as usize] = Some(e.index);
            e.next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    table.into_iter().map(Option::unwrap).collect()
}

fn ours(endpoints: &[Endpoint], m: u32) -> Vec<u32> {
    populate(&sorted_members(endpoints).unwrap(), endpoints, m, |i| i).into_vec()
}

#[test]
fn the_fill_equals_envoys_plain_loop() {
    for (seed, m) in [(1u64, 7u32), (2, 17), (3, 251), (4, 4_099), (5, 65_537)] {
        for n in [1usize, 2, 3, 10, 60] {
            let endpoints: Vec<Endpoint> = (0..n)
                .map(|i| {
                    let weight = 1 + (mix(seed ^ i as u64) % 3) as u32;
                    Endpoint::new(format!("ep-{seed}-{i}"), weight)
                })
                .collect();
            assert_eq!(
                ours(&endpoints, m),
                envoy_fill(&endpoints, u64::from(m)),
                "n={n} m={m}"
            );
        }
    }
}

#[test]
fn inverses_are_inverses() {
    for m in [7u64, 17, 65_537, 655_373] {
        for a in [1, 2, 3, m / 2, m - 1] {
            assert_eq!(a * inverse_mod(a, m) % m, 1, "{a}⁻¹ mod {m}");
        }
    }
}

#[test]
fn barrett_reduction_is_exact_below_two_to_the_46() {
    let free = FreeSlots::new(&[0], 61);
    for x in (0..5_000u64)
        .map(|i| mix(i) >> 18)
        .chain([0, 60, 61, (1 << 46) - 1])
    {
        assert_eq!(free.reduce(x), x % 61, "{x}");
    }
}

#[test]
fn the_tail_starts_near_the_square_root_of_twice_the_size() {
    assert_eq!(tail_threshold(65_537), 362);
    assert_eq!(tail_threshold(7), 3);
}
