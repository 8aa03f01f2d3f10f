//! Maglev: table build for N ∈ {5, 100, 1000} × M ∈ {65 537, 655 373}, lookup including the key
//! hash, a retry pick, the whole `Balancer::pick`, and the crates.io `maglev` 0.2.1 crate on the
//! same inputs where it fits (it keeps an N × M permutation of `usize`: N = 1000, M = 655 373
//! would need 5 GB and ~17 s per build, so that case is left out).
//!
//! `cargo bench -p gateway --bench maglev -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gateway::balancer::{Balancer, PickContext, Policy};
use gateway::endpoint::Endpoint;
use gateway::hash::key_hash;
use gateway::maglev::{MaglevTable, TableSize};
use maglev::{ConsistentHasher, Maglev};

const SIZES: [u64; 2] = [65_537, 655_373];
const COUNTS: [usize; 3] = [5, 100, 1000];

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

/// 1024 distinct 16-byte keys (the length of a typical user id), cycled so nothing folds away.
fn keys() -> Vec<[u8; 16]> {
    (0..1024u32)
        .map(|i| {
            let mut k = *b"user-0000000000x";
            k[5..15].copy_from_slice(format!("{i:010}").as_bytes());
            k
        })
        .collect()
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    group.sample_size(10);
    for m in SIZES {
        for n in COUNTS {
            let eps = endpoints(n);
            let size = TableSize::new(m).unwrap();
            group.bench_with_input(BenchmarkId::new(format!("M={m}"), n), &eps, |b, eps| {
                b.iter(|| MaglevTable::build(black_box(eps), size).unwrap())
            });
        }
    }
    group.finish();
}

fn build_crate(c: &mut Criterion) {
    let mut group = c.benchmark_group("crate_maglev_build");
    group.sample_size(10);
    for (m, n) in [
        (65_537, 5),
        (65_537, 100),
        (65_537, 1000),
        (655_373, 5),
        (655_373, 100),
    ] {
        let nodes: Vec<String> = endpoints(n)
            .into_iter()
            .map(|e| e.key.to_string())
            .collect();
        group.bench_with_input(BenchmarkId::new(format!("M={m}"), n), &nodes, |b, nodes| {
            b.iter(|| Maglev::with_capacity(black_box(nodes.clone()), m as usize))
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("maglev_lookup");
    for m in SIZES {
        let eps = endpoints(1000);
        let table = MaglevTable::build(&eps, TableSize::new(m).unwrap()).unwrap();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("hash+lookup 16B key, N=1000", m), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                table.lookup(key_hash(black_box(&keys[i])))
            })
        });
    }
    let eps = endpoints(1000);
    let table = MaglevTable::build(&eps, TableSize::DEFAULT).unwrap();
    let mut i = 0usize;
    group.bench_function("key_hash (XXH3) of a 16B key alone", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            key_hash(black_box(&keys[i]))
        })
    });
    // For the record in docs/maglev.md: what Envoy's xxHash64 would cost instead of XXH3.
    group.bench_function("xxHash64 of a 16B key alone (Envoy's, not used)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            xxhash_rust::xxh64::xxh64(black_box(&keys[i]), 0)
        })
    });
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
    group.bench_function("lookup of a precomputed hash", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            table.lookup(black_box(hashes[i]))
        })
    });
    group.bench_function("retry pick, attempt 1, home excluded", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let hash = key_hash(black_box(&keys[i]));
            let home = table.lookup(hash).unwrap();
            table.pick(hash, 1, &[home])
        })
    });
    let balancer = Balancer::new(&eps, Policy::Maglev(TableSize::DEFAULT), 0).unwrap();
    group.bench_function("Balancer::pick, 16B key", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let ctx = PickContext::new(i as u64).key_hash(Some(key_hash(black_box(&keys[i]))));
            balancer.pick(&ctx)
        })
    });
    let nodes: Vec<String> = eps.into_iter().map(|e| e.key.to_string()).collect();
    let theirs = Maglev::with_capacity(nodes, 65_537);
    group.bench_function("crate maglev get 16B key, N=1000, M=65537", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            theirs.get(black_box(&keys[i])).map(String::len)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = build, lookup, build_crate
}
criterion_main!(benches);
