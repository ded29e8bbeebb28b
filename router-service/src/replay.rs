//! Replay: a decision log run again through the engine under another config, to see what a
//! rule change would have done to yesterday's traffic.
//!
//! Two stores in memory follow the log in order: one takes the answers the log records
//! (so its seats evolve as they did), the other decides each handoff afresh under the new
//! config (so its seats evolve as the new decisions would have made them); both take every
//! logged state change. Both start from the `state` entry the log begins with (each file
//! starts with one); a `state` written when the router started again resets both, as the
//! router itself started again from it. A decision brings what it saw of its customer, so a
//! pushed profile or previous agent from before the log began is known to both.

use std::collections::BTreeMap;

use handoff_core::{
    config::{AgentConfig, AgentStatus, Strategy},
    id::{AgentId, ClientUserId, GroupId, SdkAppId, SessionId},
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    engine::{self, Candidate, Catalog, Customer, Decision, Handoff},
    store::{
        Assignment, Change, Lifetimes, LocalStore, Look, SessionEvent, SessionEventKind, Store,
        record::{CustomerRecord, HistoryRecord, from_ms, to_ms},
        snapshot::AppSnapshot,
    },
};

/// What one decision was, or became.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The rule that decided.
    pub rule: String,
    /// The group answered.
    pub group: Option<u64>,
    /// The agents answered.
    pub agents: Vec<String>,
    /// Whether no agent could be ranked.
    pub fallback: bool,
    /// The explanation.
    pub reason: String,
}

/// A decision the new config makes differently.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// The app.
    pub app: u64,
    /// The session.
    pub session: String,
    /// As logged.
    pub before: Outcome,
    /// Under the new config.
    pub after: Outcome,
}

/// Seats in use over the replay: peak and average over the samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seats {
    /// The most at once.
    pub peak: u32,
    /// The average over the samples taken after each logged entry.
    pub average: f64,
    #[serde(skip)]
    total: u64,
    #[serde(skip)]
    samples: u64,
}

impl Seats {
    fn add(&mut self, seats: u32) {
        self.peak = self.peak.max(seats);
        self.total += u64::from(seats);
        self.samples += 1;
        self.average = self.total as f64 / self.samples as f64;
    }
}

/// Seats in use over time for one group: `(at_ms, as logged, new)` after each entry,
/// thinned to at most about a thousand points for long logs.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The points, oldest first.
    pub points: Vec<(u64, u32, u32)>,
    #[serde(skip)]
    stride: usize,
    #[serde(skip)]
    seen: usize,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            points: Vec::new(),
            stride: 1,
            seen: 0,
        }
    }
}

impl Series {
    const MAX: usize = 1_000;

