//! CEL in rules: `when` conditions over the handoff and agent filters over each agent,
//! compiled once when the config loads and evaluated per decision.
//!
//! Variables: `customer` (id, known, tier, language, region, tags, owner, attributes),
//! `session` (id, platform, channel, attributes, event_time), `now` (a timestamp), `clock`
//! (hour, minute, weekday such as `"mon"`, date `"YYYY-MM-DD"`, in the app's time zone), and,
//! in agent filters only, `agent` (id, name, groups, skills, attributes, capacity). Unknown
//! fields are empty strings so that `customer.tier == "vip"` is simply false for a stranger.

mod direct;
#[cfg(test)]
mod direct_tests;
mod values;

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use cel::{
    Context, Env, Program, Value,
    common::value::{CowVal, Val},
    context::VariableResolver,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use super::{Customer, Handoff};
use direct::{Check, Clocked, Data};

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
    agent_only: bool,
    /// The expression as a direct check, when it is made of plain comparisons only.
    direct: Option<Check>,
}

impl Expression {
    /// Whether the expression reads `agent` and nothing else, so that its verdict on an
    /// agent is the same in every decision.
    pub fn agent_only(&self) -> bool {
        self.agent_only
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// What a field of the variables holds, for spotting comparisons that can never be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Text,
    Number,
}

/// What the field at `expr` (`customer.tier`, `agent.attributes.x`, `clock.hour`, ...)
/// holds, when it is one of the variables' known fields.
fn field_kind(expr: &cel::IdedExpr) -> Option<Holds> {
    let parts = direct::path(expr)?;
    match parts.as_slice() {
        ["customer", "id" | "tier" | "language" | "region" | "owner"]
        | ["session", "id" | "platform" | "channel"]
        | ["agent", "id" | "name"]
        | ["clock", "weekday" | "date"]
        | ["customer" | "session" | "agent", "attributes", _] => Some(Holds::Text),
        ["clock", "hour" | "minute"] | ["agent", "capacity"] | ["agent", "skills", _] => {
            Some(Holds::Number)
        }
        _ => None,
    }
}

/// What a literal is.
fn literal_kind(expr: &cel::IdedExpr) -> Option<Holds> {
    use cel::common::ast::{Expr, LiteralValue};
    match &expr.expr {
        Expr::Literal(LiteralValue::String(_)) => Some(Holds::Text),
        Expr::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_)) => {
            Some(Holds::Number)
        }
        _ => None,
    }
}

/// The first `==` or `!=` in `expr` that compares a known field with a literal of another
/// kind (`customer.tier == 3`): CEL says such values are simply unequal, so it never holds.
fn mismatched_comparison(expr: &cel::IdedExpr) -> Option<String> {
    use cel::common::ast::Expr;
    match &expr.expr {
        Expr::Call(call) => {
            if (call.func_name == "_==_" || call.func_name == "_!=_") && call.args.len() == 2 {
                let (left, right) = (&call.args[0], &call.args[1]);
                let kinds = [
                    (field_kind(left), literal_kind(right)),
                    (field_kind(right), literal_kind(left)),
                ];
                if let Some((field, literal)) = kinds
                    .into_iter()
                    .find_map(|(field, literal)| Some((field?, literal?)))
                    .filter(|(field, literal)| field != literal)
                {
                    let (field, literal) = match (field, literal) {
                        (Holds::Text, _) => ("text", "a number"),
                        (Holds::Number, _) => ("a number", "text"),
                    };
                    return Some(format!(
                        "compares {field} with {literal}: they are never equal"
                    ));
                }
            }
            call.target
                .iter()
                .map(|target| &**target)
                .chain(call.args.iter())
                .find_map(mismatched_comparison)
        }
        _ => None,
    }
}

