//! The stored form of what the embedded file and Redis keep, shared by both: JSON records
//! with their own types, so that changing an engine type never silently changes what is on
//! disk. The field names are the format (the Redis scripts read and write some of them);
//! renaming one needs a migration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handoff_core::{
    config::{AgentConfig, AgentStatus, Strategy},
    id::{AgentId, ClientUserId, GroupId},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::engine::{Answer, Customer};

/// For serde: a weight absent is 1.
pub(super) fn one() -> u32 {
    1
}

/// For serde: a weight of 1 is left out.
pub(super) fn is_one(value: &u32) -> bool {
    *value == 1
}

/// An [`Answer`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRecord {
    group: Option<GroupId>,
    agents: Vec<AgentId>,
    reserved: Option<AgentId>,
    rule: String,
    strategy: Option<Strategy>,
    fallback: bool,
    reason: String,
}

impl AnswerRecord {
    /// The group answered.
    pub fn group(&self) -> Option<GroupId> {
        self.group
    }

    /// The agent whose seat the answer reserved.
    pub fn reserved(&self) -> Option<&AgentId> {
        self.reserved.as_ref()
    }

    /// The rule that produced the answer.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl From<&Answer> for AnswerRecord {
    fn from(answer: &Answer) -> Self {
        Self {
            group: answer.group,
            agents: answer.agents.clone(),
            reserved: answer.reserved.clone(),
            rule: answer.rule.clone(),
            strategy: answer.strategy,
            fallback: answer.fallback,
            reason: answer.reason.clone(),
        }
    }
}

impl From<AnswerRecord> for Answer {
    fn from(record: AnswerRecord) -> Self {
        Self {
            group: record.group,
            agents: record.agents,
            reserved: record.reserved,
            rule: record.rule,
            strategy: record.strategy,
            fallback: record.fallback,
            reason: record.reason,
            // The session's record keeps the weight (see `SessionRecord::answered`).
            weight: 1,
        }
    }
}

/// A customer's previous agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The agent last assigned to the customer.
    pub agent: AgentId,
    /// When it was recorded, by the router's clock: what `sticky_ttl` counts from.
    pub at_ms: u64,
    /// When it happened, by the reporter's clock: what decides which link is the latest.
    /// Absent in records written before session events (then `at_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ms: Option<u64>,
}

impl HistoryRecord {
    /// Whether a link that happened at `event_ms` is at least as recent as this one.
    pub fn superseded_by(&self, event_ms: u64) -> bool {
        self.event_ms.unwrap_or(self.at_ms) <= event_ms
    }
}

/// A [`Customer`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    id: ClientUserId,
    known: bool,
    tier: Option<String>,
    language: Option<String>,
    region: Option<String>,
    tags: Vec<String>,
    owner: Option<AgentId>,
    attributes: std::collections::BTreeMap<String, String>,
}

impl From<&Customer> for CustomerRecord {
    fn from(customer: &Customer) -> Self {
        Self {
            id: customer.id.clone(),
            known: customer.known,
            tier: customer.tier.clone(),
            language: customer.language.clone(),
            region: customer.region.clone(),
            tags: customer.tags.clone(),
            owner: customer.owner.clone(),
            attributes: customer.attributes.iter().cloned().collect(),
        }
    }
}

impl From<CustomerRecord> for Customer {
    fn from(record: CustomerRecord) -> Self {
        Self {
            id: record.id,
            known: record.known,
            tier: record.tier,
            language: record.language,
            region: record.region,
            tags: record.tags,
            owner: record.owner,
            attributes: record.attributes.into_iter().collect(),
        }
    }
}

/// A run-time roster change: an agent's definition (in the config file's shape, which is
/// documented and versioned with it), or `None` when the agent was removed.
pub type RosterRecord = Option<AgentConfig>;

/// A live status, and when it was set by the reporter's clock (a report older than that is
/// stale). Records written before statuses had a time are the bare status (`"away"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatusRecord {
    /// A status and when it was set, Unix milliseconds.
    Timed {
        /// The status, as the config file spells it.
        status: AgentStatus,
        /// When it was set.
        at_ms: u64,
        /// Whether the Desk sync set it (else a caller of the API: SetAgentStatus, or the
        /// gateway with Tencent's status events).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        desk: bool,
    },
    /// A status from before statuses had a time.
    Bare(AgentStatus),
}

