//! How evenly Maglev, ring hash and modulo hashing spread keys, and how many keys move when one
//! endpoint leaves or joins — next to the ideal 1/N.
//!
//! `cargo run --release -p gateway --example simulate` prints a Markdown table (kept in
//! `docs/maglev.md`). Everything is deterministic: endpoint keys are `10.x.y.z:8080`, request
//! keys are 100 000 SplitMix64 values, the removed endpoint is the one at index N/2.

use gateway::endpoint::Endpoint;
use gateway::hash::mix;
use gateway::maglev::{MaglevTable, TableSize};
use gateway::ring::{RingHash, RingSize};

const COUNTS: [usize; 5] = [3, 5, 10, 100, 1000];
const TABLE_SIZES: [u64; 2] = [65_537, 655_373];
const KEYS: u64 = 100_000;

fn endpoints(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            Endpoint::new(
                format!("10.{}.{}.{}:8080", i >> 16, (i >> 8) & 255, i & 255),
                1,
            )
        })
        .collect()
}

/// One algorithm built over one endpoint set: maps a hash to an endpoint key.
trait Placement {
    fn owner(&self, hash: u64) -> &str;
    /// Largest share of the key space any endpoint holds, over the mean share.
    fn max_over_mean(&self) -> f64;
}

struct Maglev(MaglevTable, Vec<Endpoint>);
struct Ring(RingHash, Vec<Endpoint>);
struct Modulo(Vec<Endpoint>);

impl Placement for Maglev {
    fn owner(&self, hash: u64) -> &str {
        &self.1[self.0.lookup(hash).unwrap()].key
    }
    fn max_over_mean(&self) -> f64 {
        let max = *self.0.slot_counts().iter().max().unwrap() as f64;
        max / (self.0.size() as f64 / self.1.len() as f64)
    }
}

impl Placement for Ring {
    fn owner(&self, hash: u64) -> &str {
        &self.1[self.0.lookup(hash).unwrap()].key
    }
    fn max_over_mean(&self) -> f64 {
        self.0.shares().iter().copied().fold(0.0, f64::max) * self.1.len() as f64
    }
}

impl Placement for Modulo {
    fn owner(&self, hash: u64) -> &str {
        &self.0[(hash % self.0.len() as u64) as usize].key
    }
    fn max_over_mean(&self) -> f64 {
        // hash % N over 2^64 hashes: shares differ by at most one hash in 2^64/N.
        1.0
    }
}

fn moved(a: &dyn Placement, b: &dyn Placement) -> f64 {
    let changed = (0..KEYS)
        .map(mix)
        .filter(|&h| a.owner(h) != b.owner(h))
        .count();
    changed as f64 / KEYS as f64
}

/// The endpoint set, without the one at N/2, and with one more.
fn variants(n: usize) -> (Vec<Endpoint>, Vec<Endpoint>, Vec<Endpoint>) {
    let all = endpoints(n);
    let mut fewer = all.clone();
    fewer.remove(n / 2);
    (all, fewer, endpoints(n + 1))
}

fn row(name: &str, size: &str, n: usize, build: impl Fn(Vec<Endpoint>) -> Box<dyn Placement>) {
    let (all, fewer, more) = variants(n);
    let base = build(all);
    let removed = moved(base.as_ref(), build(fewer).as_ref());
    let added = moved(base.as_ref(), build(more).as_ref());
    let (ideal_rm, ideal_add) = (1.0 / n as f64, 1.0 / (n + 1) as f64);
    println!(
        "| {name} | {size} | {n} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
        base.max_over_mean(),
        removed,
        ideal_rm,
        added,
        ideal_add,
    );
}

fn main() {
    println!(
        "| algorithm | table / ring | N | max/mean share | moved on remove | ideal 1/N | moved on add | ideal 1/(N+1) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in TABLE_SIZES {
        let size = TableSize::new(m).expect("prime");
        for n in COUNTS {
            row("maglev", &format!("M={m}"), n, |eps| {
                Box::new(Maglev(MaglevTable::build(&eps, size).unwrap(), eps))
            });
        }
    }
    for min in [RingSize::DEFAULT_MINIMUM, 65_537, 655_373] {
        let size = RingSize::new(min).expect("valid");
        for n in COUNTS {
            row("ring hash", &format!("min={min}"), n, |eps| {
                Box::new(Ring(RingHash::build(&eps, size).unwrap(), eps))
            });
        }
    }
    for n in COUNTS {
        row("modulo", "-", n, |eps| Box::new(Modulo(eps)));
    }
}
