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

/// A live assignment: the answer a retry of the same session replays, and when the seat it
/// holds is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    /// The answer given.
    pub answer: AnswerRecord,
    /// When the assignment expires, Unix milliseconds.
    pub expires_at_ms: u64,
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
        }
    }
}

/// A customer's previous agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The agent last assigned to the customer.
    pub agent: AgentId,
    /// When, Unix milliseconds.
    pub at_ms: u64,
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
            attributes: customer.attributes.clone(),
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
            attributes: record.attributes,
        }
    }
}

/// A run-time roster change: an agent's definition (in the config file's shape, which is
/// documented and versioned with it), or `None` when the agent was removed.
pub type RosterRecord = Option<AgentConfig>;

/// A live status is stored as the config file spells it (`"away"`).
pub type StatusRecord = AgentStatus;

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

    /// What a record written before this module existed looks like (the engine types were
    /// serialized directly then); it must still read.
    const EARLIER_ASSIGNMENT: &str = r#"{"answer":{"group":6521,"agents":["ann@example.com","bob@example.com"],"reserved":"ann@example.com","rule":"default","strategy":"least_loaded","fallback":false,"reason":"rule \"default\""},"expires_at_ms":1700000000000}"#;
    const EARLIER_CUSTOMER: &str = r#"{"id":"c-1","known":true,"tier":"vip","language":null,"region":null,"tags":["a"],"owner":"ann@example.com","attributes":{"k":"v"}}"#;

    #[test]
    fn records_written_before_keep_reading_and_round_trip() -> Result<(), String> {
        let record: AssignmentRecord = decode(EARLIER_ASSIGNMENT.as_bytes())?;
        let answer = Answer::from(record.answer.clone());
        assert_eq!(answer.strategy, Some(Strategy::LeastLoaded));
        assert_eq!(
            answer.reserved.as_ref().map(AgentId::as_str),
            Some("ann@example.com")
        );
        assert_eq!(encode(&record), EARLIER_ASSIGNMENT);
        assert_eq!(AnswerRecord::from(&answer), record.answer);

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