impl Expression {
    /// Why the expression can never hold whatever the data, if it cannot (a comparison of
    /// a text field with a number, or the other way round).
    pub fn never_equal(&self) -> Option<String> {
        mismatched_comparison(self.program.expression())
            .map(|why| format!("`{}` {why}", self.source))
    }
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
        let agent_only = references
            .variables()
            .into_iter()
            .all(|name| name == "agent");
        let direct = Check::compile(program.expression());
        Ok(Expression {
            source: source.to_owned(),
            program,
            agent_only,
            direct,
        })
    }

    /// Evaluates an agent filter that reads nothing but `agent` ([`Expression::agent_only`]),
    /// outside any decision: its verdict on an agent holds until the config changes.
    pub fn admits_agent(
        &self,
        expression: &Expression,
        agent: &AgentValue,
    ) -> Result<bool, String> {
        let data = Data {
            customer: None,
            handoff: None,
            clock: None,
            agent: Some(&agent.0),
        };
        if let Some(verdict) = decided(expression, &data) {
            return Ok(verdict);
        }
        let lender = AgentLender(agent.cel());
        let mut context = Context::with_env(self.env.clone());
        context.set_variable_resolver(&lender);
        expect_bool(expression, expression.program.execute(&context))
    }

    /// The variables of one decision; each is built the first time an expression reads it.
    pub fn scope<'a>(
        &self,
        handoff: &'a Handoff,
        customer: &'a Customer,
        now: SystemTime,
        zone: Tz,
    ) -> Scope<'a> {
        Scope {
            env: self.env.clone(),
            handoff,
            customer,
            now,
            zone,
            clock: OnceLock::new(),
            customer_value: OnceLock::new(),
            session_value: OnceLock::new(),
            now_value: OnceLock::new(),
            clock_value: OnceLock::new(),
        }
    }
}

/// A direct check's verdict, when `expression` has one and it decides on `data`.
fn decided(expression: &Expression, data: &Data<'_>) -> Option<bool> {
    expression.direct.as_ref()?.eval(data).ok()
}

/// The variables of one decision, ready for any number of evaluations.
pub struct Scope<'a> {
    env: Arc<Env>,
    handoff: &'a Handoff,
    customer: &'a Customer,
    now: SystemTime,
    zone: Tz,
    clock: OnceLock<Clock>,
    customer_value: OnceLock<Box<dyn Val + 'a>>,
    session_value: OnceLock<Box<dyn Val + 'a>>,
    now_value: OnceLock<Box<dyn Val + 'a>>,
    clock_value: OnceLock<Box<dyn Val + 'a>>,
}

/// The time of a decision as `clock` gives it, in the app's zone.
#[derive(Debug)]
struct Clock {
    local: DateTime<Tz>,
    /// `YYYY-MM-DD`, formatted the first time it is read.
    date: OnceLock<String>,
}

impl Clock {
    fn at(now: SystemTime, zone: Tz) -> Self {
        Clock {
            local: DateTime::<Utc>::from(now).with_timezone(&zone),
            date: OnceLock::new(),
        }
    }

    fn hour(&self) -> i64 {
        i64::from(self.local.hour())
    }

    fn minute(&self) -> i64 {
        i64::from(self.local.minute())
    }

    /// `"mon"` to `"sun"`.
    fn weekday(&self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            [self.local.weekday().num_days_from_monday() as usize]
    }

    fn date(&self) -> &str {
        self.date
            .get_or_init(|| self.local.format("%Y-%m-%d").to_string())
    }

    /// The zone's IANA name.
    fn zone(&self) -> &'static str {
        self.local.timezone().name()
    }
}

