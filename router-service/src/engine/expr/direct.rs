//! The plain forms of CEL the example rules are made of (`customer.tier == "vip"`,
//! `"topic" in session.attributes`, `clock.hour >= 22`, `agent.skills["billing"] >= 3`, joined
//! by `&&`, `||` and `!`) compiled to checks that read the decision's data where it lies,
//! with no CEL value built: what a `when` that does not match costs is then a string
//! comparison.
//!
//! A check gives CEL's answer whenever CEL gives a bool (`&&` and `||` absorb an error
//! beside a deciding operand, as CEL's do). Where CEL would fail (a map key the data lacks)
//! the check says only that it failed, and the expression is run by CEL, so the error is
//! CEL's own. Anything else (functions, macros, arithmetic, a number compared with a
//! double) is not compiled and CEL runs it. `direct_tests.rs` holds the two to each other on
//! random expressions and data.

use cel::{
    IdedExpr,
    common::ast::{Expr, LiteralValue, operators},
};

use super::{AgentData, Clock};
use crate::engine::{Customer, Handoff};

/// A compiled check.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `true` or `false`.
    Literal(bool),
    /// `customer.known`.
    Known,
    /// `!check`.
    Not(Box<Check>),
    /// `left && right`.
    And(Box<Check>, Box<Check>),
    /// `left || right`.
    Or(Box<Check>, Box<Check>),
    /// `text == "literal"` (or `!=` when `equal` is false).
    TextEquals {
        text: Text,
        literal: String,
        equal: bool,
    },
    /// `text in ["a", "b"]`.
    TextIn { text: Text, literals: Vec<String> },
    /// `number <op> literal`, both ints.
    Compare {
        number: Number,
        op: Op,
        literal: i64,
    },
    /// `"key" in customer.attributes` (session's, agent's), or `has(customer.attributes.key)`.
    HasAttribute { of: Variable, key: String },
    /// `"skill" in agent.skills`, or `has(agent.skills.skill)`.
    HasSkill(String),
    /// `"tag" in customer.tags`.
    Tagged(String),
    /// `6521 in agent.groups`.
    InGroup(i64),
}

/// The variables whose fields a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    Customer,
    Session,
    Agent,
}

/// A text field.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    CustomerId,
    CustomerTier,
    CustomerLanguage,
    CustomerRegion,
    CustomerOwner,
    SessionId,
    SessionPlatform,
    SessionChannel,
    AgentId,
    AgentName,
    ClockWeekday,
    ClockDate,
    ClockZone,
    /// `customer.attributes.key` (session's, agent's): fails without the key.
    Attribute(Variable, String),
}

/// An int field.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    ClockHour,
    ClockMinute,
    AgentCapacity,
    /// `agent.skills.skill`: fails without the skill.
    Skill(String),
}

/// An int comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn of(function: &str) -> Option<Op> {
        Some(match function {
            operators::EQUALS => Op::Eq,
            operators::NOT_EQUALS => Op::Ne,
            operators::LESS => Op::Lt,
            operators::LESS_EQUALS => Op::Le,
            operators::GREATER => Op::Gt,
            operators::GREATER_EQUALS => Op::Ge,
            _ => return None,
        })
    }

    /// The same comparison with its operands swapped: `3 < x` is `x > 3`.
    fn swapped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            same => same,
        }
    }

    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }
}

/// What a check reads: the decision's data, each part there only when the expression may
/// use it (an agent-only filter judged outside any decision has only the agent).
pub struct Data<'a> {
    pub customer: Option<&'a Customer>,
    pub handoff: Option<&'a Handoff>,
    pub clock: Option<&'a dyn Clocked>,
    pub agent: Option<&'a AgentData>,
}

/// Gives a decision's clock, worked out when first read.
pub trait Clocked {
    fn clock(&self) -> &Clock;
}

/// The check failed where CEL fails (a missing key), or lacked its data: CEL decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

impl Check {
    /// Compiles `expr`, when it is made only of the forms this module knows.
    pub fn compile(expr: &IdedExpr) -> Option<Check> {
        match &expr.expr {
            Expr::Literal(LiteralValue::Boolean(value)) => Some(Check::Literal(*value.inner())),
            Expr::Select(select) if select.test => {
                let (variable, field, key) = path(&select.operand)?
                    .into_iter()
                    .chain([select.field.as_str()])
                    .collect::<Vec<_>>()
                    .try_into()
                    .ok()
                    .map(|[variable, field, key]: [&str; 3]| (variable, field, key))?;
                membership(variable, field, key)
            }
            Expr::Call(call) if call.target.is_none() => {
                let args = &call.args;
                match (call.func_name.as_str(), args.as_slice()) {
                    (operators::LOGICAL_AND, [left, right]) => Some(Check::And(
                        Box::new(Check::compile(left)?),
                        Box::new(Check::compile(right)?),
                    )),
                    (operators::LOGICAL_OR, [left, right]) => Some(Check::Or(
                        Box::new(Check::compile(left)?),
                        Box::new(Check::compile(right)?),
                    )),
                    (operators::LOGICAL_NOT, [operand]) => {
                        Some(Check::Not(Box::new(Check::compile(operand)?)))
                    }
                    (operators::IN, [element, container]) => contains(element, container),
                    (function, [left, right]) => {
                        let op = Op::of(function)?;
                        comparison(left, op, right)
                            .or_else(|| comparison(right, op.swapped(), left))
                    }
                    _ => None,
                }
            }
            _ => match path(expr)?.as_slice() {
                ["customer", "known"] => Some(Check::Known),
                _ => None,
            },
        }
    }

