//! Signed requests already answered. Tencent's `Sign` is SHA-256(token +
//! `RequestTime`): it covers neither the command nor the body, and every callback of the
//! same second carries the same one, so no receiver can tell a forged body under a captured
//! signature from a real callback (TLS and `allow_from` are what keep signatures from being
//! captured). What a receiver can do is never act on the same signed request twice: the
//! ledger remembers each request answered (its app, `RequestTime`, `Sign`, whole query and
//! body), for as long as its `RequestTime` can be fresh. The same request again, Tencent
//! retrying a callback whose answer it lost or someone playing a captured one, is not
//! acted on again: an event is acknowledged without reaching the router, and an
//! AssignHuman is asked of the router as a replay only (its live reservation's answer, or
//! the group alone), so it cannot reserve a seat for a session that has ended since.
//!
//! At most [`MAX_ENTRIES`] are remembered, oldest forgotten first; each is an 8-byte digest
//! and its place in the forgetting order (about 40 bytes in all).
//! The digest is a 64-bit hash keyed with a seed drawn at random when the process starts:
//! a sender who cannot learn it cannot make a request of its own pass for another, and two
//! of Tencent's requests share one by chance about once in 10^10 ledgers full (the harm
//! would be one callback answered as a replay). A cryptographic hash would cost a callback
//! more than the rest of the ledger.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use std::hash::{BuildHasher, Hasher};

use handoff_core::id::SdkAppId;

/// How many answered requests the ledger remembers at most.
pub const MAX_ENTRIES: usize = 65_536;

/// A signed request, digested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request(u64);

/// Hashes a [`Request`] as itself: it is a keyed digest already.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (n, byte) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*byte) << (8 * n);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Digested = std::hash::BuildHasherDefault<DigestHasher>;

/// This process's key for digests.
fn key() -> &'static foldhash::quality::RandomState {
    static KEY: std::sync::OnceLock<foldhash::quality::RandomState> = std::sync::OnceLock::new();
    KEY.get_or_init(Default::default)
}

impl Request {
    /// The request of `app` with this raw query (which holds `RequestTime`, `Sign` and the
    /// command) and body.
    pub fn of(app: SdkAppId, query: &str, body: &[u8]) -> Self {
        let mut hasher = key().build_hasher();
        hasher.write_u64(app.get());
        hasher.write_usize(query.len());
        hasher.write(query.as_bytes());
        hasher.write(body);
        Self(hasher.finish())
    }
}

/// How many parts the ledger is kept in, each under a lock of its own (a request's part is
/// chosen by its digest), so that callbacks on different workers seldom wait for each other.
const SHARDS: usize = 16;

/// Signed requests answered, each until its signature is stale.
#[derive(Debug, Default)]
pub struct Ledger {
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Debug, Default)]
struct Shard {
    answered: HashSet<Request, Digested>,
    /// Each request and until when it is remembered, oldest first.
    order: VecDeque<(Instant, Request)>,
}

impl Shard {
    fn forget_until(&mut self, now: Instant) {
        while let Some((until, request)) = self.order.front().copied() {
            if until > now && self.order.len() <= MAX_ENTRIES / SHARDS {
                break;
            }
            self.order.pop_front();
            self.answered.remove(&request);
        }
    }
}

impl Ledger {
    fn shard(&self, request: Request) -> std::sync::MutexGuard<'_, Shard> {
        // Middle bits: the table within a part uses the low and the top ones.
        self.shards[(request.0 >> 32) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `request` was answered before (and is still remembered) at `now`.
    pub fn answered(&self, request: Request, now: Instant) -> bool {
        let mut shard = self.shard(request);
        shard.forget_until(now);
        shard.answered.contains(&request)
    }

    /// Remembers that `request` was answered at `now`, for `window`.
    pub fn record(&self, request: Request, now: Instant, window: Duration) {
        let mut shard = self.shard(request);
        if shard.answered.insert(request) {
            shard.order.push_back((now + window, request));
        }
        shard.forget_until(now);
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .answered
                    .len()
            })
            .sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> SdkAppId {
        SdkAppId::new(1_400_000_001).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_request_is_answered_once_while_its_signature_is_fresh() {
        let (ledger, now, window) = (Ledger::default(), Instant::now(), Duration::from_secs(120));
        let query = "SdkAppid=1400000001&CallbackCommand=Member.EventNotify&Sign=ab&RequestTime=1";
        let request = Request::of(app(), query, b"{1}");
        assert!(!ledger.answered(request, now));
        ledger.record(request, now, window);
        assert!(ledger.answered(request, now + Duration::from_secs(1)));
        // Another body, another query (another command) or another app is another request.
        assert!(!ledger.answered(Request::of(app(), query, b"{2}"), now));
        let other = query.replace("Member.EventNotify", "Desk.SessionEventNotify");
        assert!(!ledger.answered(Request::of(app(), &other, b"{1}"), now));
        let elsewhere = SdkAppId::new(1_400_000_002).unwrap_or_else(|_| unreachable!());
        assert!(!ledger.answered(Request::of(elsewhere, query, b"{1}"), now));
        // Once the signature is stale the request is forgotten (the gateway refuses it as
        // stale anyway).
        assert!(!ledger.answered(request, now + window + Duration::from_secs(1)));
        assert!(ledger.is_empty());
    }

    #[test]
    fn the_ledger_is_bounded_in_count_oldest_forgotten_first() {
        let (ledger, now, window) = (Ledger::default(), Instant::now(), Duration::from_secs(120));
        let request = |n: usize| Request::of(app(), &format!("RequestTime={n}"), b"{}");
        for n in 0..2 * MAX_ENTRIES {
            ledger.record(request(n), now, window);
        }
        // Each part forgets its oldest past its share: the whole never holds more.
        assert_eq!(ledger.len(), MAX_ENTRIES);
        assert!(!ledger.answered(request(0), now));
        assert!(ledger.answered(request(2 * MAX_ENTRIES - 1), now));
    }
}
