//! Filling the table: Envoy's weighted turn order over on-the-fly permutations, with a faster
//! but equivalent search for free slots once the table is nearly full.
//!
//! Each fill takes the first free slot in the endpoint's permutation. With a fraction `f` of the
//! table taken, plain probing needs `1/(1 − f)` probes per fill, so the last few hundred free
//! slots cost most of the build (the last 1% of fills are about two thirds of all probes). Once
//! at most `≈ √(2M)` slots are free we keep them in a list and find, for the endpoint whose turn
//! it is, the free slot it reaches in the fewest steps — `d = (s − pos) · skip⁻¹ mod M` — in one
//! pass over that list. That picks exactly the slot probing would have found (a permutation
//! reaches every slot exactly once per M steps), so the table is unchanged; a test compares it
//! with a plain transcription of Envoy's loop.
//!
//! Pure like the rest of `maglev`: no allocation per lookup, no I/O, no clock.

use crate::endpoint::{Endpoint, Member};
use crate::hash::seeded;

/// One endpoint's state during the fill: its permutation cursor and its weighted turn count.
struct Cursor {
    index: u32,
    /// The next position of its permutation to try.
    pos: u32,
    skip: u32,
    /// `skip⁻¹ mod M`, computed when the tail search starts.
    inverse: u32,
    weight: u64,
    picks: u64,
}

/// Fills `m` slots with caller indices (converted by `narrow`), Envoy's weighted turn order.
pub(super) fn populate<T: Copy + Default>(
    sorted: &[Member],
    endpoints: &[Endpoint],
    m: u32,
    narrow: impl Fn(u32) -> T,
) -> Box<[T]> {
    let m64 = u64::from(m);
    let mut cursors: Vec<Cursor> = sorted
        .iter()
        .map(|member| {
            let key = endpoints[member.index as usize].key.as_bytes();
            Cursor {
                index: member.index,
                pos: (seeded(key, 0) % m64) as u32,
                skip: (seeded(key, 1) % (m64 - 1)) as u32 + 1,
                inverse: 0,
                weight: u64::from(member.weight),
                picks: 0,
            }
        })
        .collect();
    let max_weight = cursors.iter().map(|c| c.weight).max().unwrap_or(1);
    // One bit per slot: 8 KiB for M = 65 537, so the probe loop runs out of L1 cache.
    let mut taken = vec![0u64; (m as usize).div_ceil(64)];
    let mut slots = vec![T::default(); m as usize];
    let tail_from = tail_threshold(m);
    let mut free: Option<FreeSlots> = None;
    let mut filled = 0u32;
    let mut iteration = 1u64;
    while filled < m {
        for c in &mut cursors {
            // Envoy: skip this turn while iteration·w/W < picks·w_max/W (here times W).
            if iteration * c.weight < c.picks * max_weight {
                continue;
            }
            if free.is_none() && m - filled <= tail_from {
                free = Some(FreeSlots::new(&taken, m));
            }
            let pos = match &mut free {
                Some(free) => free.take_nearest(c),
                None => probe(&mut taken, c, m),
            };
            slots[pos as usize] = narrow(c.index);
            c.pos = step(pos, c.skip, m);
            c.picks += 1;
            filled += 1;
            if filled == m {
                break;
            }
        }
        iteration += 1;
    }
    slots.into_boxed_slice()
}

/// The first free slot from the cursor on, marked taken.
#[inline]
fn probe(taken: &mut [u64], c: &Cursor, m: u32) -> u32 {
    let mut pos = c.pos;
    while taken[(pos >> 6) as usize] & (1 << (pos & 63)) != 0 {
        pos = step(pos, c.skip, m);
    }
    taken[(pos >> 6) as usize] |= 1 << (pos & 63);
    pos
}

/// The next position of a permutation: `(pos + skip) mod m` without a division.
#[inline]
fn step(pos: u32, skip: u32, m: u32) -> u32 {
    // pos < m and skip < m, both < 2^23, so the sum cannot overflow.
    let next = pos + skip;
    if next >= m { next - m } else { next }
}

/// Free-slot count at which the list search beats probing: a fill then costs about `F` list
/// steps instead of about `M / F` probes, and a probe (a random bitset read that often ends in a
/// mispredicted branch) costs roughly twice a list step.
fn tail_threshold(m: u32) -> u32 {
    (2.0 * f64::from(m)).sqrt() as u32
}

/// The free slots of a nearly full table, with the modulus prepared for cheap reduction.
struct FreeSlots {
    slots: Vec<u32>,
    m: u64,
    /// `⌊2^64 / m⌋` for Barrett reduction of products below 2^46.
    barrett: u64,
}

impl FreeSlots {
    fn new(taken: &[u64], m: u32) -> Self {
        let slots = (0..m)
            .filter(|&pos| taken[(pos >> 6) as usize] & (1 << (pos & 63)) == 0)
            .collect();
        Self {
            slots,
            m: u64::from(m),
            barrett: u64::MAX / u64::from(m),
        }
    }

    /// The free slot the cursor's permutation reaches first, removed from the list.
    fn take_nearest(&mut self, c: &mut Cursor) -> u32 {
        // An inverse is never 0, so 0 means "not computed yet".
        if c.inverse == 0 {
            c.inverse = inverse_mod(u64::from(c.skip), self.m) as u32;
        }
        let (m, pos, inverse) = (self.m, u64::from(c.pos), u64::from(c.inverse));
        let mut best = (u64::MAX, 0usize);
        for (i, &s) in self.slots.iter().enumerate() {
            // Steps from pos to s: (s − pos) · skip⁻¹ mod m; the product is below 2^46.
            let distance = if u64::from(s) >= pos {
                u64::from(s) - pos
            } else {
                u64::from(s) + m - pos
            };
            let steps = self.reduce(distance * inverse);
            if steps < best.0 {
                best = (steps, i);
            }
        }
        self.slots.swap_remove(best.1)
    }

    /// `x mod m` for `x < 2^46` by Barrett reduction: the estimate is short by at most one `m`.
    #[inline]
    fn reduce(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.barrett)) >> 64) as u64;
        let r = x - q * self.m;
        if r >= self.m { r - self.m } else { r }
    }
}

/// `a⁻¹ mod m` for prime `m` and `0 < a < m`, by the extended Euclidean algorithm.
fn inverse_mod(a: u64, m: u64) -> u64 {
    let (mut old_r, mut r) = (a as i64, m as i64);
    let (mut old_s, mut s) = (1i64, 0i64);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(m as i64) as u64
}

#[cfg(test)]
mod tests;
