//! Ring hash (ketama), Istio's algorithm for `consistentHash` when none is named, following
//! Envoy's `ring_hash_lb.cc`.
//!
//! Each endpoint places `scale · weight / W` points on a 64-bit ring at
//! `xxHash64("<key>_<i>")`; a request hash goes to the first point at or after it, wrapping
//! around. `scale` is chosen, as in Envoy, so the lightest endpoint gets
//! `⌈w_min / W · minimumRingSize⌉` points, capped at `maximumRingSize` points in all.
//!
//! Differences from Envoy, on purpose:
//! - endpoints are sorted by hash key before the ring is built, and points with equal hashes
//!   are ordered by that key too, so every replica builds the same ring whatever order discovery
//!   gave (Envoy keeps discovery order for the running point budget and uses an unstable sort);
//! - the running point budget is computed with exact integer arithmetic instead of doubles.
//!
//! Pure: std and `xxhash-rust`, no I/O, no clock, no async; health and discovery only hand it a new
//! endpoint set.

use std::fmt::Write as _;

use thiserror::Error;

use crate::endpoint::{self, Endpoint, EndpointError};
use crate::hash::seeded;

/// The ring's point budget: `ringHash.minimumRingSize` and Envoy's `maximum_ring_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingSize {
    minimum: u64,
    maximum: u64,
}

impl RingSize {
    /// Istio's minimum ring when `consistentHash` names no algorithm: 1024.
    pub const DEFAULT_MINIMUM: u64 = 1024;
    /// Envoy's default and upper bound for either size: 8 Mi points.
    pub const MAXIMUM: u64 = 8 * 1024 * 1024;
    /// Minimum 1024, maximum 8 Mi points.
    pub const DEFAULT: RingSize = RingSize {
        minimum: Self::DEFAULT_MINIMUM,
        maximum: Self::MAXIMUM,
    };

    /// A ring of at least `minimum` points (Istio's `minimumRingSize`), at most 8 Mi.
    pub fn new(minimum: u64) -> Result<Self, RingError> {
        Self::with_maximum(minimum, Self::MAXIMUM)
    }

    /// As [`new`](Self::new) with an explicit cap (Envoy's `maximum_ring_size`).
    pub fn with_maximum(minimum: u64, maximum: u64) -> Result<Self, RingError> {
        if minimum == 0 {
            return Err(RingError::ZeroMinimum);
        }
        if maximum > Self::MAXIMUM {
            return Err(RingError::TooLarge(maximum));
        }
        if minimum > maximum {
            return Err(RingError::MinimumAboveMaximum { minimum, maximum });
        }
        Ok(Self { minimum, maximum })
    }

    /// The minimum number of points.
    #[must_use]
    pub fn minimum(self) -> u64 {
        self.minimum
    }
}

impl Default for RingSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// A zero minimum would give an empty ring.
    #[error("ringHash minimumRingSize must be at least 1")]
    ZeroMinimum,
    /// Above Envoy's 8 Mi bound.
    #[error("ring size {0} is too large; at most 8388608 points")]
    TooLarge(u64),
    /// Minimum larger than maximum.
    #[error("ringHash minimumRingSize {minimum} is larger than the maximum ring size {maximum}")]
    MinimumAboveMaximum {
        /// Requested minimum.
        minimum: u64,
        /// Maximum in force.
        maximum: u64,
    },
    /// The endpoint set is unusable.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// An immutable hash ring over a set of weighted endpoints.
#[derive(Debug, Clone)]
pub struct RingHash {
    /// Point hashes, ascending; searched with a binary search.
    hashes: Box<[u64]>,
    /// Caller index of the endpoint owning each point.
    owners: Box<[u32]>,
    /// Caller index → whether it has points.
    member: Box<[bool]>,
    members: usize,
}

