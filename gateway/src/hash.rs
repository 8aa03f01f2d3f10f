//! The stable hashes every gateway replica agrees on, and the small arithmetic built on them.
//!
//! Nothing that decides *where a key goes* uses `std`'s `DefaultHasher`, whose algorithm may
//! change between Rust releases: two replicas built by different toolchains must still send
//! `ricky` to the same pod. Both hashes below are fixed specifications (Yann Collet's xxHash
//! family, via the `xxhash-rust` crate); golden tests in `tests/maglev.rs` and `tests/ring.rs`
//! pin their outputs.
//!
//! - Endpoint keys (Maglev permutations, ring points) use **xxHash64**, exactly as Envoy, so our
//!   tables are Envoy's tables (tests reproduce Envoy's own expected ones).
//! - Request keys use **XXH3-64** (seed 0). On a 16-byte key it costs about a third of xxHash64
//!   (2.5 ns against 7.4 ns, see `docs/maglev.md`), which keeps hash + Maglev lookup under the
//!   8 ns goal. The price: Envoy hashes header and cookie values with xxHash64, so a key is not
//!   guaranteed to land on the same pod as under an Istio sidecar even with an identical table.
//!
//! A leaf: it imports nothing of the crate.

use xxhash_rust::xxh3::xxh3_64;
use xxhash_rust::xxh64::xxh64;

/// Hashes a request's affinity key (header value, cookie, source IP, query parameter): XXH3-64
/// with seed 0.
#[inline]
#[must_use]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// xxHash64 of `bytes` with an explicit seed; Maglev takes seed 0 for the offset and 1 for the
/// skip of an endpoint's permutation, as Envoy does.
#[inline]
#[must_use]
pub(crate) fn seeded(bytes: &[u8], seed: u64) -> u64 {
    xxh64(bytes, seed)
}

/// The hash used for selection attempt `attempt` of one request.
///
/// Attempt 0 is the key's home; attempt n flips most bits of the hash (`hash ^ (2^64 - n)`), the
/// same perturbation Envoy's Maglev applies when a retry must avoid a previous host. A large XOR
/// moves the lookup far from the home slot, so successive attempts do not pile onto one endpoint.
#[inline]
#[must_use]
pub fn perturb(hash: u64, attempt: u32) -> u64 {
    if attempt == 0 {
        hash
    } else {
        hash ^ u64::from(attempt).wrapping_neg()
    }
}

/// SplitMix64's finaliser: derives a fresh, well-mixed 64-bit value from one random input.
///
/// The data path hands the balancer a single random `u64` per pick; policies that need more than
/// one draw (power of two choices, redraws after an excluded endpoint) derive them with this
/// bijection instead of owning a generator, which keeps the balancer free of state and clocks.
#[inline]
#[must_use]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fixed divisor prepared so that `a % d` needs no division instruction.
///
/// Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation" (2019): with
/// `c = ⌈2^128 / d⌉`, the low 128 bits of `c·a` are the fraction `a/d` and that fraction times
/// `d` is the remainder. Exact for every 64-bit `a`. A Maglev lookup is one remainder and one
/// load, and a 64-bit `div` is its slowest step, so this pays on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Divisor {
    d: u64,
    reciprocal: u128,
}

impl Divisor {
    /// Prepares `d`, which must be at least 2.
    pub(crate) fn new(d: u64) -> Self {
        assert!(d >= 2, "a divisor of {d} has no 128-bit reciprocal");
        Self {
            d,
            reciprocal: u128::MAX / u128::from(d) + 1,
        }
    }

    /// `a % d`.
    #[inline]
    pub(crate) fn remainder(self, a: u64) -> u64 {
        let fraction = self.reciprocal.wrapping_mul(u128::from(a));
        let low = (u128::from(fraction as u64) * u128::from(self.d)) >> 64;
        let high = (fraction >> 64) * u128::from(self.d);
        ((low + high) >> 64) as u64
    }

    /// The divisor itself.
    #[inline]
    pub(crate) fn get(self) -> u64 {
        self.d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_hashes_match_the_reference_vectors() {
        // Reference values from the xxHash specification's test suite.
        assert_eq!(seeded(b"", 0), 0xef46_db37_51d8_e999);
        assert_eq!(seeded(b"", 1), 0xd5af_ba13_36a3_be4b);
        assert_eq!(seeded(b"a", 0), 0xd24e_c4f1_a98c_6e5b);
        assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn perturbation_matches_envoy_and_leaves_attempt_zero_alone() {
        assert_eq!(perturb(42, 0), 42);
        // Envoy: hash ^= ~0ULL - attempt + 1
        assert_eq!(perturb(42, 1), 42 ^ u64::MAX);
        assert_eq!(perturb(42, 3), 42 ^ (u64::MAX - 3 + 1));
    }

    #[test]
    fn divisor_remainders_equal_the_operator() {
        for d in [2u64, 7, 17, 251, 65_537, 655_373, 4_999_999, u64::MAX] {
            let divisor = Divisor::new(d);
            let samples = (0..2_000u64).map(mix).chain([0, 1, d - 1, d, u64::MAX]);
            for a in samples {
                assert_eq!(divisor.remainder(a), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn mix_is_not_the_identity_and_spreads_neighbours() {
        assert_ne!(mix(0), 0);
        assert!((mix(1) ^ mix(2)).count_ones() > 16);
    }
}
