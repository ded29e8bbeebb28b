//! The variables in CEL's runtime form, built directly (no `cel::Value` converted after),
//! borrowing the decision's strings where they lie.

use std::{collections::HashMap, time::SystemTime};

use cel::common::{
    types::{CelBool, CelInt, CelList, CelMap, CelMapKey, CelString, CelTimestamp},
    value::Val,
};
use chrono::{DateTime, Utc};

use super::{AgentData, Clock};
use crate::engine::{Customer, Handoff};

type Boxed<'a> = Box<dyn Val + 'a>;

fn text(value: &str) -> Boxed<'_> {
    Box::new(CelString::from(value))
}

fn int(value: i64) -> Boxed<'static> {
    Box::new(CelInt::from(value))
}

fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Boxed<'a>)>) -> Boxed<'a> {
    let entries: HashMap<CelMapKey<'a>, Boxed<'a>> = entries
        .into_iter()
        .map(|(key, value)| (CelMapKey::from(key), value))
        .collect();
    Box::new(CelMap::from(entries))
}

fn text_map<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Boxed<'a> {
    map(entries
        .into_iter()
        .map(|(key, value)| (key.as_str(), text(value))))
}

pub fn timestamp(time: SystemTime) -> Boxed<'static> {
    Box::new(CelTimestamp::from(
        DateTime::<Utc>::from(time).fixed_offset(),
    ))
}

pub fn customer(customer: &Customer) -> Boxed<'_> {
    fn optional(value: &Option<String>) -> Boxed<'_> {
        text(value.as_deref().unwrap_or_default())
    }
    let tags: Vec<Boxed<'_>> = customer.tags.iter().map(|tag| text(tag)).collect();
    map([
        ("id", text(customer.id.as_str())),
        (
            "known",
            Box::new(CelBool::from(customer.known)) as Boxed<'_>,
        ),
        ("tier", optional(&customer.tier)),
        ("language", optional(&customer.language)),
        ("region", optional(&customer.region)),
        ("tags", Box::new(CelList::from(tags))),
        (
            "owner",
            text(customer.owner.as_ref().map_or("", |owner| owner.as_str())),
        ),
        (
            "attributes",
            text_map(customer.attributes.iter().map(|(key, value)| (key, value))),
        ),
    ])
}

pub fn session(handoff: &Handoff) -> Boxed<'_> {
    map([
        ("id", text(handoff.session.as_str())),
        ("platform", text(&handoff.platform)),
        ("channel", text(&handoff.channel)),
        ("attributes", text_map(&handoff.attributes)),
        ("event_time", timestamp(handoff.event_time)),
    ])
}

pub fn clock(clock: &Clock) -> Boxed<'static> {
    map([
        ("hour", int(clock.hour())),
        ("minute", int(clock.minute())),
        ("weekday", text(clock.weekday())),
        (
            "date",
            Box::new(CelString::from(clock.date().to_owned())) as Boxed<'static>,
        ),
        ("zone", text(clock.zone())),
    ])
}

/// The agent's value, owning its strings: it is built once and kept beside the agent.
pub fn agent(agent: &AgentData) -> Boxed<'static> {
    let owned = |value: &str| -> Boxed<'static> { Box::new(CelString::from(value.to_owned())) };
    let owned_map = |entries: Vec<(String, Boxed<'static>)>| -> Boxed<'static> {
        let entries: HashMap<CelMapKey<'static>, Boxed<'static>> = entries
            .into_iter()
            .map(|(key, value)| (CelMapKey::from(key), value))
            .collect();
        Box::new(CelMap::from(entries))
    };
    let skills = agent
        .skills
        .iter()
        .map(|(skill, level)| (skill.clone(), int(i64::from(*level))))
        .collect();
    let attributes = agent
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), owned(value)))
        .collect();
    let groups: Vec<Boxed<'static>> = agent
        .groups
        .iter()
        .map(|group| int(i64::try_from(*group).unwrap_or(i64::MAX)))
        .collect();
    owned_map(vec![
        ("id".to_owned(), owned(&agent.id)),
        ("name".to_owned(), owned(&agent.name)),
        ("groups".to_owned(), Box::new(CelList::from(groups))),
        ("skills".to_owned(), owned_map(skills)),
        ("attributes".to_owned(), owned_map(attributes)),
        ("capacity".to_owned(), int(i64::from(agent.capacity))),
    ])
}
