//! Ranking a target's eligible agents by its strategy. Every order ends in the agents'
//! roster positions, so the same state and clock always give the same order.

use std::{cmp::Ordering, time::SystemTime};

use handoff_core::id::SessionId;

use super::{Candidate, Strategy, catalog::Target};

/// Orders `candidates` by `target`'s strategy and fills in their scores.
///
/// `pivot` is the roster position of the target's member assigned most recently, where
/// `round_robin` continues from.
pub(super) fn rank(
    target: &Target,
    candidates: &mut [Candidate],
    skills: impl Fn(&Candidate) -> u32,
    session: &SessionId,
    pivot: Option<usize>,
    now: SystemTime,
) {
    match target.strategy {
        Strategy::LeastLoaded => {
            for c in candidates.iter_mut() {
                c.score = f64::from(c.active) / f64::from(c.capacity.max(1));
            }
            candidates.sort_by(|a, b| {
                load_ratio(a, b)
                    .then_with(|| idle_order(a.last_assigned, b.last_assigned))
                    .then_with(|| a.position.cmp(&b.position))
            });
        }
        Strategy::LongestIdle => {
            for c in candidates.iter_mut() {
                c.score = idle_seconds(c.last_assigned, now);
            }
            candidates.sort_by(|a, b| {
                idle_order(a.last_assigned, b.last_assigned)
                    .then_with(|| load_ratio(a, b))
                    .then_with(|| a.position.cmp(&b.position))
            });
        }
        Strategy::RoundRobin => {
            let after = |position: usize| match pivot {
                Some(pivot) if position <= pivot => (1, position),
                _ => (0, position),
            };
            candidates.sort_by_key(|c| after(c.position));
            for (turn, c) in candidates.iter_mut().enumerate() {
                c.score = turn as f64;
            }
        }
        Strategy::MostSkilled => {
            for c in candidates.iter_mut() {
                c.score = f64::from(skills(c));
            }
            candidates.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then_with(|| load_ratio(a, b))
                    .then_with(|| idle_order(a.last_assigned, b.last_assigned))
                    .then_with(|| a.position.cmp(&b.position))
            });
        }
        Strategy::FixedOrder => {
            candidates.sort_by_key(|c| c.position);
            for c in candidates.iter_mut() {
                c.score = c.position as f64;
            }
        }
        Strategy::Random => {
            for c in candidates.iter_mut() {
                let key = shuffle_key(target.seed, session.as_str(), c.agent.as_str());
                c.score = key as f64 / u64::MAX as f64;
            }
            candidates.sort_by(|a, b| {
                a.score
                    .total_cmp(&b.score)
                    .then_with(|| a.position.cmp(&b.position))
            });
        }
    }
}

/// The score `strategy` gives `candidate` (shown by ExplainAssignment): its load ratio,
/// idle seconds, turn, skill total (`skill`), position or shuffle key.
pub(super) fn score(
    target: &Target,
    candidate: &Candidate,
    skill: u32,
    session: &SessionId,
    turn: usize,
    now: SystemTime,
) -> f64 {
    match target.strategy {
        Strategy::LeastLoaded => f64::from(candidate.active) / f64::from(candidate.capacity.max(1)),
        Strategy::LongestIdle => idle_seconds(candidate.last_assigned, now),
        Strategy::RoundRobin => turn as f64,
        Strategy::MostSkilled => f64::from(skill),
        Strategy::FixedOrder => candidate.position as f64,
        Strategy::Random => {
            shuffle_key(target.seed, session.as_str(), candidate.agent.as_str()) as f64
                / u64::MAX as f64
        }
    }
}

/// Compares `a.active / a.capacity` with `b.active / b.capacity` exactly, in integers.
fn load_ratio(a: &Candidate, b: &Candidate) -> Ordering {
    let left = u64::from(a.active) * u64::from(b.capacity);
    let right = u64::from(b.active) * u64::from(a.capacity);
    left.cmp(&right)
}

/// Earlier last assignment (longer idle) first; never assigned before everyone.
fn idle_order(a: Option<SystemTime>, b: Option<SystemTime>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

/// Seconds since the last assignment; infinite when never assigned.
fn idle_seconds(last: Option<SystemTime>, now: SystemTime) -> f64 {
    match last {
        None => f64::INFINITY,
        Some(at) => now.duration_since(at).unwrap_or_default().as_secs_f64(),
    }
}

/// A well-mixed 64-bit key for `(seed, session, agent)`: FNV-1a over the bytes, finished
/// with splitmix64. Stable across runs and platforms, unlike `std`'s hasher.
fn shuffle_key(seed: u64, session: &str, agent: &str) -> u64 {
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
