//! Maglev consistent hashing (Eisenbud et al., NSDI '16), with Envoy's `maglev_lb.cc` as the
//! reference behaviour.
//!
//! A table of `M` slots (a prime, default 65 537) is filled with endpoint indices; a request key's
//! hash picks slot `hash % M`. Each endpoint walks its own permutation of the slots,
//! `offset + j·skip (mod M)` with `offset = xxHash64(key, 0) % M` and
//! `skip = xxHash64(key, 1) % (M − 1) + 1`, and endpoints take turns claiming their next free
//! slot, so each holds a share proportional to its weight and a change of one endpoint moves few
//! keys.
//!
//! Choices, and why:
//! - Endpoints are sorted by hash key before the fill, as Envoy does, so the table depends on the
//!   set, never on the order discovery listed it in.
//! - Permutations are walked on the fly (one cursor per endpoint): memory is O(N + M), not the
//!   paper's N × M preference lists.
//! - Weights follow Envoy's rule: in iteration `i` an endpoint of weight `w` takes a turn unless
//!   `i·w < picks·w_max`. Envoy evaluates it on normalised doubles; we evaluate the same
//!   inequality on integers (both sides multiplied by the total weight), which is exact, so ties
//!   can never round differently on another machine. Equal weights give Envoy's table exactly.
//! - Slots hold the caller's endpoint index as `u16` when there are at most 65 535 endpoints
//!   (128 KiB for the default table), `u32` otherwise.
//! - Lookup is `slots[hash % M]`: O(1), no allocation, and no division either (the remainder
//!   is computed by multiplication, see [`crate::hash`]).
//!
//! ```
//! use gateway::endpoint::Endpoint;
//! use gateway::hash::key_hash;
//! use gateway::maglev::{MaglevTable, TableSize};
//!
//! let pods = [Endpoint::new("10.0.0.1:8080", 1), Endpoint::new("10.0.0.2:8080", 1)];
//! let table = MaglevTable::build(&pods, TableSize::DEFAULT)?;
//! let pod = table.lookup(key_hash(b"ricky")).expect("two endpoints");
//! assert_eq!(table.lookup(key_hash(b"ricky")), Some(pod)); // same key, same pod
//! # Ok::<(), gateway::maglev::MaglevError>(())
//! ```

use thiserror::Error;

use crate::endpoint::{self, Endpoint, EndpointError};
use crate::hash::{Divisor, perturb};

mod fill;
use fill::populate;

/// A Maglev table size: a prime below [`TableSize::LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableSize(u32);

impl TableSize {
    /// Istio's and Envoy's default, 65 537.
    pub const DEFAULT: TableSize = TableSize(65_537);
    /// Istio accepts only sizes below this (5 000 011).
    pub const LIMIT: u64 = 5_000_011;

