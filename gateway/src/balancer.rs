//! One selection interface over every policy Istio offers: build a [`Balancer`] from weighted
//! endpoints and a [`Policy`] off the request path, publish it (the data path keeps it in an
//! `ArcSwap`), and call [`Balancer::pick`] once per upstream attempt.
//!
//! A pick never allocates and never blocks. Everything that varies per request travels in a
//! [`PickContext`]: the key hash (for `consistentHash`), the attempt number and the endpoints
//! this request already tried (for retries), one random `u64` (for `RANDOM`, `LEAST_REQUEST` and
//! a missing key) and the in-flight counters (for `LEAST_REQUEST`).
//!
//! Health is not handled here: ejected endpoints are left out of the set (or given weight 0)
//! and the balancer is rebuilt, which for Maglev moves only their keys, as Envoy does.
//!
//! Endpoints are [`crate::endpoint::Endpoint`]s; `simple` holds round robin, random and least
//! request.
//!
//! ```
//! use gateway::balancer::{Balancer, PickContext, Policy, Reason};
//! use gateway::endpoint::Endpoint;
//! use gateway::hash::key_hash;
//! use gateway::maglev::TableSize;
//!
//! let pods = [Endpoint::new("10.0.0.1:8080", 1), Endpoint::new("10.0.0.2:8080", 1)];
//! let balancer = Balancer::new(&pods, Policy::Maglev(TableSize::DEFAULT), 0)?;
//! let random = 0x5eed; // the data path's per-request random value
//! let first = balancer.pick(&PickContext::new(random).key_hash(Some(key_hash(b"ricky"))))?;
//! assert_eq!(first.reason, Reason::Hash);
//! // The retry after a failure on `first` goes elsewhere, the same way on every replica.
//! let tried = [first.endpoint];
//! let ctx = PickContext::new(random)
//!     .key_hash(Some(key_hash(b"ricky")))
//!     .attempt(1)
//!     .excluded(&tried);
//! assert_ne!(balancer.pick(&ctx)?.endpoint, first.endpoint);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod simple;

use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

use simple::{Draw, RoundRobin};

use crate::endpoint::{self, Endpoint, EndpointError};
use crate::maglev::{MaglevError, MaglevTable, TableSize};
use crate::ring::{RingError, RingHash, RingSize};

/// A load-balancing policy, as Istio's `DestinationRule.trafficPolicy.loadBalancer` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `simple: ROUND_ROBIN` — weighted, earliest-deadline-first order as Envoy.
    RoundRobin,
    /// `simple: RANDOM` — weighted random.
    Random,
    /// `simple: LEAST_REQUEST` (and its deprecated alias `LEAST_CONN`): the fewest in flight
    /// among `choice_count` weighted random candidates; Envoy's default is 2.
    LeastRequest {
        /// Candidates drawn per pick, at least 2.
        choice_count: u32,
    },
    /// `consistentHash` with `ringHash` (or no algorithm named: Istio's default, minimum 1024).
    RingHash(RingSize),
    /// `consistentHash` with `maglev`.
    Maglev(TableSize),
}

impl Policy {
    /// `LEAST_REQUEST` with Envoy's default of two choices.
    pub const LEAST_REQUEST: Policy = Policy::LeastRequest { choice_count: 2 };
    /// `LEAST_CONN`, Istio's deprecated name for `LEAST_REQUEST`: the same policy.
    pub const LEAST_CONN: Policy = Self::LEAST_REQUEST;

    /// Whether the policy places keys by their hash (the `consistentHash` family).
    #[must_use]
    pub fn is_consistent_hash(self) -> bool {
        matches!(self, Policy::RingHash(_) | Policy::Maglev(_))
    }
}

/// Why a balancer cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BalancerError {
    /// The endpoint set is unusable.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The Maglev table cannot be built.
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    /// The hash ring cannot be built.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Least request needs at least two candidates to compare.
    #[error("LEAST_REQUEST choiceCount {0} is too small; it must be at least 2")]
    ChoiceCount(u32),
}

