//! Ranking a target's eligible agents by its strategy, for a scan of every agent: the
//! orders are [`super::strategy`]'s keys, the same the floor keeps its rankings in.

use std::time::SystemTime;

use handoff_core::id::SessionId;

use super::{
    Candidate, Strategy,
    catalog::Target,
    strategy::{self, Standing},
};

/// What `strategy` orders `candidate` on, with `skill` its skill total.
fn standing(candidate: &Candidate, skill: u32) -> Standing {
    Standing {
        active: candidate.active,
        capacity: candidate.capacity,
        last: candidate.last_assigned,
        skill,
        position: u32::try_from(candidate.position).unwrap_or(u32::MAX),
    }
}

/// Up to how many candidates are sorted without a buffer of keys.
const SHORT: usize = 24;

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
    let score = |c: &Candidate, turn: usize| {
        let shuffle = || strategy::shuffle_key(target.seed, session.as_str(), c.agent.as_str());
        strategy::score(target.strategy, &standing(c, skills(c)), turn, shuffle, now)
    };
    match target.strategy {
        Strategy::RoundRobin => {
            // Position order, rotated to continue after the pivot.
            candidates.sort_by_key(|c| match pivot {
                Some(pivot) if c.position <= pivot => (1, c.position),
                _ => (0, c.position),
            });
        }
        Strategy::Random => {
            for c in candidates.iter_mut() {
                c.score = score(c, 0);
            }
            candidates.sort_by(|a, b| {
                a.score
                    .total_cmp(&b.score)
                    .then_with(|| a.position.cmp(&b.position))
            });
        }
        // Keys are unique (they end in the position), so an unstable sort is stable. A
        // short list compares keys as made; a longer one makes each once.
        kept if candidates.len() <= SHORT => candidates.sort_unstable_by(|a, b| {
            let key = |c: &Candidate| strategy::key(kept, &standing(c, skills(c)));
            key(a).cmp(&key(b))
        }),
        kept => candidates.sort_by_cached_key(|c| strategy::key(kept, &standing(c, skills(c)))),
    }
    // Tiers first, each in the strategy's order (the sort is stable).
    if !target.tiers.is_empty() {
        candidates.sort_by_key(|c| c.tier);
    }
    if target.strategy != Strategy::Random {
        for (turn, c) in candidates.iter_mut().enumerate() {
            c.score = score(c, turn);
        }
    }
}
