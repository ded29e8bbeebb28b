//! Each strategy's order, written once: the key that sorts an agent, used alike by a scan
//! of every agent ([`super::rank`]) and by the floor's rankings kept ahead
//! ([`super::floor`]), and the score ExplainAssignment shows. A new strategy is an arm in
//! [`key`] and [`score`] (and, if it cannot be kept ranked, in [`kept_as`]); both paths
//! then order by it.
//!
//! Every order ends in the agent's roster position, so the same state and clock always
//! give the same order. `round_robin` is `fixed_order` rotated after the member assigned
//! last; `random` is keyed by the session, so no floor can keep it ranked.

use std::time::SystemTime;

use handoff_core::config::Strategy;

/// What the strategies order an agent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Standing {
    /// Sessions holding its seats.
    pub active: u32,
    /// The most it takes.
    pub capacity: u32,
    /// When it was last assigned a session.
    pub last: Option<SystemTime>,
    /// Its proficiency summed over the target's skills (`most_skilled`).
    pub skill: u32,
    /// Its place in the roster.
    pub position: u32,
}

impl Standing {
    /// `active / capacity`, ordered exactly as the fraction.
    #[inline]
    pub fn ratio(&self) -> Ratio {
        Ratio {
            active: self.active,
            capacity: self.capacity.max(1),
        }
    }
}

/// A load ratio, `active / capacity`, compared exactly (by cross-multiplication, no
/// division): equal fractions are equal (1/2 and 2/4).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ratio {
    active: u32,
    capacity: u32,
}

impl Ratio {
    /// The least ratio, for orders that do not read load.
    const NONE: Ratio = Ratio {
        active: 0,
        capacity: 1,
    };
}

impl Ord for Ratio {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (u64::from(self.active) * u64::from(other.capacity))
            .cmp(&(u64::from(other.active) * u64::from(self.capacity)))
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ratio {}

/// An agent's place in a strategy's order: smaller first, the roster position last. The
/// parts are compared in turn: a skill rank, a load ratio, the last assignment (never
/// assigned first), a second load ratio, the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct OrderKey(u32, Ratio, Option<SystemTime>, Ratio, u32);

impl OrderKey {
    /// The roster position it ends in.
    pub fn position(&self) -> u32 {
        self.4
    }

    /// The key at `position` in a position-only order (`fixed_order`).
    pub fn at(position: u32) -> Self {
        Self(0, Ratio::NONE, None, Ratio::NONE, position)
    }
}

/// Where `strategy` puts an agent: `least_loaded` by load ratio, then idle time (the
/// earliest last assignment, never assigned first); `longest_idle` by idle time, then load
/// ratio; `most_skilled` by skill (most first), then load ratio, then idle time;
/// `fixed_order` and `round_robin` by position. `None` for `random`, whose order is the
/// session's.
#[inline]
pub(super) fn key(strategy: Strategy, standing: &Standing) -> Option<OrderKey> {
    let (ratio, last, position) = (standing.ratio(), standing.last, standing.position);
    let none = Ratio::NONE;
    Some(match strategy {
        Strategy::LeastLoaded => OrderKey(0, ratio, last, none, position),
        Strategy::LongestIdle => OrderKey(0, none, last, ratio, position),
        Strategy::MostSkilled => OrderKey(u32::MAX - standing.skill, ratio, last, none, position),
        Strategy::FixedOrder | Strategy::RoundRobin => OrderKey::at(position),
        Strategy::Random => return None,
    })
}

/// The order a floor keeps for `strategy`: its own, or for `round_robin` the position
/// order it rotates; `None` for `random`.
pub(super) fn kept_as(strategy: Strategy) -> Option<Strategy> {
    match strategy {
        Strategy::RoundRobin => Some(Strategy::FixedOrder),
        Strategy::Random => None,
        Strategy::LeastLoaded
        | Strategy::LongestIdle
        | Strategy::MostSkilled
        | Strategy::FixedOrder => Some(strategy),
    }
}

/// The orders a floor keeps, one set each.
pub(super) const KEPT: [Strategy; 4] = [
    Strategy::LeastLoaded,
    Strategy::LongestIdle,
    Strategy::MostSkilled,
    Strategy::FixedOrder,
];

/// The score `strategy` shows for an agent: its load ratio, idle seconds, turn (its place
/// after `round_robin`'s rotation), skill total, position, or shuffle key (`random`'s,
/// for `seed` and `session`).
#[inline]
pub(super) fn score(
    strategy: Strategy,
    standing: &Standing,
    turn: usize,
    shuffle: impl FnOnce() -> u64,
    now: SystemTime,
) -> f64 {
    match strategy {
        Strategy::LeastLoaded => f64::from(standing.active) / f64::from(standing.capacity.max(1)),
        Strategy::LongestIdle => match standing.last {
            None => f64::INFINITY,
            Some(at) => now.duration_since(at).unwrap_or_default().as_secs_f64(),
        },
        Strategy::RoundRobin => turn as f64,
        Strategy::MostSkilled => f64::from(standing.skill),
        Strategy::FixedOrder => f64::from(standing.position),
        Strategy::Random => shuffle() as f64 / u64::MAX as f64,
    }
}

/// A well-mixed 64-bit key for `(seed, session, agent)`: FNV-1a over the bytes, finished
/// with splitmix64. Stable across runs and platforms, unlike `std`'s hasher.
pub(super) fn shuffle_key(seed: u64, session: &str, agent: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in session.bytes().chain([0xff]).chain(agent.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}