/// Why no endpoint could be picked. Small and `Copy`: it is built on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PickError {
    /// The set is empty (or every weight is 0): answer 503 `no healthy upstream`.
    #[error("no healthy upstream")]
    NoEndpoints,
    /// Every endpoint was excluded for this request (all already tried).
    #[error("every upstream endpoint was already tried for this request")]
    AllExcluded,
}

/// How a pick was made, so the data path can count, for instance, requests that had no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The key hash chose it (ring hash or Maglev).
    Hash,
    /// A hash policy had no key for this request, so the endpoint is random (as Envoy).
    MissingKey,
    /// Round robin's turn.
    RoundRobin,
    /// Random draw.
    Random,
    /// Least request among the drawn candidates.
    LeastRequest,
}

/// The chosen endpoint (index into the slice the balancer was built from) and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pick {
    /// Index into the endpoints the balancer was built from.
    pub endpoint: usize,
    /// Which rule chose it.
    pub reason: Reason,
}

/// Requests in flight per endpoint, supplied by the data path for `LEAST_REQUEST`.
pub trait InFlight {
    /// Requests now in flight to `endpoint` (an index into the balancer's endpoints).
    fn in_flight(&self, endpoint: usize) -> u32;
}

/// Counters indexed like the balancer's endpoints; a missing index counts as idle.
fn load_of(counters: &[AtomicU32], endpoint: usize) -> u32 {
    counters
        .get(endpoint)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

impl InFlight for Vec<AtomicU32> {
    fn in_flight(&self, endpoint: usize) -> u32 {
        load_of(self, endpoint)
    }
}

impl InFlight for Box<[AtomicU32]> {
    fn in_flight(&self, endpoint: usize) -> u32 {
        load_of(self, endpoint)
    }
}

impl<const N: usize> InFlight for [AtomicU32; N] {
    fn in_flight(&self, endpoint: usize) -> u32 {
        load_of(self, endpoint)
    }
}

/// Everything a pick needs from the request; cheap to build, `Copy`.
#[derive(Clone, Copy)]
pub struct PickContext<'a> {
    key_hash: Option<u64>,
    attempt: u32,
    excluded: &'a [usize],
    random: u64,
    in_flight: Option<&'a dyn InFlight>,
}

impl<'a> PickContext<'a> {
    /// A first attempt with no key, nothing excluded and no load information; `random` must be
    /// a fresh uniform random value (the data path's thread-local generator).
    #[must_use]
    pub fn new(random: u64) -> Self {
        Self {
            key_hash: None,
            attempt: 0,
            excluded: &[],
            random,
            in_flight: None,
        }
    }

    /// The request's key hash ([`crate::hash::key_hash`] of header, cookie, IP or query value).
    #[must_use]
    pub fn key_hash(mut self, hash: Option<u64>) -> Self {
        self.key_hash = hash;
        self
    }

    /// Selection attempt number: 0 first, n for the n-th retry.
    #[must_use]
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Endpoints to avoid (already tried by this request). Kept small; checked linearly.
    #[must_use]
    pub fn excluded(mut self, excluded: &'a [usize]) -> Self {
        self.excluded = excluded;
        self
    }

    /// In-flight counters for `LEAST_REQUEST`; without them every endpoint counts as idle.
    #[must_use]
    pub fn in_flight(mut self, in_flight: &'a dyn InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

impl std::fmt::Debug for PickContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PickContext")
            .field("key_hash", &self.key_hash)
            .field("attempt", &self.attempt)
            .field("excluded", &self.excluded)
            .field("random", &self.random)
            .field("in_flight", &self.in_flight.map(|_| "supplied"))
            .finish()
    }
}

/// An immutable load balancer over one set of weighted endpoints.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    selector: Selector,
}

#[derive(Debug)]
enum Selector {
    RoundRobin(RoundRobin),
    Random(Draw),
    LeastRequest(Draw, u32),
    Ring(RingHash),
    Maglev(MaglevTable),
}