    fn add(&mut self, point: (u64, u32, u32)) {
        if self.seen.is_multiple_of(self.stride) {
            self.points.push(point);
            if self.points.len() > Self::MAX {
                self.points = self.points.iter().copied().step_by(2).collect();
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }
}

/// What a replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Decisions replayed.
    pub decisions: usize,
    /// The `state` entries the stores were set to (the first, and each restart).
    pub states: usize,
    /// State changes applied.
    pub changes: usize,
    /// Decisions made differently, by the rule that made them as logged.
    pub changed_by_rule: BTreeMap<String, usize>,
    /// The decisions made differently (the first [`Report::SHOWN`] in full).
    pub changed: Vec<Changed>,
    /// How many decisions were made differently in all.
    pub changed_total: usize,
    /// Fallbacks as logged.
    pub fallbacks_before: usize,
    /// Fallbacks under the new config.
    pub fallbacks_after: usize,
    /// Seats in use per group (`app/group`), as logged and under the new config.
    pub groups: BTreeMap<String, (Seats, Seats)>,
    /// The same over time, per group.
    pub series: BTreeMap<String, Series>,
    /// The busiest agents under the new config (peak seats), as logged beside.
    pub busiest: Vec<(String, u32, u32)>,
    /// Entries of apps the new config does not have (skipped), by app.
    pub unknown_apps: BTreeMap<u64, usize>,
    /// Decisions made by a rule the new config's app does not have (`app/rule`): a log
    /// from another config, or a rule renamed or removed.
    pub unknown_rules: BTreeMap<String, usize>,
}

impl Report {
    /// How many changed decisions are kept in full.
    pub const SHOWN: usize = 20;
}

/// Replays `entries` (decision log lines, oldest first) under `catalog`.
pub async fn replay(
    catalog: &Catalog,
    lifetimes: Lifetimes,
    entries: impl IntoIterator<Item = Value>,
) -> Result<Report, String> {
    let (logged, fresh) = (
        LocalStore::in_memory(lifetimes),
        LocalStore::in_memory(lifetimes),
    );
    let mut report = Report::default();
    let mut agent_peaks: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    // Links to previous agents made before this are taken from the decisions that saw them.
    let mut since_ms: Option<u64> = None;
    for (line, entry) in entries.into_iter().enumerate() {
        let fail = |what: &str| format!("log entry {}: {what}", line + 1);
        if entry["kind"] == "state" {
            let at_ms = entry["at_ms"].as_u64().ok_or_else(|| fail("no at_ms"))?;
            // The first state sets both stores; a later one only when the router started
            // again (a rotation's state is what the replay has been following).
            if since_ms.is_none() || entry["reason"] == "start" {
                let apps: Vec<AppSnapshot> = serde_json::from_value(entry["apps"].clone())
                    .map_err(|err| fail(&format!("a malformed state: {err}")))?;
                for snapshot in &apps {
                    let app = SdkAppId::new(snapshot.app)
                        .ok()
                        .and_then(|id| catalog.app(id));
                    if let Some(app) = app {
                        logged.restore(app, snapshot, from_ms(at_ms));
                        fresh.restore(app, snapshot, from_ms(at_ms));
                    }
                }
                report.states += 1;
                since_ms = Some(at_ms);
            }
            continue;
        }
        let app_id = entry["app"]
            .as_u64()
            .and_then(|id| SdkAppId::new(id).ok())
            .ok_or_else(|| fail("no app"))?;
        let Some(app) = catalog.app(app_id) else {
            *report.unknown_apps.entry(app_id.get()).or_default() += 1;
            continue;
        };
        let at_ms = entry["at_ms"].as_u64().ok_or_else(|| fail("no at_ms"))?;
        let at = from_ms(at_ms);
        let since_ms = *since_ms.get_or_insert(at_ms);
        match entry["kind"].as_str() {
            Some("decision") => {
                let handoff =
                    handoff(app_id, &entry).ok_or_else(|| fail("a malformed decision"))?;
                let profile = serde_json::from_value::<CustomerRecord>(entry["profile"].clone())
                    .ok()
                    .map(Customer::from);
                let previous = previous(&entry).filter(|link| link.at_ms < since_ms);
                for store in [&logged, &fresh] {
                    store.adopt(app, &handoff.client_user, profile.clone(), previous.clone());
                }
                let before = outcome(&entry);
                let known = app.default_rule().name == before.rule
                    || app.rules().iter().any(|rule| rule.rule.name == before.rule);
                if !known {
                    *report
                        .unknown_rules
                        .entry(format!("{}/{}", app_id, before.rule))
                        .or_default() += 1;
                }
                let forced = forced(app, &entry);
                let _ = logged
                    .assign(app, &handoff, at, |_| forced)
                    .await
                    .map_err(|e| fail(&e.to_string()))?;
                let after = match fresh
                    .assign(app, &handoff, at, |state| {
                        engine::decide(app, &handoff, state, at)
                    })
                    .await
                    .map_err(|e| fail(&e.to_string()))?
                {
                    Assignment::Fresh(answer) | Assignment::Replayed(answer) => Outcome {
                        rule: answer.rule,
                        group: answer.group.map(GroupId::get),
                        agents: answer
                            .agents
                            .iter()
                            .map(|a| a.as_str().to_owned())
                            .collect(),
                        fallback: answer.fallback,
                        reason: answer.reason,
                    },
                };
                report.decisions += 1;
                report.fallbacks_before += usize::from(before.fallback);
                report.fallbacks_after += usize::from(after.fallback);
                if (&before.rule, before.group, &before.agents)
                    != (&after.rule, after.group, &after.agents)
                {
                    report.changed_total += 1;
                    *report
                        .changed_by_rule
                        .entry(before.rule.clone())
                        .or_default() += 1;
                    if report.changed.len() < Report::SHOWN {
                        report.changed.push(Changed {
                            app: app_id.get(),
                            session: handoff.session.as_str().to_owned(),
                            before,
                            after,
                        });
                    }
                }
            }
            Some(_) => {
                let Some(change) = change(app, &entry) else {
                    continue;
                };
                for store in [&logged, &fresh] {
                    store
                        .apply(app, change.clone(), at)
                        .await
                        .map_err(|e| fail(&e.to_string()))?;
                }
                report.changes += 1;
            }
            None => return Err(fail("no kind")),
        }
        // Seats per group and agent, as logged and as the new config would have had them.
        let seats = |state: &dyn engine::StateView| {
            engine::roster(app, state.roster_changes())
                .iter()
                .map(|agent| (std::sync::Arc::clone(agent), state.load(&agent.id).active))
                .collect::<Vec<_>>()
        };
        let before = logged
            .inspect(app, Look::default(), at, seats)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let after = fresh
            .inspect(app, Look::default(), at, seats)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        for group in app.groups() {
            let sum = |loads: &[(std::sync::Arc<engine::Agent>, u32)]| {
                loads
                    .iter()
                    .filter(|(agent, _)| agent.groups.contains(&group.id))
                    .map(|(_, active)| *active)
                    .sum::<u32>()
            };
            let key = format!("{}/{}", app_id, group.id);
            let (old, new) = (sum(&before), sum(&after));
            let seats = report.groups.entry(key.clone()).or_default();
            seats.0.add(old);
            seats.1.add(new);
            report
                .series
                .entry(key)
                .or_default()
                .add((to_ms(at), old, new));
        }
        for ((agent, old), (_, new)) in before.iter().zip(&after) {
            let peak = agent_peaks.entry(agent.id.as_str().to_owned()).or_default();
            peak.0 = peak.0.max(*old);
            peak.1 = peak.1.max(*new);
        }
    }
    let mut busiest: Vec<(String, u32, u32)> = agent_peaks
        .into_iter()
        .map(|(agent, (old, new))| (agent, new, old))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    busiest.truncate(10);
    report.busiest = busiest;
    Ok(report)
}

fn handoff(app: SdkAppId, entry: &Value) -> Option<Handoff> {
    Some(Handoff {
        app,
        session: SessionId::parse(entry["session"].as_str()?).ok()?,
        client_user: ClientUserId::parse(entry["customer"].as_str()?).ok()?,
        event_time: from_ms(entry["event_time_ms"].as_u64()?),
        platform: entry["platform"].as_str().unwrap_or_default().to_owned(),
        channel: entry["channel"].as_str().unwrap_or_default().to_owned(),
        attributes: serde_json::from_value(entry["attributes"].clone()).unwrap_or_default(),
    })
}

/// The previous agent a decision saw.
fn previous(entry: &Value) -> Option<HistoryRecord> {
    let previous = &entry["previous"];
    Some(HistoryRecord {
        agent: AgentId::parse(previous["agent"].as_str()?).ok()?,
        at_ms: previous["at_ms"].as_u64()?,
        event_ms: None,
    })
}

fn outcome(entry: &Value) -> Outcome {
    Outcome {
        rule: entry["rule"].as_str().unwrap_or_default().to_owned(),
        group: entry["group"].as_u64(),
        agents: strings(&entry["agents"]),
        fallback: entry["fallback"].as_bool().unwrap_or_default(),
        reason: entry["reason"].as_str().unwrap_or_default().to_owned(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The logged answer as a decision the store reserves as it did: its agents ranked as
/// answered, the reserved one first.
fn forced(app: &engine::App, entry: &Value) -> Decision {
    let reserved = entry["reserved"].as_str();
    let fallback = entry["fallback"].as_bool().unwrap_or_default();
    let ranked: Vec<Candidate> = reserved
        .map(|_| strings(&entry["agents"]))
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(position, id)| {
            let agent = AgentId::parse(id).ok()?;
            let capacity = app
                .agents()
                .iter()
                .find(|a| a.id == agent)
                .map_or(u32::MAX, |a| a.capacity);
            Some(Candidate {
                agent,
                capacity,
                active: 0,
                last_assigned: None,
                score: 0.0,
                sticky: None,
                position,
            })
        })
        .collect();
    Decision {
        rule: entry["rule"].as_str().unwrap_or_default().to_owned(),
        rules: Vec::new(),
        targets: Vec::new(),
        strategy: entry["strategy"]
            .as_str()
            .and_then(|s| serde_json::from_value::<Strategy>(Value::String(s.to_owned())).ok()),
        group: entry["group"].as_u64().and_then(|g| GroupId::new(g).ok()),
        max_agents: ranked.len().max(1),
        group_only: reserved.is_none() && !fallback,
        fallback,
        reason: entry["reason"].as_str().unwrap_or_default().to_owned(),
        ranked,
    }
}

/// A logged state change as the store takes it.
fn change(app: &engine::App, entry: &Value) -> Option<Change> {
    let agent = || AgentId::parse(entry["agent"].as_str()?).ok();
    let at = from_ms(entry["event_time_ms"].as_u64().unwrap_or_default());
    let id = entry["id"].as_str().map(str::to_owned);
    match entry["kind"].as_str()? {
        "session_event" => Some(Change::Session(SessionEvent {
            session: SessionId::parse(entry["session"].as_str()?).ok()?,
            kind: match entry["event"].as_str()? {
                "assigned" => SessionEventKind::Assigned,
                "transferred" => SessionEventKind::Transferred,
                "failed" => SessionEventKind::Failed,
                "ended" => SessionEventKind::Ended,
                _ => return None,
            },
            agent: agent(),
            from_agent: entry["from_agent"]
                .as_str()
                .and_then(|a| AgentId::parse(a).ok()),
            customer: entry["customer"]
                .as_str()
                .and_then(|c| ClientUserId::parse(c).ok()),
            at,
            id,
        })),
        "status" => Some(Change::SetStatus {
            agent: agent()?,
            status: serde_json::from_value::<AgentStatus>(entry["status"].clone()).ok()?,
            at,
            id,
        }),
        "agent_put" => {
            let config: AgentConfig = serde_json::from_value(entry["agent"].clone()).ok()?;
            let agent = app.check_agent(&config).ok()?;
            Some(Change::PutAgent(std::sync::Arc::new(agent)))
        }
        "agent_removed" => Some(Change::RemoveAgent(agent()?)),
        "links_forgotten" => Some(Change::ForgetLinks {
            before: from_ms(entry["before_ms"].as_u64()?),
        }),
        "customer" => {
            let record: CustomerRecord = serde_json::from_value(entry["customer"].clone()).ok()?;
            Some(Change::PutCustomer(Customer::from(record)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    /// A logged decision for `customer` that reserved bob, with what it saw of them.
    fn to_bob(session: &str, customer: &str, at_ms: u64, seen: Value) -> Value {
        let mut entry = json!({
            "kind": "decision", "at_ms": at_ms, "app": 1_400_000_001u64,
            "session": session, "customer": customer, "event_time_ms": at_ms,
            "rule": "default", "strategy": "least_loaded", "group": 6521,
            "agents": ["bob@example.com", "ann@example.com"],
            "reserved": "bob@example.com", "fallback": false, "replayed": false,
            "reason": "as logged", "considered": [],
        });
        if let (Some(entry), Some(seen)) = (entry.as_object_mut(), seen.as_object()) {
            entry.extend(seen.clone());
        }
        entry
    }

    #[tokio::test]
    async fn entries_of_apps_and_rules_the_new_config_lacks_are_counted()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(60));
        let mut renamed = to_bob("s-1", "c-1", 3_000, json!({}));
        renamed["rule"] = json!("night");
        let mut elsewhere = to_bob("s-2", "c-2", 3_000, json!({}));
        elsewhere["app"] = json!(1_400_000_009u64);
        let entries = vec![to_bob("s-0", "c-0", 2_000, json!({})), renamed, elsewhere];
        let report = replay(&catalog, lifetimes, entries).await?;
        assert_eq!(report.decisions, 2);
        assert_eq!(
            report.unknown_rules.into_iter().collect::<Vec<_>>(),
            [("1400000001/night".to_owned(), 1)]
        );
        assert_eq!(
            report.unknown_apps.into_iter().collect::<Vec<_>>(),
            [(1_400_000_009, 1)]
        );
        Ok(())
    }

    #[tokio::test]
    async fn what_a_decision_saw_of_its_customer_before_the_log_began_is_decided_with_again()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(60));
        let entries = vec![
            json!({"kind": "state", "reason": "rotation", "at_ms": 2_000, "apps": []}),
            // Bob served this customer before the log began: sticky, he goes first.
            to_bob(
                "s-1",
                "c-1",
                3_000,
                json!({"previous": {"agent": "bob@example.com", "at_ms": 1_000}}),
            ),
            // This one's pushed profile names bob their owner, though he is busier now.
            to_bob(
                "s-2",
                "c-2",
                4_000,
                json!({"profile": {
                    "id": "c-2", "known": true, "tier": null, "language": null,
                    "region": null, "tags": [], "owner": "bob@example.com", "attributes": {}
                }}),
            ),
        ];
        let report = replay(&catalog, lifetimes, entries).await?;
        assert_eq!(report.decisions, 2);
        assert_eq!(report.changed_total, 0, "{:?}", report.changed);
        Ok(())
    }

    #[test]
    fn a_long_series_is_thinned_evenly_and_keeps_its_start() {
        let mut series = Series::default();
        for n in 0..5_000u64 {
            series.add((n, 1, 2));
        }
        let times: Vec<u64> = series.points.iter().map(|p| p.0).collect();
        assert!(times.len() <= Series::MAX, "{}", times.len());
        assert!(times.len() >= Series::MAX / 2, "{}", times.len());
        assert_eq!(times[0], 0);
        let step = times[1] - times[0];
        assert!(
            times.windows(2).all(|w| w[1] - w[0] == step),
            "evenly spaced"
        );
    }
}
