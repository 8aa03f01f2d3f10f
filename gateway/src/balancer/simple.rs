//! Istio's `loadBalancer.simple` policies: `ROUND_ROBIN`, `RANDOM` and `LEAST_REQUEST` (power of
//! two choices; `LEAST_CONN` is its deprecated alias).
//!
//! Nothing here owns a random generator or a clock: the caller hands one random `u64` per pick
//! and, for least-request, the in-flight counters. The only state is round robin's position, an
//! atomic counter, so a built balancer can be shared by every request through an `Arc`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::endpoint::{self, Member};
use crate::hash::mix;

/// How many fresh draws a random pick makes before walking past excluded endpoints in order.
const REDRAWS: u64 = 8;
/// Weighted round-robin schedules longer than this are scaled down to it (weights keep their
/// ratio to within about one part in this length).
const SCHEDULE_CAP: u64 = 1 << 16;

/// Draws endpoints at random in proportion to their weights.
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    /// Caller indices, in hash-key order.
    members: Box<[u32]>,
    /// Running weight sums; empty when all weights are equal (then a draw is one multiply).
    cumulative: Box<[u64]>,
    /// Caller index → whether it can be drawn.
    member: Box<[bool]>,
}

impl Draw {
    pub(crate) fn new(sorted: &[Member], endpoint_count: usize) -> Self {
        let mut member = vec![false; endpoint_count].into_boxed_slice();
        sorted.iter().for_each(|m| member[m.index as usize] = true);
        let uniform = sorted.windows(2).all(|w| w[0].weight == w[1].weight);
        let cumulative = if uniform {
            Box::default()
        } else {
            sorted
                .iter()
                .scan(0u64, |sum, m| {
                    *sum += u64::from(m.weight);
                    Some(*sum)
                })
                .collect()
        };
        Self {
            members: sorted.iter().map(|m| m.index).collect(),
            cumulative,
            member,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One weighted draw from `random` (must not be empty).
    pub(crate) fn draw(&self, random: u64) -> usize {
        // Multiply-shift maps a uniform u64 onto [0, n) without a division.
        let scale = |n: u64| ((u128::from(random) * u128::from(n)) >> 64) as u64;
        match self.cumulative.last() {
            None => self.members[scale(self.members.len() as u64) as usize] as usize,
            Some(&total) => {
                let x = scale(total);
                self.members[self.cumulative.partition_point(|&c| c <= x)] as usize
            }
        }
    }

    /// A weighted draw that avoids `excluded`: fresh draws first, then the next endpoint in key
    /// order. `None` when empty or everything is excluded.
    pub(crate) fn pick(&self, random: u64, excluded: &[usize]) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let first = self.draw(random);
        if !excluded.contains(&first) {
            return Some(first);
        }
        if endpoint::all_excluded(self.members.len(), excluded, |e| self.is_member(e)) {
            return None;
        }
        let mut last = first;
        for k in 1..REDRAWS {
            last = self.draw(mix(random ^ k));
            if !excluded.contains(&last) {
                return Some(last);
            }
        }
        let n = self.members.len();
        let start = self
            .members
            .iter()
            .position(|&m| m as usize == last)
            .unwrap_or(0);
        (1..=n)
            .map(|i| self.members[(start + i) % n] as usize)
            .find(|e| !excluded.contains(e))
    }

    pub(crate) fn is_member(&self, endpoint: usize) -> bool {
        self.member.get(endpoint).copied().unwrap_or(false)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }
}

/// Weighted round robin over a precomputed schedule, advanced by one atomic counter.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    /// One period of the schedule: caller indices, each as often as its (reduced) weight.
    schedule: Box<[u32]>,
    next: AtomicU64,
    draw: Draw,
}

impl RoundRobin {
    /// `start` offsets the first position: Envoy starts each round robin at a random host so
    /// that every rebuild does not send its first request to the same endpoint.
    pub(crate) fn new(sorted: &[Member], endpoint_count: usize, start: u64) -> Self {
        let schedule = schedule(sorted);
        let len = schedule.len().max(1) as u64;
        Self {
            schedule,
            next: AtomicU64::new(start % len),
            draw: Draw::new(sorted, endpoint_count),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.draw.len()
    }

    /// The next endpoint in the schedule not in `excluded`.
    pub(crate) fn pick(&self, excluded: &[usize]) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize % len;
        let first = self.schedule[n] as usize;
        if !excluded.contains(&first) {
            return Some(first);
        }
        if endpoint::all_excluded(self.draw.len(), excluded, |e| self.draw.is_member(e)) {
            return None;
        }
        (1..len)
            .map(|i| self.schedule[(n + i) % len] as usize)
            .find(|e| !excluded.contains(e))
    }
}

/// Earliest-deadline-first order of one period, as Envoy's weighted round robin: endpoint `i`'s
/// k-th turn is due at `k / wᵢ`; ties go to the endpoint first in key order.
fn schedule(sorted: &[Member]) -> Box<[u32]> {
    if sorted.windows(2).all(|w| w[0].weight == w[1].weight) {
        return sorted.iter().map(|m| m.index).collect();
    }
    let g = sorted.iter().fold(0u32, |g, m| gcd(g, m.weight));
    let mut weights: Vec<u64> = sorted.iter().map(|m| u64::from(m.weight / g)).collect();
    let total: u64 = weights.iter().sum();
    let cap = SCHEDULE_CAP.max(sorted.len() as u64);
    if total > cap {
        weights.iter_mut().for_each(|w| {
            *w = (u128::from(*w) * u128::from(cap) / u128::from(total)).max(1) as u64
        });
    }
    let total: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Turn> = weights
        .iter()
        .enumerate()
        .map(|(rank, &weight)| Turn {
            turn: 1,
            weight,
            rank,
        })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    while let Some(mut t) = heap.pop() {
        out.push(sorted[t.rank].index);
        if t.turn < t.weight {
            t.turn += 1;
            heap.push(t);
        }
    }
    out.into_boxed_slice()
}

/// The `turn`-th turn of the endpoint at `rank`, due at `turn / weight`.
#[derive(PartialEq, Eq)]
struct Turn {
    turn: u64,
    weight: u64,
    rank: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // BinaryHeap pops the greatest: the earliest deadline, then the lowest rank.
        let mine = u128::from(self.turn) * u128::from(other.weight);
        let theirs = u128::from(other.turn) * u128::from(self.weight);
        theirs.cmp(&mine).then(other.rank.cmp(&self.rank))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Envoy's least-request: draw `choices` candidates (by weight), keep the one with the fewest
/// requests in flight; the first drawn wins a tie.
pub(crate) fn least_request(
    draw: &Draw,
    choices: u32,
    random: u64,
    excluded: &[usize],
    in_flight: impl Fn(usize) -> u32,
) -> Option<usize> {
    if draw.is_empty() {
        return None;
    }
    let mut best: Option<(usize, u32)> = None;
    for k in 0..u64::from(choices) {
        let candidate = draw.draw(if k == 0 { random } else { mix(random ^ k) });
        if excluded.contains(&candidate) {
            continue;
        }
        let load = in_flight(candidate);
        if best.is_none_or(|(_, least)| load < least) {
            best = Some((candidate, load));
        }
    }
    match best {
        Some((endpoint, _)) => Some(endpoint),
        None => draw.pick(mix(random), excluded),
    }
}

#[cfg(test)]
mod tests;