impl Balancer {
    /// Builds the balancer. Picks return indices into `endpoints`; weight-0 endpoints are never
    /// picked. `seed` only sets where round robin starts (Envoy randomises it too, so rebuilds
    /// do not all begin with the same endpoint); other policies ignore it.
    pub fn new(endpoints: &[Endpoint], policy: Policy, seed: u64) -> Result<Self, BalancerError> {
        let selector = match policy {
            Policy::RoundRobin => {
                let sorted = endpoint::sorted_members(endpoints)?;
                Selector::RoundRobin(RoundRobin::new(&sorted, endpoints.len(), seed))
            }
            Policy::Random => Selector::Random(Draw::new(
                &endpoint::sorted_members(endpoints)?,
                endpoints.len(),
            )),
            Policy::LeastRequest { choice_count } => {
                if choice_count < 2 {
                    return Err(BalancerError::ChoiceCount(choice_count));
                }
                let sorted = endpoint::sorted_members(endpoints)?;
                Selector::LeastRequest(Draw::new(&sorted, endpoints.len()), choice_count)
            }
            Policy::RingHash(size) => Selector::Ring(RingHash::build(endpoints, size)?),
            Policy::Maglev(size) => Selector::Maglev(MaglevTable::build(endpoints, size)?),
        };
        Ok(Self { policy, selector })
    }

    /// The policy this balancer was built for.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Chooses the endpoint for one attempt of one request. Allocation-free; O(1) for Maglev,
    /// round robin and uniform random, O(log N) for ring hash and weighted draws.
    #[inline]
    pub fn pick(&self, ctx: &PickContext<'_>) -> Result<Pick, PickError> {
        let (picked, reason) = match &self.selector {
            Selector::RoundRobin(rr) => (rr.pick(ctx.excluded), Reason::RoundRobin),
            Selector::Random(draw) => (draw.pick(ctx.random, ctx.excluded), Reason::Random),
            Selector::LeastRequest(draw, choices) => {
                let load = |e| ctx.in_flight.map_or(0, |f| f.in_flight(e));
                let picked = simple::least_request(draw, *choices, ctx.random, ctx.excluded, load);
                (picked, Reason::LeastRequest)
            }
            Selector::Ring(ring) => {
                let (hash, reason) = hash_or_random(ctx);
                (ring.pick(hash, ctx.attempt, ctx.excluded), reason)
            }
            Selector::Maglev(table) => {
                let (hash, reason) = hash_or_random(ctx);
                (table.pick(hash, ctx.attempt, ctx.excluded), reason)
            }
        };
        match picked {
            Some(endpoint) => Ok(Pick { endpoint, reason }),
            None if self.is_empty() => Err(PickError::NoEndpoints),
            None => Err(PickError::AllExcluded),
        }
    }

    /// How many endpoints can be picked (weight > 0).
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.selector {
            Selector::RoundRobin(rr) => rr.len(),
            Selector::Random(draw) | Selector::LeastRequest(draw, _) => draw.len(),
            Selector::Ring(ring) => ring.len(),
            Selector::Maglev(table) => table.len(),
        }
    }

    /// Whether no endpoint can be picked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Maglev table, when the policy is Maglev (for the admin `/lookup` page).
    #[must_use]
    pub fn maglev(&self) -> Option<&MaglevTable> {
        match &self.selector {
            Selector::Maglev(table) => Some(table),
            _ => None,
        }
    }

    /// The hash ring, when the policy is ring hash.
    #[must_use]
    pub fn ring(&self) -> Option<&RingHash> {
        match &self.selector {
            Selector::Ring(ring) => Some(ring),
            _ => None,
        }
    }
}

/// The key hash, or — when the request has none — the random value standing in for it, as
/// Envoy does; the reason tells the data path which.
fn hash_or_random(ctx: &PickContext<'_>) -> (u64, Reason) {
    match ctx.key_hash {
        Some(hash) => (hash, Reason::Hash),
        None => (ctx.random, Reason::MissingKey),
    }
}

#[cfg(test)]
mod tests;
