//! Ring hash: build for N ∈ {5, 100, 1000} at Istio's default minimum ring (1024) and at a
//! 256 Ki ring (the size Envoy's Maglev-vs-ring comparison uses), and lookup of a 16-byte key.
//!
//! `cargo bench -p gateway --bench ring -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gateway::endpoint::Endpoint;
use gateway::hash::key_hash;
use gateway::ring::{RingHash, RingSize};

const MINIMUMS: [u64; 2] = [1024, 256 * 1024];

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

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    group.sample_size(10);
    for min in MINIMUMS {
        for n in [5, 100, 1000] {
            let eps = endpoints(n);
            let size = RingSize::new(min).unwrap();
            group.bench_with_input(BenchmarkId::new(format!("min={min}"), n), &eps, |b, eps| {
                b.iter(|| RingHash::build(black_box(eps), size).unwrap())
            });
        }
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let keys: Vec<[u8; 16]> = (0..1024u32)
        .map(|i| {
            let mut k = *b"user-0000000000x";
            k[5..15].copy_from_slice(format!("{i:010}").as_bytes());
            k
        })
        .collect();
    let mut group = c.benchmark_group("ring_lookup");
    for min in MINIMUMS {
        let ring = RingHash::build(&endpoints(1000), RingSize::new(min).unwrap()).unwrap();
        let mut i = 0usize;
        let label = format!("hash+lookup 16B key, N=1000, {} points", ring.points());
        group.bench_function(BenchmarkId::new(label, min), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                ring.lookup(key_hash(black_box(&keys[i])))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = build, lookup
}
criterion_main!(benches);