    /// The check's verdict on `data`, or [`Undecided`] where CEL must decide.
    pub fn eval(&self, data: &Data<'_>) -> Result<bool, Undecided> {
        match self {
            Check::Literal(value) => Ok(*value),
            Check::Known => Ok(data.customer.ok_or(Undecided)?.known),
            Check::Not(check) => check.eval(data).map(|value| !value),
            // CEL's `&&` and `||`: a deciding operand wins over an error beside it.
            Check::And(left, right) => match (left.eval(data), right.eval(data)) {
                (Ok(false), _) | (_, Ok(false)) => Ok(false),
                (Ok(true), Ok(true)) => Ok(true),
                _ => Err(Undecided),
            },
            Check::Or(left, right) => match left.eval(data) {
                Ok(true) => Ok(true),
                left => match (left, right.eval(data)) {
                    (_, Ok(true)) => Ok(true),
                    (Ok(false), Ok(false)) => Ok(false),
                    _ => Err(Undecided),
                },
            },
            Check::TextEquals {
                text,
                literal,
                equal,
            } => Ok((text.read(data)? == literal) == *equal),
            Check::TextIn { text, literals } => {
                let value = text.read(data)?;
                Ok(literals.iter().any(|literal| literal == value))
            }
            Check::Compare {
                number,
                op,
                literal,
            } => Ok(op.holds(number.read(data)?, *literal)),
            Check::HasAttribute { of, key } => Ok(match of {
                Variable::Customer => {
                    let customer = data.customer.ok_or(Undecided)?;
                    attribute(&customer.attributes, key).is_some()
                }
                Variable::Session => data.handoff.ok_or(Undecided)?.attributes.contains_key(key),
                Variable::Agent => data.agent.ok_or(Undecided)?.attributes.contains_key(key),
            }),
            Check::HasSkill(skill) => Ok(data.agent.ok_or(Undecided)?.skills.contains_key(skill)),
            Check::Tagged(tag) => Ok(data
                .customer
                .ok_or(Undecided)?
                .tags
                .iter()
                .any(|each| each == tag)),
            Check::InGroup(group) => Ok(data
                .agent
                .ok_or(Undecided)?
                .groups
                .iter()
                .any(|each| i64::try_from(*each).unwrap_or(i64::MAX) == *group)),
        }
    }
}

impl Text {
    fn of(path: &[&str]) -> Option<Text> {
        Some(match path {
            ["customer", "id"] => Text::CustomerId,
            ["customer", "tier"] => Text::CustomerTier,
            ["customer", "language"] => Text::CustomerLanguage,
            ["customer", "region"] => Text::CustomerRegion,
            ["customer", "owner"] => Text::CustomerOwner,
            ["session", "id"] => Text::SessionId,
            ["session", "platform"] => Text::SessionPlatform,
            ["session", "channel"] => Text::SessionChannel,
            ["agent", "id"] => Text::AgentId,
            ["agent", "name"] => Text::AgentName,
            ["clock", "weekday"] => Text::ClockWeekday,
            ["clock", "date"] => Text::ClockDate,
            ["clock", "zone"] => Text::ClockZone,
            [variable, "attributes", key] => {
                Text::Attribute(variable_of(variable)?, key.to_string())
            }
            _ => return None,
        })
    }

    fn read<'a>(&self, data: &Data<'a>) -> Result<&'a str, Undecided> {
        let customer = || data.customer.ok_or(Undecided);
        let handoff = || data.handoff.ok_or(Undecided);
        let agent = || data.agent.ok_or(Undecided);
        let clock = || data.clock.map(|clock| clock.clock()).ok_or(Undecided);
        Ok(match self {
            Text::CustomerId => customer()?.id.as_str(),
            Text::CustomerTier => customer()?.tier.as_deref().unwrap_or_default(),
            Text::CustomerLanguage => customer()?.language.as_deref().unwrap_or_default(),
            Text::CustomerRegion => customer()?.region.as_deref().unwrap_or_default(),
            Text::CustomerOwner => customer()?
                .owner
                .as_ref()
                .map_or("", |owner| owner.as_str()),
            Text::SessionId => handoff()?.session.as_str(),
            Text::SessionPlatform => handoff()?.platform.as_str(),
            Text::SessionChannel => handoff()?.channel.as_str(),
            Text::AgentId => agent()?.id.as_str(),
            Text::AgentName => agent()?.name.as_str(),
            Text::ClockWeekday => clock()?.weekday(),
            Text::ClockDate => clock()?.date(),
            Text::ClockZone => clock()?.zone(),
            Text::Attribute(Variable::Customer, key) => {
                attribute(&customer()?.attributes, key).ok_or(Undecided)?
            }
            Text::Attribute(Variable::Session, key) => {
                handoff()?.attributes.get(key).ok_or(Undecided)?.as_str()
            }
            Text::Attribute(Variable::Agent, key) => {
                agent()?.attributes.get(key).ok_or(Undecided)?.as_str()
            }
        })
    }
}

