//! What Desk's answers hold, read with serde: the rows of its listings and its live
//! figures, as [`DeskClient`](super::DeskClient) returns them.
//!
//! Desk's examples are loose with types (ids as numbers or as numeric strings, flags as
//! `0`/`1`), so every field is read leniently: missing or `null`, it is its default; a
//! number where a string of one was expected, or the other way round, is accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A member group (`MemberGroupList[]` of `get_member_group_list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DeskGroup {
    /// `MemberGroupID`.
    #[serde(rename = "MemberGroupID", deserialize_with = "number")]
    pub id: u64,
    /// `MemberGroupName`.
    #[serde(rename = "MemberGroupName", deserialize_with = "nullable")]
    pub name: String,
    /// `ReceptionLimit`: sessions each member of the group may take at once.
    #[serde(rename = "ReceptionLimit", deserialize_with = "number")]
    pub reception_limit: u32,
}

/// A member, an agent of the Desk console (`MemberList[]` of `get_member_list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DeskMember {
    /// `MemberMail`, as Desk gives it: the agent's id everywhere in Desk.
    #[serde(rename = "MemberMail", deserialize_with = "nullable")]
    pub mail: String,
    /// `NickName`.
    #[serde(rename = "NickName", deserialize_with = "nullable")]
    pub nick_name: String,
    /// `MemberGroupIDList`: the groups the member is in.
    #[serde(rename = "MemberGroupIDList", deserialize_with = "numbers")]
    pub groups: Vec<u64>,
    /// `EffectiveReceptionLimit`: the sessions the member may take at once, after Desk
    /// chose between the member's own limit and its groups' largest.
    #[serde(rename = "EffectiveReceptionLimit", deserialize_with = "number")]
    pub effective_limit: u32,
    /// `RoleIDList` (1 super admin, 5 agent, 7 online admin).
    #[serde(rename = "RoleIDList", deserialize_with = "numbers")]
    pub roles: Vec<u64>,
}

/// A member's live state (`Data[]` of `describe_member_realtime_statistics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MemberLive {
    /// `MemberId`: the member's mail.
    #[serde(rename = "MemberId", deserialize_with = "nullable")]
    pub mail: String,
    /// `MemberStatus`, Desk's integer code; what each means is not documented, so config
    /// maps it.
    #[serde(rename = "MemberStatus", deserialize_with = "signed")]
    pub status: i64,
    /// `CurrentAcceptCnt`: the sessions the member serves now.
    #[serde(rename = "CurrentAcceptCnt", deserialize_with = "number")]
    pub serving: u32,
}

/// The floor's load now (`Data` of `describe_reception_realtime_statistics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Reception {
    /// `CurrentQueueCnt`: sessions queued.
    #[serde(rename = "CurrentQueueCnt", deserialize_with = "number")]
    pub queued: u32,
    /// `CurrentTransferAgentCnt`: sessions being transferred to a human.
    #[serde(rename = "CurrentTransferAgentCnt", deserialize_with = "number")]
    pub transferring: u32,
    /// `CurrentAgentAcceptCnt`: sessions a human serves.
    #[serde(rename = "CurrentAgentAcceptCnt", deserialize_with = "number")]
    pub serving: u32,
    /// `FreeAgentCnt`: members available.
    #[serde(rename = "FreeAgentCnt", deserialize_with = "number")]
    pub free_agents: u32,
    /// `RestAgentCnt`: members on a break.
    #[serde(rename = "RestAgentCnt", deserialize_with = "number")]
    pub rest_agents: u32,
    /// `BusyAgentCnt`: members busy.
    #[serde(rename = "BusyAgentCnt", deserialize_with = "number")]
    pub busy_agents: u32,
    /// `CurrentGroupQueueCnt[]` as (`GroupId`, `QueueCnt`): sessions queued per group.
    #[serde(rename = "CurrentGroupQueueCnt", deserialize_with = "group_queues")]
    pub queued_by_group: Vec<(u64, u32)>,
}

/// Desk's working hours (`WorkTimeConfig` of a conversation setting).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkTime {
    /// The setting's `Name`.
    pub setting: String,
    /// `Type`; its meaning is not documented (Tencent's example sends 1).
    pub kind: i64,
    /// `Periods[]`: each day (`"Monday"`) with its periods (`"09:00"`, `"11:30"`), as Desk
    /// wrote them; the time zone is Desk's console's, which the answer does not say.
    pub days: Vec<(String, Vec<(String, String)>)>,
}

