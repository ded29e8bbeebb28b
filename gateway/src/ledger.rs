//! Signed requests already answered, and their answers. Tencent's `Sign` is SHA-256(token +
//! `RequestTime`): it covers neither the command nor the body, and every callback of the
//! same second carries the same one, so no receiver can tell a forged body under a captured
//! signature from a real callback (TLS and `allow_from` are what keep signatures from being
//! captured). What a receiver can do is never act on the same signed request twice: the
//! ledger remembers each request answered (its app, `RequestTime`, `Sign`, whole query and
//! body) with its answer, for as long as its `RequestTime` can be fresh. The same request
//! again, Tencent retrying a callback whose answer it lost or someone playing a captured
//! one, gets that answer without reaching the router: an event is not recorded twice, and
//! an AssignHuman whose session has ended since cannot reserve a seat again.
//!
//! At most [`MAX_ENTRIES`] are remembered, oldest forgotten first; each is a 16-byte digest
//! and the answer (a group and a few agent ids: about 300 bytes in all).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use handoff_core::id::SdkAppId;
use sha2::{Digest, Sha256};

use crate::tencent::CallbackResponse;

/// How many answered requests the ledger remembers at most.
pub const MAX_ENTRIES: usize = 65_536;

/// A signed request, digested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request([u8; 16]);

impl Request {
    /// The request of `app` with this raw query (which holds `RequestTime`, `Sign` and the
    /// command) and body.
    pub fn of(app: SdkAppId, query: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        for part in [&app.get().to_le_bytes()[..], query.as_bytes(), body] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let mut digest = [0; 16];
        digest.copy_from_slice(&hasher.finalize()[..16]);
        Self(digest)
    }
}

/// Signed requests answered, each until its signature is stale.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    answered: HashMap<Request, CallbackResponse>,
    /// Each request and until when it is remembered, oldest first.
    order: VecDeque<(Instant, Request)>,
}

impl Inner {
    fn forget_until(&mut self, now: Instant) {
        while let Some((until, request)) = self.order.front().copied() {
            if until > now && self.order.len() <= MAX_ENTRIES {
                break;
            }
            self.order.pop_front();
            self.answered.remove(&request);
        }
    }
}

impl Ledger {
    /// The answer `request` got before, if it is still remembered at `now`.
    pub fn answered(&self, request: Request, now: Instant) -> Option<CallbackResponse> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.forget_until(now);
        inner.answered.get(&request).cloned()
    }

    /// Remembers that `request` got `answer` at `now`, for `window`.
    pub fn record(
        &self,
        request: Request,
        answer: CallbackResponse,
        now: Instant,
        window: Duration,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.answered.insert(request, answer).is_none() {
            inner.order.push_back((now + window, request));
        }
        inner.forget_until(now);
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answered
            .len()
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
        assert_eq!(ledger.answered(request, now), None);
        ledger.record(request, CallbackResponse::ok(), now, window);
        let later = now + Duration::from_secs(1);
        assert_eq!(
            ledger.answered(request, later),
            Some(CallbackResponse::ok())
        );
        // Another body, another query (another command) or another app is another request.
        assert_eq!(
            ledger.answered(Request::of(app(), query, b"{2}"), now),
            None
        );
        let other = query.replace("Member.EventNotify", "Desk.SessionEventNotify");
        assert_eq!(
            ledger.answered(Request::of(app(), &other, b"{1}"), now),
            None
        );
        let elsewhere = SdkAppId::new(1_400_000_002).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            ledger.answered(Request::of(elsewhere, query, b"{1}"), now),
            None
        );
        // Once the signature is stale the request is forgotten (the gateway refuses it as
        // stale anyway).
        let stale = now + window + Duration::from_secs(1);
        assert_eq!(ledger.answered(request, stale), None);
        assert!(ledger.is_empty());
    }

    #[test]
    fn the_ledger_is_bounded_in_count_oldest_forgotten_first() {
        let (ledger, now, window) = (Ledger::default(), Instant::now(), Duration::from_secs(120));
        let request = |n: usize| Request::of(app(), &format!("RequestTime={n}"), b"{}");
        for n in 0..MAX_ENTRIES + 10 {
            ledger.record(request(n), CallbackResponse::ok(), now, window);
        }
        assert_eq!(ledger.len(), MAX_ENTRIES);
        assert_eq!(ledger.answered(request(0), now), None);
        assert!(ledger.answered(request(MAX_ENTRIES + 9), now).is_some());
    }
}