impl RingHash {
    /// Builds the ring for `endpoints`; lookups return indices into this slice. Weight-0
    /// endpoints get no points; an empty set builds an empty ring whose lookups return `None`.
    pub fn build(endpoints: &[Endpoint], size: RingSize) -> Result<Self, RingError> {
        let sorted = endpoint::sorted_members(endpoints)?;
        let mut member = vec![false; endpoints.len()].into_boxed_slice();
        sorted.iter().for_each(|m| member[m.index as usize] = true);
        let total: u128 = sorted.iter().map(|m| u128::from(m.weight)).sum();
        let lightest = sorted
            .iter()
            .map(|m| u128::from(m.weight))
            .min()
            .unwrap_or(1);
        // The lightest endpoint gets ⌈w_min/W · min⌉ points; the whole ring then has
        // points_per_lightest · W / w_min points, unless that exceeds the cap.
        let per_lightest = (lightest * u128::from(size.minimum)).div_ceil(total.max(1));
        let (num, den) = if per_lightest * total > u128::from(size.maximum) * lightest {
            (u128::from(size.maximum), total) // target after weight sum c: max · c / W
        } else {
            (per_lightest, lightest) // target after weight sum c: per_lightest · c / w_min
        };
        let mut points: Vec<(u64, u32, u32)> = Vec::new();
        let mut buffer = String::new();
        let (mut placed, mut cumulative) = (0u128, 0u128);
        for (rank, m) in sorted.iter().enumerate() {
            cumulative += u128::from(m.weight);
            let key = &endpoints[m.index as usize].key;
            let mut i = 0u64;
            while placed * den < num * cumulative {
                buffer.clear();
                // Writing into the reused buffer allocates nothing per point.
                let _ = write!(buffer, "{key}_{i}");
                points.push((seeded(buffer.as_bytes(), 0), rank as u32, m.index));
                i += 1;
                placed += 1;
            }
        }
        // Ties broken by key order (rank), so the ring never depends on the sort's stability.
        points.sort_unstable_by_key(|&(hash, rank, _)| (hash, rank));
        Ok(Self {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.2).collect(),
            member,
            members: sorted.len(),
        })
    }

    /// The endpoint (caller index) owning `hash`, or `None` for an empty ring. O(log points).
    #[inline]
    #[must_use]
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        self.point(hash).map(|p| self.owners[p] as usize)
    }

    /// The endpoint for selection attempt `attempt` of a request, avoiding `excluded`.
    ///
    /// As Envoy, attempt n starts n points clockwise of the key's point; from there the walk
    /// continues clockwise past excluded endpoints. Deterministic, allocation-free; `None` when
    /// the ring is empty or every endpoint is excluded.
    #[must_use]
    pub fn pick(&self, hash: u64, attempt: u32, excluded: &[usize]) -> Option<usize> {
        let home = self.point(hash)?;
        let len = self.hashes.len();
        let start = (home + attempt as usize % len) % len;
        let first = self.owners[start] as usize;
        if !excluded.contains(&first) {
            return Some(first);
        }
        if endpoint::all_excluded(self.members, excluded, |e| self.is_member(e)) {
            return None;
        }
        (1..len)
            .map(|i| self.owners[(start + i) % len] as usize)
            .find(|e| !excluded.contains(e))
    }

    fn point(&self, hash: u64) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        let p = self.hashes.partition_point(|&h| h < hash);
        Some(if p == self.hashes.len() { 0 } else { p })
    }

    /// Number of points on the ring.
    #[must_use]
    pub fn points(&self) -> usize {
        self.hashes.len()
    }

    /// How many endpoints own points.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members
    }

    /// Whether the ring has no points.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether caller index `endpoint` owns points.
    #[must_use]
    pub fn is_member(&self, endpoint: usize) -> bool {
        self.member.get(endpoint).copied().unwrap_or(false)
    }

    /// Fraction of the hash space each endpoint owns, indexed like the slice the ring was built
    /// from: the load share uniform keys would give it (for the simulation and tests).
    #[must_use]
    pub fn shares(&self) -> Vec<f64> {
        let mut shares = vec![0.0; self.member.len()];
        let Some(&last) = self.hashes.last() else {
            return shares;
        };
        let mut previous = last;
        for (&h, &owner) in self.hashes.iter().zip(self.owners.iter()) {
            // The arc (previous, h] maps to this point; the first point also takes the wrap.
            shares[owner as usize] += h.wrapping_sub(previous) as f64 / 2f64.powi(64);
            previous = h;
        }
        if self.hashes.len() == 1 {
            shares[self.owners[0] as usize] = 1.0;
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[(&str, u32)]) -> Vec<Endpoint> {
        list.iter().map(|&(k, w)| Endpoint::new(k, w)).collect()
    }

    fn points_of(ring: &RingHash, endpoint: usize) -> usize {
        ring.owners
            .iter()
            .filter(|&&o| o as usize == endpoint)
            .count()
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(RingSize::new(0), Err(RingError::ZeroMinimum));
        assert_eq!(
            RingSize::with_maximum(10, 5),
            Err(RingError::MinimumAboveMaximum {
                minimum: 10,
                maximum: 5
            })
        );
        assert_eq!(
            RingSize::new(RingSize::MAXIMUM + 1),
            Err(RingError::MinimumAboveMaximum {
                minimum: RingSize::MAXIMUM + 1,
                maximum: RingSize::MAXIMUM
            })
        );
        assert_eq!(
            RingSize::with_maximum(1, 1 << 30),
            Err(RingError::TooLarge(1 << 30))
        );
        assert_eq!(RingSize::default().minimum(), 1024);
    }

    #[test]
    fn equal_weights_share_the_minimum_ring_as_envoy_does() {
        // Envoy: scale = ⌈(1/3)·1024⌉ / (1/3) = 342·3 points, 342 per endpoint.
        let ring =
            RingHash::build(&eps(&[("a", 1), ("b", 1), ("c", 1)]), RingSize::DEFAULT).unwrap();
        assert_eq!(ring.points(), 1026);
        assert!((0..3).all(|e| points_of(&ring, e) == 342));
    }

    #[test]
    fn weights_scale_points_and_the_cap_holds() {
        let ring = RingHash::build(&eps(&[("a", 1), ("b", 3)]), RingSize::new(8).unwrap()).unwrap();
        assert_eq!((points_of(&ring, 0), points_of(&ring, 1)), (2, 6));
        let capped = RingSize::with_maximum(8, 4).unwrap_err();
        assert!(matches!(capped, RingError::MinimumAboveMaximum { .. }));
        let ring = RingHash::build(
            &eps(&[("a", 1), ("b", 3)]),
            RingSize::with_maximum(4, 4).unwrap(),
        )
        .unwrap();
        assert_eq!((points_of(&ring, 0), points_of(&ring, 1)), (1, 3));
    }

    #[test]
    fn lookups_wrap_around_the_ring() {
        let ring = RingHash::build(&eps(&[("a", 1), ("b", 1)]), RingSize::new(4).unwrap()).unwrap();
        let last = *ring.hashes.last().unwrap();
        assert_eq!(
            ring.lookup(last.wrapping_add(1)),
            Some(ring.owners[0] as usize)
        );
        assert_eq!(ring.lookup(0), Some(ring.owners[0] as usize));
        assert_eq!(
            ring.lookup(last),
            Some(*ring.owners.last().unwrap() as usize)
        );
    }

    #[test]
    fn an_empty_ring_answers_none() {
        let ring = RingHash::build(&eps(&[("a", 0)]), RingSize::DEFAULT).unwrap();
        assert!(ring.is_empty());
        assert_eq!(ring.lookup(1), None);
        assert_eq!(ring.pick(1, 2, &[0]), None);
        assert_eq!(ring.shares(), vec![0.0]);
    }

    #[test]
    fn shares_sum_to_one() {
        let ring =
            RingHash::build(&eps(&[("a", 1), ("b", 2), ("c", 1)]), RingSize::DEFAULT).unwrap();
        let total: f64 = ring.shares().iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }
}
