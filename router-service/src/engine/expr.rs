//! CEL in rules: `when` conditions over the handoff and agent filters over each agent,
//! compiled once when the config loads and evaluated per decision.
//!
//! Variables: `customer` (id, known, tier, language, region, tags, owner, attributes),
//! `session` (id, platform, channel, attributes, event_time), `now` (a timestamp), `clock`
//! (hour, minute, weekday such as `"mon"`, date `"YYYY-MM-DD"`, in the app's time zone), and,
//! in agent filters only, `agent` (id, name, groups, skills, attributes, capacity). Unknown
//! fields are empty strings so that `customer.tier == "vip"` is simply false for a stranger.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use cel::{Context, Env, Program, Value};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::{Customer, Handoff};

/// Variables a `when` condition may use.
const WHEN_VARIABLES: &[&str] = &["customer", "session", "now", "clock"];
/// Variables an agent filter may use.
const FILTER_VARIABLES: &[&str] = &["customer", "session", "now", "clock", "agent"];

/// The CEL standard library, shared by every expression and evaluation.
#[derive(Clone)]
pub struct Cel {
    env: Arc<Env>,
}

impl Default for Cel {
    fn default() -> Self {
        Self {
            env: Arc::new(Env::stdlib()),
        }
    }
}

impl std::fmt::Debug for Cel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cel")
    }
}

/// What an expression is for, which decides the variables it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A rule's `when`.
    When,
    /// A target's agent filter.
    AgentFilter,
}

/// A compiled CEL expression that must yield a bool.
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Cel {
    /// Compiles `source`, refusing syntax errors and variables `kind` does not provide.
    pub fn compile(&self, source: &str, kind: Kind) -> Result<Expression, String> {
        let program = self
            .env
            .compile(source)
            .map_err(|err| format!("CEL does not compile: {}", err.to_string().trim()))?;
        let allowed = match kind {
            Kind::When => WHEN_VARIABLES,
            Kind::AgentFilter => FILTER_VARIABLES,
        };
        let references = program.references();
        if let Some(unknown) = references
            .variables()
            .into_iter()
            .find(|name| !allowed.contains(name))
        {
            return Err(format!(
                "CEL uses unknown variable `{unknown}`; this expression may use {}",
                allowed.join(", ")
            ));
        }
        Ok(Expression {
            source: source.to_owned(),
            program,
        })
    }

    /// The variables of one decision.
    pub fn scope(
        &self,
        handoff: &Handoff,
        customer: &Customer,
        now: SystemTime,
        zone: Tz,
    ) -> Scope {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("customer", customer_value(customer));
        context.add_variable_from_value("session", session_value(handoff));
        let now_utc: DateTime<Utc> = now.into();
        context.add_variable_from_value("now", Value::Timestamp(now_utc.fixed_offset()));
        context.add_variable_from_value("clock", clock_value(now_utc, zone));
        Scope { context }
    }
}

/// The variables of one decision, ready for any number of evaluations.
pub struct Scope {
    context: Context<'static, 'static>,
}

impl Scope {
    /// Evaluates a `when` condition.
    pub fn holds(&self, expression: &Expression) -> Result<bool, String> {
        expect_bool(expression, expression.program.execute(&self.context))
    }

    /// Evaluates an agent filter for the agent whose CEL value is `agent`.
    pub fn admits(&self, expression: &Expression, agent: &Value) -> Result<bool, String> {
        let mut scope = self.context.new_inner_scope();
        scope.add_variable_from_value("agent", agent.clone());
        expect_bool(expression, expression.program.execute(&scope))
    }
}

impl Expression {
    /// The text it was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn expect_bool(
    expression: &Expression,
    result: Result<Value, cel::ExecutionError>,
) -> Result<bool, String> {
    match result {
        Ok(Value::Bool(value)) => Ok(value),
        Ok(other) => Err(format!(
            "`{}` gave {other:?}, not a bool",
            expression.source
        )),
        Err(err) => Err(format!("`{}` failed: {err}", expression.source)),
    }
}

/// The CEL value of an agent's static attributes.
pub fn agent_value(
    id: &str,
    name: Option<&str>,
    groups: &[u64],
    skills: &std::collections::BTreeMap<String, u32>,
    attributes: &std::collections::BTreeMap<String, String>,
    capacity: u32,
) -> Value {
    let skills: HashMap<String, Value> = skills
        .iter()
        .map(|(skill, level)| (skill.clone(), Value::Int(i64::from(*level))))
        .collect();
    let groups: Vec<Value> = groups
        .iter()
        .map(|group| Value::Int(i64::try_from(*group).unwrap_or(i64::MAX)))
        .collect();
    let fields: HashMap<&str, Value> = HashMap::from([
        ("id", Value::from(id)),
        ("name", Value::from(name.unwrap_or_default())),
        ("groups", Value::from(groups)),
        ("skills", Value::from(skills)),
        ("attributes", text_map(attributes)),
        ("capacity", Value::Int(i64::from(capacity))),
    ]);
    Value::from(fields)
}

fn customer_value(customer: &Customer) -> Value {
    let text = |value: &Option<String>| Value::from(value.clone().unwrap_or_default());
    let tags: Vec<Value> = customer
        .tags
        .iter()
        .map(|tag| Value::from(tag.as_str()))
        .collect();
    let fields: HashMap<&str, Value> = HashMap::from([
        ("id", Value::from(customer.id.as_str())),
        ("known", Value::Bool(customer.known)),
        ("tier", text(&customer.tier)),
        ("language", text(&customer.language)),
        ("region", text(&customer.region)),
        ("tags", Value::from(tags)),
        (
            "owner",
            Value::from(
                customer
                    .owner
                    .as_ref()
                    .map(|o| o.as_str())
                    .unwrap_or_default(),
            ),
        ),
        ("attributes", text_map(&customer.attributes)),
    ]);
    Value::from(fields)
}

fn session_value(handoff: &Handoff) -> Value {
    let event_time: DateTime<Utc> = handoff.event_time.into();
    let fields: HashMap<&str, Value> = HashMap::from([
        ("id", Value::from(handoff.session.as_str())),
        ("platform", Value::from(handoff.platform.as_str())),
        ("channel", Value::from(handoff.channel.as_str())),
        ("attributes", text_map(&handoff.attributes)),
        ("event_time", Value::Timestamp(event_time.fixed_offset())),
    ]);
    Value::from(fields)
}

fn clock_value(now: DateTime<Utc>, zone: Tz) -> Value {
    let local = now.with_timezone(&zone);
    let weekday = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [local.weekday().num_days_from_monday() as usize];
    let fields: HashMap<&str, Value> = HashMap::from([
        ("hour", Value::Int(i64::from(local.hour()))),
        ("minute", Value::Int(i64::from(local.minute()))),
        ("weekday", Value::from(weekday)),
        ("date", Value::from(local.format("%Y-%m-%d").to_string())),
        ("zone", Value::from(zone.name())),
    ]);
    Value::from(fields)
}

fn text_map(map: &std::collections::BTreeMap<String, String>) -> Value {
    let entries: HashMap<String, Value> = map
        .iter()
        .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
        .collect();
    Value::from(entries)
}