impl Number {
    fn of(path: &[&str]) -> Option<Number> {
        Some(match path {
            ["clock", "hour"] => Number::ClockHour,
            ["clock", "minute"] => Number::ClockMinute,
            ["agent", "capacity"] => Number::AgentCapacity,
            ["agent", "skills", skill] => Number::Skill(skill.to_string()),
            _ => return None,
        })
    }

    fn read(&self, data: &Data<'_>) -> Result<i64, Undecided> {
        let agent = || data.agent.ok_or(Undecided);
        let clock = || data.clock.map(|clock| clock.clock()).ok_or(Undecided);
        Ok(match self {
            Number::ClockHour => clock()?.hour(),
            Number::ClockMinute => clock()?.minute(),
            Number::AgentCapacity => i64::from(agent()?.capacity),
            Number::Skill(skill) => i64::from(*agent()?.skills.get(skill).ok_or(Undecided)?),
        })
    }
}

fn variable_of(name: &str) -> Option<Variable> {
    Some(match name {
        "customer" => Variable::Customer,
        "session" => Variable::Session,
        "agent" => Variable::Agent,
        _ => return None,
    })
}

/// A customer attribute (the list is sorted by key).
fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes
        .binary_search_by(|(each, _)| each.as_str().cmp(key))
        .ok()
        .map(|at| attributes[at].1.as_str())
}

/// The names `expr` spells: `customer.tier` and `customer["tier"]` are both
/// `["customer", "tier"]`; anything but variables, fields and string keys is `None`.
pub fn path(expr: &IdedExpr) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut at = expr;
    loop {
        match &at.expr {
            Expr::Select(select) if !select.test => {
                parts.push(select.field.as_str());
                at = &select.operand;
            }
            Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
                let Expr::Literal(LiteralValue::String(key)) = &call.args[1].expr else {
                    return None;
                };
                parts.push(key.inner());
                at = &call.args[0];
            }
            Expr::Ident(name) => {
                parts.push(name.as_str());
                parts.reverse();
                return Some(parts);
            }
            _ => return None,
        }
    }
}

/// `has(variable.field.key)` and `"key" in variable.field`.
fn membership(variable: &str, field: &str, key: &str) -> Option<Check> {
    match (variable, field) {
        ("agent", "skills") => Some(Check::HasSkill(key.to_owned())),
        (variable, "attributes") => Some(Check::HasAttribute {
            of: variable_of(variable)?,
            key: key.to_owned(),
        }),
        _ => None,
    }
}

/// `element in container`.
fn contains(element: &IdedExpr, container: &IdedExpr) -> Option<Check> {
    match (&element.expr, &container.expr) {
        (Expr::Literal(LiteralValue::String(key)), _) => match path(container)?.as_slice() {
            ["customer", "tags"] => Some(Check::Tagged(key.inner().to_owned())),
            [variable, field] => membership(variable, field, key.inner()),
            _ => None,
        },
        (Expr::Literal(LiteralValue::Int(group)), _) => match path(container)?.as_slice() {
            ["agent", "groups"] => Some(Check::InGroup(*group.inner())),
            _ => None,
        },
        (_, Expr::List(list)) if list.optional_indices.is_empty() => {
            let text = Text::of(&path(element)?)?;
            let literals = list
                .elements
                .iter()
                .map(|each| match &each.expr {
                    Expr::Literal(LiteralValue::String(literal)) => {
                        Some(literal.inner().to_owned())
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Check::TextIn { text, literals })
        }
        _ => None,
    }
}

/// `field <op> literal`, for a text field with a text literal (`==` and `!=` only) or an
/// int field with an int literal; `None` for anything else (CEL's rules across types).
fn comparison(field: &IdedExpr, op: Op, literal: &IdedExpr) -> Option<Check> {
    let Expr::Literal(literal) = &literal.expr else {
        return None;
    };
    let path = path(field)?;
    match literal {
        LiteralValue::String(literal) if matches!(op, Op::Eq | Op::Ne) => Some(Check::TextEquals {
            text: Text::of(&path)?,
            literal: literal.inner().to_owned(),
            equal: op == Op::Eq,
        }),
        LiteralValue::Int(literal) => Some(Check::Compare {
            number: Number::of(&path)?,
            op,
            literal: *literal.inner(),
        }),
        LiteralValue::Boolean(value) if matches!(op, Op::Eq | Op::Ne) => {
            (path.as_slice() == ["customer", "known"]).then(|| {
                if *value.inner() == (op == Op::Eq) {
                    Check::Known
                } else {
                    Check::Not(Box::new(Check::Known))
                }
            })
        }
        _ => None,
    }
}