/// A conversation setting, with only what [`DeskClient::work_time`](super::DeskClient::work_time) needs.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Setting {
    #[serde(rename = "ConversationSettingId", deserialize_with = "number")]
    pub(super) id: u64,
    #[serde(rename = "Name", deserialize_with = "nullable")]
    name: String,
    #[serde(rename = "IsDefault", deserialize_with = "flag")]
    is_default: bool,
    /// Keyed by language (`"zh"`); a `BTreeMap`, so the order is alphabetical.
    #[serde(rename = "MultilingualSettings", deserialize_with = "nullable")]
    languages: BTreeMap<String, Language>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Language {
    #[serde(rename = "WorkTimeConfig")]
    work_time: Option<WorkTimeConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WorkTimeConfig {
    #[serde(rename = "Type", deserialize_with = "signed")]
    kind: i64,
    #[serde(rename = "Periods", deserialize_with = "nullable")]
    periods: Vec<Day>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Day {
    #[serde(rename = "Day", deserialize_with = "nullable")]
    day: String,
    #[serde(rename = "PeriodsWithinOneDay", deserialize_with = "nullable")]
    periods: Vec<Period>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Period {
    #[serde(rename = "Start", deserialize_with = "nullable")]
    start: String,
    #[serde(rename = "End", deserialize_with = "nullable")]
    end: String,
}

/// The working hours of the default setting of `settings`, else of the first.
pub(super) fn default_work_time(settings: Vec<Setting>) -> Option<WorkTime> {
    let chosen = match settings.iter().position(|s| s.is_default) {
        Some(at) => settings.into_iter().nth(at),
        None => settings.into_iter().next(),
    }?;
    let config = chosen.languages.into_values().find_map(|l| l.work_time)?;
    Some(WorkTime {
        setting: chosen.name,
        kind: config.kind,
        days: config
            .periods
            .into_iter()
            .map(|day| {
                let periods = day.periods.into_iter().map(|p| (p.start, p.end)).collect();
                (day.day, periods)
            })
            .collect(),
    })
}

/// A count Desk sent as a number or a numeric string.
pub(super) fn count(value: &Value) -> Option<u64> {
    unsigned(value).ok().flatten()
}

/// `value` as a whole number ≥ 0: a JSON number, or a string of one; `None` for `null`
/// or an empty string.
fn unsigned(value: &Value) -> Result<Option<u64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{n} is not a whole number ≥ 0")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{s:?} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

/// A field that may be `null`, read as its default then.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// An unsigned number, or a string of one; 0 for `null`.
fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + Default,
{
    use serde::de::Error;
    let value = Value::deserialize(d)?;
    match unsigned(&value).map_err(D::Error::custom)? {
        None => Ok(T::default()),
        Some(n) => T::try_from(n).map_err(|_| D::Error::custom(format!("{n} is too large"))),
    }
}

/// A list of [`number`]s; empty for `null`.
fn numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    use serde::de::Error;
    let values: Vec<Value> = nullable(d)?;
    values
        .iter()
        .map(|v| unsigned(v).map(Option::unwrap_or_default))
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

/// A signed number, or a string of one; 0 for `null`.
fn signed<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not an integer"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not an integer"))),
        other => Err(D::Error::custom(format!("{other} is not an integer"))),
    }
}

/// A flag sent as `true`/`false`, `1`/`0` or `"1"`/`"0"`; false for `null`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        value => unsigned(&value)
            .map(|n| n.unwrap_or_default() != 0)
            .map_err(D::Error::custom),
    }
}

/// `CurrentGroupQueueCnt[]` as (`GroupId`, `QueueCnt`) pairs.
fn group_queues<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u64, u32)>, D::Error> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct GroupQueue {
        #[serde(rename = "GroupId", deserialize_with = "number")]
        group: u64,
        #[serde(rename = "QueueCnt", deserialize_with = "number")]
        queued: u32,
    }
    let queues: Vec<GroupQueue> = nullable(d)?;
    Ok(queues.into_iter().map(|q| (q.group, q.queued)).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_come_as_numbers_or_numeric_strings_and_missing_fields_are_defaults() {
        let member: DeskMember = serde_json::from_value(json!({
            "MemberMail": "ann@example.com",
            "MemberGroupIDList": ["101", 102],
            "EffectiveReceptionLimit": "3",
            "RoleIDList": null
        }))
        .unwrap();
        assert_eq!(
            member,
            DeskMember {
                mail: "ann@example.com".into(),
                nick_name: String::new(),
                groups: vec![101, 102],
                effective_limit: 3,
                roles: vec![],
            }
        );
        let group: DeskGroup = serde_json::from_value(json!({"MemberGroupID": "7"})).unwrap();
        assert_eq!(group.id, 7);
        assert!(serde_json::from_value::<DeskGroup>(json!({"MemberGroupID": "seven"})).is_err());
        assert!(
            serde_json::from_value::<DeskGroup>(json!({"ReceptionLimit": 5_000_000_000u64}))
                .is_err()
        );
    }
}