    /// Checks Istio's rule: prime and `< 5 000 011`. Without primality the permutations would
    /// not visit every slot and the fill could loop forever.
    pub fn new(size: u64) -> Result<Self, MaglevError> {
        if size >= Self::LIMIT {
            return Err(MaglevError::TooLarge(size));
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        Ok(TableSize(size as u32))
    }

    /// The number of slots.
    #[must_use]
    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

impl Default for TableSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a Maglev table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaglevError {
    /// `tableSize` is not a prime number.
    #[error("maglev tableSize {0} is not a prime number; use a prime such as 65537 or 655373")]
    NotPrime(u64),
    /// `tableSize` is at or above Istio's limit.
    #[error("maglev tableSize {0} is too large; it must be a prime less than 5000011")]
    TooLarge(u64),
    /// The endpoint set is unusable.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// How many perturbed lookups a pick tries before walking to the next endpoint in key order.
const PERTURBATIONS: u32 = 32;
/// `rank` entry of an endpoint that is not in the table (weight 0).
const NOT_A_MEMBER: u32 = u32::MAX;

/// An immutable Maglev lookup table over a set of weighted endpoints.
#[derive(Debug, Clone)]
pub struct MaglevTable {
    slots: Slots,
    /// The table size `M`, prepared for division-free `hash % M`.
    size: Divisor,
    /// Caller indices of the endpoints in the table, in hash-key order.
    members: Box<[u32]>,
    /// Caller index → position in `members`, or [`NOT_A_MEMBER`].
    rank: Box<[u32]>,
}

#[derive(Debug, Clone)]
enum Slots {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

impl MaglevTable {
    /// Builds the table for `endpoints`; lookups return indices into this slice.
    ///
    /// Endpoints of weight 0 are left out. An empty set (or all weights 0) builds an empty table
    /// whose lookups return `None`, the data path's "no healthy upstream".
    pub fn build(endpoints: &[Endpoint], size: TableSize) -> Result<Self, MaglevError> {
        let sorted = endpoint::sorted_members(endpoints)?;
        let m = size.0;
        let slots = if sorted.is_empty() {
            Slots::Narrow(Box::default())
        } else if endpoints.len() <= usize::from(u16::MAX) {
            Slots::Narrow(populate(&sorted, endpoints, m, |i| i as u16))
        } else {
            Slots::Wide(populate(&sorted, endpoints, m, |i| i))
        };
        let mut rank = vec![NOT_A_MEMBER; endpoints.len()].into_boxed_slice();
        for (position, member) in sorted.iter().enumerate() {
            rank[member.index as usize] = position as u32;
        }
        Ok(Self {
            slots,
            size: Divisor::new(size.get()),
            members: sorted.iter().map(|m| m.index).collect(),
            rank,
        })
    }

    /// The endpoint (caller index) that owns `hash`, or `None` for an empty table.
    #[inline]
    #[must_use]
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        Some(self.slot(self.size.remainder(hash) as usize))
    }

    /// The endpoint for selection attempt `attempt` of a request, avoiding `excluded`.
    ///
    /// Attempt 0 with nothing excluded is [`lookup`](Self::lookup). Otherwise the hash is
    /// perturbed as Envoy does (attempt, attempt + 1, … — see [`perturb`]) until a slot holds an
    /// endpoint not in `excluded`; after 32 misses it walks the endpoints in key order from the
    /// last one seen. Deterministic (every replica retries a key to the same place) and
    /// allocation-free; `None` when the table is empty or every endpoint is excluded.
    #[inline]
    #[must_use]
    pub fn pick(&self, hash: u64, attempt: u32, excluded: &[usize]) -> Option<usize> {
        let first = self.lookup(perturb(hash, attempt))?;
        if !excluded.contains(&first) {
            return Some(first);
        }
        if endpoint::all_excluded(self.members.len(), excluded, |e| self.is_member(e)) {
            return None;
        }
        let mut last = first;
        for step in 1..PERTURBATIONS {
            let hash = perturb(hash, attempt.wrapping_add(step));
            let e = self.slot(self.size.remainder(hash) as usize);
            if !excluded.contains(&e) {
                return Some(e);
            }
            last = e;
        }
        let n = self.members.len();
        let start = self.rank[last] as usize;
        (1..=n)
            .map(|i| self.members[(start + i) % n] as usize)
            .find(|e| !excluded.contains(e))
    }

    /// The endpoint stored in slot `slot` (`slot < size`).
    #[inline]
    #[must_use]
    pub fn slot(&self, slot: usize) -> usize {
        match &self.slots {
            Slots::Narrow(s) => usize::from(s[slot]),
            Slots::Wide(s) => s[slot] as usize,
        }
    }

    /// The table size `M`.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size.get()
    }

    /// How many endpoints hold slots (those with a non-zero weight).
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no endpoint holds a slot.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether caller index `endpoint` holds slots in this table.
    #[must_use]
    pub fn is_member(&self, endpoint: usize) -> bool {
        self.rank.get(endpoint).is_some_and(|&r| r != NOT_A_MEMBER)
    }

    /// Slots held per endpoint, indexed like the slice the table was built from (for the
    /// simulation, tests and the admin page; allocates).
    #[must_use]
    pub fn slot_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.rank.len()];
        if !self.members.is_empty() {
            for slot in 0..self.size.get() as usize {
                counts[self.slot(slot)] += 1;
            }
        }
        counts
    }

    /// Bytes held by the slot array (what the `u16` choice saves).
    #[must_use]
    pub fn slot_bytes(&self) -> usize {
        match &self.slots {
            Slots::Narrow(s) => std::mem::size_of_val(&**s),
            Slots::Wide(s) => std::mem::size_of_val(&**s),
        }
    }
}

/// Trial division; table sizes are below 5 000 011, so at most ~1 100 odd divisors.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    (3..)
        .step_by(2)
        .take_while(|d| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sizes_follow_istios_rule() {
        assert_eq!(TableSize::new(65_537).unwrap().get(), 65_537);
        assert_eq!(TableSize::new(655_373).unwrap().get(), 655_373);
        assert_eq!(TableSize::new(4_999_999).unwrap().get(), 4_999_999);
        assert_eq!(TableSize::new(65_536), Err(MaglevError::NotPrime(65_536)));
        assert_eq!(TableSize::new(1), Err(MaglevError::NotPrime(1)));
        assert_eq!(
            TableSize::new(5_000_011),
            Err(MaglevError::TooLarge(5_000_011))
        );
        assert!(
            TableSize::new(100)
                .unwrap_err()
                .to_string()
                .contains("not a prime")
        );
        assert_eq!(TableSize::default(), TableSize::DEFAULT);
    }

    #[test]
    fn primality_agrees_with_a_sieve_below_ten_thousand() {
        let mut composite = vec![false; 10_000];
        for i in 2..10_000 {
            if !composite[i] {
                (i * i..10_000).step_by(i).for_each(|j| composite[j] = true);
            }
            assert_eq!(is_prime(i as u64), !composite[i], "{i}");
        }
    }

    #[test]
    fn an_empty_or_all_zero_weight_set_builds_an_empty_table() {
        let t = MaglevTable::build(&[Endpoint::new("a", 0)], TableSize::DEFAULT).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.lookup(7), None);
        assert_eq!(t.pick(7, 1, &[]), None);
        assert!(!t.is_member(0));
    }

    #[test]
    fn narrow_slots_are_two_bytes_each() {
        let t = MaglevTable::build(&[Endpoint::new("a", 1)], TableSize::DEFAULT).unwrap();
        assert_eq!(t.slot_bytes(), 2 * 65_537);
        assert_eq!(t.slot_counts(), vec![65_537]);
    }

    #[test]
    fn the_smallest_prime_table_still_fills() {
        let eps = [Endpoint::new("a", 1), Endpoint::new("b", 1)];
        let t = MaglevTable::build(&eps, TableSize::new(2).unwrap()).unwrap();
        assert_eq!(t.slot_counts(), vec![1, 1]);
    }
}
