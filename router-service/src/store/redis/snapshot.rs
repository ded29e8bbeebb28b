//! Reading the scripts' replies: the snapshot of an app's state the engine decides over,
//! and the plain values it is made of.

use std::{collections::HashMap, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId},
};
use redis::Value;

use super::unavailable;
use crate::{
    engine::{AgentLoad, Customer, LiveSession, RosterChanges, StateView},
    store::StoreError,
};

/// One look at an app's state in Redis.
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) loads: HashMap<AgentId, AgentLoad>,
    pub(super) statuses: HashMap<AgentId, AgentStatus>,
    pub(super) changes: RosterChanges,
    pub(super) customer: Option<Customer>,
    pub(super) history: Option<(AgentId, SystemTime)>,
    pub(super) sessions: Vec<LiveSession>,
    customer_id: Option<ClientUserId>,
}

impl Snapshot {
    pub(super) fn for_customer(mut self, customer: &ClientUserId) -> Self {
        self.customer_id = Some(customer.clone());
        self
    }
}

impl StateView for Snapshot {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).copied()
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customer.as_ref().filter(|customer| &customer.id == id)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        if self.customer_id.as_ref() != Some(customer) {
            return None;
        }
        self.history.as_ref().map(|(agent, at)| (agent, *at))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }

    fn sessions(&self) -> Vec<LiveSession> {
        self.sessions.clone()
    }
}

pub(super) fn into_items(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unavailable(format!("unexpected script reply {other:?}"))),
    }
}

pub(super) fn tag(items: &[Value]) -> Result<i64, StoreError> {
    match items.first() {
        Some(Value::Int(tag)) => Ok(*tag),
        other => Err(unavailable(format!("unexpected script tag {other:?}"))),
    }
}

pub(super) fn text(value: Option<&Value>) -> Result<String, StoreError> {
    match value {
        Some(Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).map_err(unavailable),
        Some(Value::SimpleString(text)) => Ok(text.clone()),
        Some(Value::Nil) | None => Ok(String::new()),
        Some(other) => Err(unavailable(format!("unexpected reply {other:?}"))),
    }
}

/// An HGETALL reply as (field, value) pairs.
pub(super) fn pairs(value: Option<&Value>) -> Result<Vec<(String, String)>, StoreError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Map(map)) => {
            return map
                .iter()
                .map(|(k, v)| Ok((text(Some(k))?, text(Some(v))?)))
                .collect();
        }
        _ => return Ok(Vec::new()),
    };
    items
        .chunks(2)
        .map(|pair| Ok((text(pair.first())?, text(pair.get(1))?)))
        .collect()
}