impl Scope<'_> {
    /// Evaluates a `when` condition.
    pub fn holds(&self, expression: &Expression) -> Result<bool, String> {
        if let Some(verdict) = decided(expression, &self.data(None)) {
            return Ok(verdict);
        }
        expect_bool(expression, self.run(expression, None))
    }

    /// Evaluates an agent filter for `agent`.
    pub fn admits(&self, expression: &Expression, agent: &AgentValue) -> Result<bool, String> {
        if let Some(verdict) = decided(expression, &self.data(Some(agent))) {
            return Ok(verdict);
        }
        expect_bool(expression, self.run(expression, Some(agent)))
    }

    /// This decision's data as direct checks read it.
    fn data<'s>(&'s self, agent: Option<&'s AgentValue>) -> Data<'s> {
        Data {
            customer: Some(self.customer),
            handoff: Some(self.handoff),
            clock: Some(self),
            agent: agent.map(|agent| &*agent.0),
        }
    }

    /// Whether a `when` can decide here: a bool, or a failure only on a map key this data
    /// lacks (other data may have it); a type error, another value, or a comparison that
    /// is never true whatever the data ([`Expression::never_equal`]) is what is wrong.
    pub fn lint_when(&self, expression: &Expression) -> Result<(), String> {
        lint(expression, || self.run(expression, None))
    }

    /// [`Scope::lint_when`] for an agent filter and `agent`.
    pub fn lint_filter(&self, expression: &Expression, agent: &AgentValue) -> Result<(), String> {
        lint(expression, || self.run(expression, Some(agent)))
    }

    /// Runs `expression` over this decision's variables and, for an agent filter, `agent`.
    fn run(
        &self,
        expression: &Expression,
        agent: Option<&AgentValue>,
    ) -> Result<Value, cel::ExecutionError> {
        let mut context = Context::with_env(self.env.clone());
        context.set_variable_resolver(self);
        match agent {
            None => expression.program.execute(&context),
            Some(agent) => {
                let lender = AgentLender(agent.cel());
                let mut scope = context.new_inner_scope();
                scope.set_variable_resolver(&lender);
                expression.program.execute(&scope)
            }
        }
    }
}

impl direct::Clocked for Scope<'_> {
    fn clock(&self) -> &Clock {
        self.clock.get_or_init(|| Clock::at(self.now, self.zone))
    }
}

fn lint(
    expression: &Expression,
    run: impl FnOnce() -> Result<Value, cel::ExecutionError>,
) -> Result<(), String> {
    if let Some(why) = expression.never_equal() {
        return Err(why);
    }
    match run() {
        Err(cel::ExecutionError::NoSuchKey(_)) => Ok(()),
        other => expect_bool(expression, other).map(drop),
    }
}

impl VariableResolver for Scope<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value: &dyn Val = match variable {
            "customer" => &**self
                .customer_value
                .get_or_init(|| values::customer(self.customer)),
            "session" => &**self
                .session_value
                .get_or_init(|| values::session(self.handoff)),
            "now" => &**self.now_value.get_or_init(|| values::timestamp(self.now)),
            "clock" => &**self.clock_value.get_or_init(|| values::clock(self.clock())),
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
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

/// An agent as filters see it: its fields, which direct checks read, and its CEL value,
/// built the first time CEL itself reads the agent and lent (not copied) to every
/// evaluation after.
#[derive(Clone)]
pub struct AgentValue(Arc<AgentData>);

/// An agent's fields as filters see them.
struct AgentData {
    id: String,
    name: String,
    groups: Vec<u64>,
    skills: BTreeMap<String, u32>,
    attributes: BTreeMap<String, String>,
    capacity: u32,
    cel: OnceLock<Box<dyn Val>>,
}

impl AgentValue {
    fn cel(&self) -> &dyn Val {
        &**self.0.cel.get_or_init(|| values::agent(&self.0))
    }
}

impl std::fmt::Debug for AgentValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentValue")
    }
}

/// Lends `agent` to one evaluation.
struct AgentLender<'a>(&'a dyn Val);

impl VariableResolver for AgentLender<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == "agent").then_some(CowVal::Borrowed(self.0))
    }
}

/// An agent's static attributes, as filters see them.
pub fn agent_value(
    id: &str,
    name: Option<&str>,
    groups: &[u64],
    skills: &BTreeMap<String, u32>,
    attributes: &BTreeMap<String, String>,
    capacity: u32,
) -> AgentValue {
    AgentValue(Arc::new(AgentData {
        id: id.to_owned(),
        name: name.unwrap_or_default().to_owned(),
        groups: groups.to_vec(),
        skills: skills.clone(),
        attributes: attributes.clone(),
        capacity,
        cel: OnceLock::new(),
    }))
}