impl StatusRecord {
    /// `status`, set at `at` (by the Desk sync when `desk`).
    pub fn timed(status: AgentStatus, at: SystemTime, desk: bool) -> Self {
        StatusRecord::Timed {
            status,
            at_ms: to_ms(at),
            desk,
        }
    }

    /// When it was set, when the record says.
    pub fn since(self) -> Option<SystemTime> {
        match self {
            StatusRecord::Timed { at_ms, .. } => Some(from_ms(at_ms)),
            StatusRecord::Bare(_) => None,
        }
    }

    /// Whether the Desk sync set it.
    pub fn by_desk(self) -> bool {
        matches!(self, StatusRecord::Timed { desk: true, .. })
    }

    /// The status.
    pub fn status(self) -> AgentStatus {
        match self {
            StatusRecord::Timed { status, .. } | StatusRecord::Bare(status) => status,
        }
    }

    /// When it was set; 0 for a bare one.
    pub fn at_ms(self) -> u64 {
        match self {
            StatusRecord::Timed { at_ms, .. } => at_ms,
            StatusRecord::Bare(_) => 0,
        }
    }
}

/// The JSON text of a record. Records are plain data, so this cannot fail.
pub fn encode(record: &impl Serialize) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// Reads a record back, saying what is wrong with it when it does not read.
pub fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|err| err.to_string())
}

/// Milliseconds since the Unix epoch.
pub fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The instant `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::session::SessionRecord;

    /// What a record written before this module existed looks like (the engine types were
    /// serialized directly then); it must still read.
    const EARLIER_SESSION: &str = r#"{"answer":{"group":6521,"agents":["ann@example.com","bob@example.com"],"reserved":"ann@example.com","rule":"default","strategy":"least_loaded","fallback":false,"reason":"rule \"default\""},"expires_at_ms":1700000000000}"#;
    const EARLIER_CUSTOMER: &str = r#"{"id":"c-1","known":true,"tier":"vip","language":null,"region":null,"tags":["a"],"owner":"ann@example.com","attributes":{"k":"v"}}"#;

    #[test]
    fn records_written_before_keep_reading_and_round_trip() -> Result<(), String> {
        let record: SessionRecord = decode(EARLIER_SESSION.as_bytes())?;
        let record = record.normalized();
        let answer = record.replay().ok_or("an earlier assignment replays")?;
        assert_eq!(answer.strategy, Some(Strategy::LeastLoaded));
        let ann = AgentId::parse("ann@example.com").map_err(|e| e.to_string())?;
        assert_eq!(answer.reserved.as_ref(), Some(&ann));
        assert_eq!(record.held(), Some((ann, false)));
        assert_eq!(record.expires_at_ms, 1_700_000_000_000);
        assert_eq!(Some(AnswerRecord::from(&answer)), record.answer);

        let bare: StatusRecord = decode(br#""away""#)?;
        assert_eq!((bare.status(), bare.at_ms()), (AgentStatus::Away, 0));
        let timed = StatusRecord::Timed {
            status: AgentStatus::Offline,
            at_ms: 5,
            desk: false,
        };
        assert_eq!(encode(&timed), r#"{"status":"offline","at_ms":5}"#);
        let synced = StatusRecord::timed(AgentStatus::Away, from_ms(5), true);
        assert_eq!(decode::<StatusRecord>(encode(&synced).as_bytes())?, synced);
        assert!(synced.by_desk() && !timed.by_desk());
        assert_eq!(decode::<StatusRecord>(encode(&timed).as_bytes())?, timed);

        let customer = Customer::from(decode::<CustomerRecord>(EARLIER_CUSTOMER.as_bytes())?);
        assert_eq!(customer.tier.as_deref(), Some("vip"));
        assert_eq!(encode(&CustomerRecord::from(&customer)), EARLIER_CUSTOMER);
        Ok(())
    }

    #[test]
    fn milliseconds_round_trip() {
        let at = from_ms(1_700_000_000_123);
        assert_eq!(to_ms(at), 1_700_000_000_123);
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
