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

use std::{collections::BTreeMap, sync::Arc};

use handoff_core::id::{GroupId, SdkAppId};
use serde::Serialize;

use crate::{
    decision_log::{Decided, Entry, FORMAT, StateReason},
    engine::{self, Catalog},
    store::{
        Lifetimes, LocalStore, Look, Store,
        record::{from_ms, to_ms},
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
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The session, by Tencent's `SessionId`.
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
    /// When the router started again within the log (Unix ms): the state was set anew
    /// there, so a chart breaks its lines at these.
    pub restarts: Vec<u64>,
    /// State changes applied.
    pub changes: usize,
    /// Run-time changes (agents, statuses, customers) by the router token they came with.
    pub changes_by: BTreeMap<String, usize>,
    /// State changes the new config refuses (an agent defined at run time with a group it
    /// lacks, say): skipped, the first [`Report::SHOWN`] said why.
    pub refused: Vec<String>,
    /// How many state changes were refused in all.
    pub refused_total: usize,
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
    /// The groups' names in the new config, by `app/group`.
    pub group_names: BTreeMap<String, String>,
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
    /// How many changed decisions (and refused changes) are kept in full.
    pub const SHOWN: usize = 20;
}

/// Replays `entries` (decision log lines, oldest first, each with where it was read, for
/// errors) under `catalog`.
pub async fn replay<P: std::fmt::Display>(
    catalog: &Catalog,
    lifetimes: Lifetimes,
    entries: impl IntoIterator<Item = (P, Entry)>,
) -> Result<Report, String> {
    let mut replay = Replay::new(catalog, lifetimes);
    for (place, entry) in entries {
        replay
            .feed(entry)
            .await
            .map_err(|err| format!("{place}: {err}"))?;
    }
    Ok(replay.finish())
}

/// A replay in progress: the two stores and what has been found so far.
struct Replay<'a> {
    catalog: &'a Catalog,
    /// Takes the answers the log records.
    logged: LocalStore,
    /// Decides each handoff afresh under the new config.
    fresh: LocalStore,
    report: Report,
    agent_peaks: BTreeMap<String, (u32, u32)>,
    /// Where the replay begins (Unix ms): links to previous agents made before it are
    /// taken from the decisions that saw them.
    since_ms: Option<u64>,
}

impl<'a> Replay<'a> {
    fn new(catalog: &'a Catalog, lifetimes: Lifetimes) -> Self {
        Self {
            catalog,
            logged: LocalStore::in_memory(lifetimes),
            fresh: LocalStore::in_memory(lifetimes),
            report: Report::default(),
            agent_peaks: BTreeMap::new(),
            since_ms: None,
        }
    }

    async fn feed(&mut self, entry: Entry) -> Result<(), String> {
        let at_ms = entry.at_ms();
        let app = match &entry {
            Entry::State {
                format,
                reason,
                apps,
                ..
            } => {
                if *format > FORMAT {
                    return Err(format!(
                        "written in the decision log's format {format}; this handoff reads up to {FORMAT}: replay it with a newer handoff"
                    ));
                }
                // The first state sets both stores; a later one only when the router
                // started again (a rotation's state is what the replay has been following).
                if self.since_ms.is_none() || *reason == StateReason::Start {
                    for snapshot in apps {
                        let app = SdkAppId::new(snapshot.app)
                            .ok()
                            .and_then(|id| self.catalog.app(id));
                        if let Some(app) = app {
                            self.logged.restore(app, snapshot, from_ms(at_ms));
                            self.fresh.restore(app, snapshot, from_ms(at_ms));
                        }
                    }
                    if self.since_ms.is_some() {
                        self.report.restarts.push(at_ms);
                    }
                    self.report.states += 1;
                    self.since_ms = Some(at_ms);
                }
                return Ok(());
            }
            other => other.app(),
        };
        let Some(app_id) = app else {
            return Ok(());
        };
        let Some(app) = self.catalog.app(app_id) else {
            *self.report.unknown_apps.entry(app_id.get()).or_default() += 1;
            return Ok(());
        };
        let at = from_ms(at_ms);
        self.since_ms.get_or_insert(at_ms);
        if let Some(by) = entry.by() {
            *self.report.changes_by.entry(by.to_owned()).or_default() += 1;
        }
        match entry {
            Entry::Decision(decided) => self.decision(app, &decided, at).await?,
            change => match change.into_change(app) {
                Ok(Some(change)) => {
                    for store in [&self.logged, &self.fresh] {
                        store
                            .apply(app, change.clone(), at)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    self.report.changes += 1;
                }
                Ok(None) => {}
                Err(refused) => {
                    self.report.refused_total += 1;
                    if self.report.refused.len() < Report::SHOWN {
                        self.report.refused.push(refused);
                    }
                }
            },
        }
        self.sample(app, at).await
    }

    /// Takes one logged decision: the logged store reserves as it was answered, the fresh
    /// one decides again.
    async fn decision(
        &mut self,
        app: &engine::App,
        decided: &Decided,
        at: std::time::SystemTime,
    ) -> Result<(), String> {
        let handoff = decided.handoff();
        let since_ms = self.since_ms.unwrap_or_default();
        let previous = decided.previous_link().filter(|link| link.at_ms < since_ms);
        for store in [&self.logged, &self.fresh] {
            store.adopt(
                app,
                &handoff.client_user,
                decided.customer(),
                previous.clone(),
            );
        }
        let before = Outcome::logged(decided);
        let known = app.default_rule().name == before.rule
            || app.rules().iter().any(|rule| rule.rule.name == before.rule);
        if !known {
            *self
                .report
                .unknown_rules
                .entry(format!("{}/{}", app.id, before.rule))
                .or_default() += 1;
        }
        let forced = decided.forced(app);
        self.logged
            .assign(app, &handoff, at, |_| forced.clone())
            .await
            .map_err(|e| e.to_string())?;
        let after = self
            .fresh
            .assign(app, &handoff, at, |state| {
                engine::decide(app, &handoff, state, at)
            })
            .await
            .map_err(|e| e.to_string())?;
        let after = Outcome::of(after.answer());
        let report = &mut self.report;
        report.decisions += 1;
        report.fallbacks_before += usize::from(before.fallback);
        report.fallbacks_after += usize::from(after.fallback);
        if (&before.rule, before.group, &before.agents) != (&after.rule, after.group, &after.agents)
        {
            report.changed_total += 1;
            *report
                .changed_by_rule
                .entry(before.rule.clone())
                .or_default() += 1;
            if report.changed.len() < Report::SHOWN {
                report.changed.push(Changed {
                    app: app.id.get(),
                    session: handoff.session.as_str().to_owned(),
                    before,
                    after,
                });
            }
        }
        Ok(())
    }

    /// Seats per group and agent after an entry, as logged and as the new config would
    /// have had them.
    async fn sample(&mut self, app: &engine::App, at: std::time::SystemTime) -> Result<(), String> {
        let seats = |state: &dyn engine::StateView| {
            engine::roster(app, state.roster_changes())
                .iter()
                .map(|agent| (Arc::clone(agent), state.load(&agent.id).active))
                .collect::<Vec<_>>()
        };
        let before = self
            .logged
            .inspect(app, Look::default(), at, seats)
            .await
            .map_err(|e| e.to_string())?;
        let after = self
            .fresh
            .inspect(app, Look::default(), at, seats)
            .await
            .map_err(|e| e.to_string())?;
        for group in app.groups() {
            let sum = |loads: &[(Arc<engine::Agent>, u32)]| {
                loads
                    .iter()
                    .filter(|(agent, _)| agent.groups.contains(&group.id))
                    .map(|(_, active)| *active)
                    .sum::<u32>()
            };
            let key = format!("{}/{}", app.id, group.id);
            let (old, new) = (sum(&before), sum(&after));
            let seats = self.report.groups.entry(key.clone()).or_default();
            seats.0.add(old);
            seats.1.add(new);
            self.report
                .group_names
                .entry(key.clone())
                .or_insert_with(|| group.name.clone());
            self.report
                .series
                .entry(key)
                .or_default()
                .add((to_ms(at), old, new));
        }
        for ((agent, old), (_, new)) in before.iter().zip(&after) {
            let peak = self
                .agent_peaks
                .entry(agent.id.as_str().to_owned())
                .or_default();
            peak.0 = peak.0.max(*old);
            peak.1 = peak.1.max(*new);
        }
        Ok(())
    }

    fn finish(mut self) -> Report {
        let mut busiest: Vec<(String, u32, u32)> = std::mem::take(&mut self.agent_peaks)
            .into_iter()
            .map(|(agent, (old, new))| (agent, new, old))
            .collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        busiest.truncate(10);
        self.report.busiest = busiest;
        self.report
    }
}

impl Outcome {
    /// The answer a decision logged.
    fn logged(decided: &Decided) -> Self {
        Self {
            rule: decided.rule.clone(),
            group: decided.group.map(GroupId::get),
            agents: decided
                .agents
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            fallback: decided.fallback,
            reason: decided.reason.clone(),
        }
    }

    /// A fresh answer.
    fn of(answer: &engine::Answer) -> Self {
        Self {
            rule: answer.rule.clone(),
            group: answer.group.map(GroupId::get),
            agents: answer
                .agents
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            fallback: answer.fallback,
            reason: answer.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use handoff_core::id::{AgentId, ClientUserId, SessionId};

    use super::*;
    use crate::{
        decision_log::{AppSnapshot, Previous},
        engine::Customer,
        store::{Applied, record::CustomerRecord},
        testing,
    };

    /// A logged decision for `customer` that reserved bob.
    fn to_bob(session: &str, customer: &str, at_ms: u64) -> Result<Decided, testing::Error> {
        Ok(Decided {
            at_ms,
            app: testing::app_id()?,
            session: SessionId::parse(session)?,
            customer: ClientUserId::parse(customer)?,
            event_time_ms: at_ms,
            platform: String::new(),
            channel: String::new(),
            attributes: BTreeMap::new(),
            rule: "default".into(),
            strategy: Some(handoff_core::config::Strategy::LeastLoaded),
            group: Some(GroupId::new(6521)?),
            agents: vec![
                AgentId::parse("bob@example.com")?,
                AgentId::parse("ann@example.com")?,
            ],
            reserved: Some(AgentId::parse("bob@example.com")?),
            fallback: false,
            weight: 1,
            replayed: false,
            reason: "as logged".into(),
            considered: Vec::new(),
            profile: None,
            previous: None,
        })
    }

    /// `entries`, each with its line number.
    fn numbered(entries: Vec<Entry>) -> impl Iterator<Item = (usize, Entry)> {
        entries.into_iter().enumerate().map(|(n, e)| (n + 1, e))
    }

    #[tokio::test]
    async fn entries_of_apps_and_rules_the_new_config_lacks_are_counted()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(60));
        let mut renamed = to_bob("s-1", "c-1", 3_000)?;
        renamed.rule = "night".into();
        let mut elsewhere = to_bob("s-2", "c-2", 3_000)?;
        elsewhere.app = SdkAppId::new(1_400_000_009)?;
        let entries = [to_bob("s-0", "c-0", 2_000)?, renamed, elsewhere]
            .into_iter()
            .map(|d| Entry::Decision(Box::new(d)))
            .collect();
        let report = replay(&catalog, lifetimes, numbered(entries)).await?;
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
        // Bob served this customer before the log began: sticky, he goes first.
        let mut sticky = to_bob("s-1", "c-1", 3_000)?;
        sticky.previous = Some(Previous {
            agent: AgentId::parse("bob@example.com")?,
            at_ms: 1_000,
        });
        // This one's pushed profile names bob their owner, though he is busier now.
        let mut owned = to_bob("s-2", "c-2", 4_000)?;
        let mut profile = Customer::unknown(ClientUserId::parse("c-2")?);
        profile.known = true;
        profile.owner = Some(AgentId::parse("bob@example.com")?);
        owned.profile = Some(Box::new(CustomerRecord::from(&profile)));
        let entries = vec![
            Entry::state(from_ms(2_000), Vec::new()),
            Entry::Decision(Box::new(sticky)),
            Entry::Decision(Box::new(owned)),
        ];
        let report = replay(&catalog, lifetimes, numbered(entries)).await?;
        assert_eq!(report.decisions, 2);
        assert_eq!(report.changed_total, 0, "{:?}", report.changed);
        Ok(())
    }

    /// What a store holds of the app and of customers c-1 and c-2, as text.
    async fn holds(store: &LocalStore, app: &engine::App, at: SystemTime) -> String {
        let mut held = String::new();
        for customer in ["c-1", "c-2"] {
            let Ok(customer) = ClientUserId::parse(customer) else {
                continue;
            };
            let look = Look {
                customer: Some(&customer),
                sessions: true,
            };
            let seen = store
                .inspect(app, look, at, |state| {
                    format!(
                        "{}\n{:?}\n{:?}\n",
                        serde_json::to_string(&AppSnapshot::of(app, state)).unwrap_or_default(),
                        state.customer(&customer).map(CustomerRecord::from),
                        state.last_agent(&customer),
                    )
                })
                .await;
            held.push_str(&seen.unwrap_or_else(|e| e.to_string()));
        }
        held
    }

    #[tokio::test]
    async fn every_kind_of_logged_change_replays_as_the_store_applied_it()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let app = catalog.app(testing::app_id()?).ok_or("no app")?;
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(60));
        let direct = LocalStore::in_memory(lifetimes);
        let mut replay = Replay::new(&catalog, lifetimes);
        let decided = to_bob("s-1", "c-1", 1_000)?;
        direct
            .assign(app, &decided.handoff(), from_ms(1_000), |_| {
                decided.forced(app)
            })
            .await?;
        replay.feed(Entry::Decision(Box::new(decided))).await?;
        for change in testing::every_change()? {
            let at = from_ms(2_000);
            let before = holds(&direct, app, at).await;
            let applied = direct.apply(app, change.clone(), at).await?;
            assert_eq!(applied, Applied::Recorded, "{change:?}");
            assert_ne!(before, holds(&direct, app, at).await, "{change:?} shows");
            // Logged, read back from its line, replayed.
            let line =
                serde_json::to_string(&Entry::change(app.id, at, &change, applied, Some("crm")))?;
            replay.feed(serde_json::from_str(&line)?).await?;
            // The store that follows the log holds what the router held.
            assert_eq!(
                holds(&replay.logged, app, at).await,
                holds(&direct, app, at).await,
                "{line}"
            );
        }
        let report = replay.finish();
        assert_eq!(report.changes, 8);
        // Who made the run-time changes: the four that came through the API.
        assert_eq!(report.changes_by.get("crm"), Some(&4));
        Ok(())
    }

    #[tokio::test]
    async fn a_log_of_a_newer_format_is_refused_with_its_place() -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(60));
        let mut state = Entry::state(from_ms(1_000), Vec::new());
        if let Entry::State { format, .. } = &mut state {
            *format = FORMAT + 1;
        }
        let refused = replay(&catalog, lifetimes, [("d.jsonl:1", state)]).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.starts_with("d.jsonl:1: ") && e.contains("newer handoff")),
            "{refused:?}"
        );
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

    /// What wrap-up would have done: as logged (no wrap-up) Bob served c-1's session, it
    /// ended, and c-1's next session went to Bob again as her previous agent; under a config
    /// that adds wrap-up, Bob is still writing notes and the session moves to Ann.
    #[tokio::test]
    async fn a_replay_under_a_config_that_adds_wrap_up_moves_the_next_session()
    -> Result<(), testing::Error> {
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(600));
        let app = testing::app_id()?;
        let bob = AgentId::parse("bob@example.com")?;
        let event = |kind, at_ms| {
            let change = crate::store::Change::Session(crate::store::SessionEvent {
                session: SessionId::parse("s-1").map_err(|e| e.to_string())?,
                kind,
                agent: Some(bob.clone()),
                from_agent: None,
                customer: None,
                at: crate::store::record::from_ms(at_ms),
                id: None,
            });
            Ok::<_, String>(Entry::change(
                app,
                crate::store::record::from_ms(at_ms),
                &change,
                Applied::Recorded,
                None,
            ))
        };
        let entries = || -> Result<Vec<Entry>, testing::Error> {
            Ok(vec![
                Entry::Decision(Box::new(to_bob("s-1", "c-1", 1_000)?)),
                event(crate::store::SessionEventKind::Assigned, 1_500)?,
                event(crate::store::SessionEventKind::Ended, 2_000)?,
                Entry::Decision(Box::new(to_bob("s-2", "c-1", 3_000)?)),
            ])
        };
        let second = |report: &Report| {
            report
                .changed
                .iter()
                .find(|changed| changed.session == "s-2")
                .map(|changed| changed.after.agents.clone())
        };
        let plain = testing::catalog()?;
        let report = replay(&plain, lifetimes, numbered(entries()?)).await?;
        assert_eq!(second(&report), None, "{:?}", report.changed);

        let text = testing::TWO_AGENTS.replace(
            "sdk_app_id = 1400000001",
            "sdk_app_id = 1400000001\n    wrap_up = \"5m\"",
        );
        let config =
            handoff_core::config::parse(&text, std::path::Path::new("t.toml"), Vec::new())?;
        let wrapping = Catalog::from_config(&config, std::path::Path::new("t.toml"))?;
        let report = replay(&wrapping, lifetimes, numbered(entries()?)).await?;
        assert_eq!(
            second(&report),
            Some(vec![AgentId::parse("ann@example.com")?.to_string()]),
            "{:?}",
            report.changed
        );
        Ok(())
    }

    /// What weighted sessions would have done: two sessions logged to Bob took a seat each;
    /// under a config whose rule weighs sessions two seats, the seats in use double and the
    /// second session goes to the other agent (Ann has two seats, Bob three).
    #[tokio::test]
    async fn a_replay_under_a_config_that_weighs_sessions_shows_the_seats_they_take()
    -> Result<(), testing::Error> {
        let lifetimes = testing::lifetimes(std::time::Duration::from_secs(600));
        let entries = || -> Result<Vec<Entry>, testing::Error> {
            Ok(vec![
                Entry::Decision(Box::new(to_bob("s-1", "c-1", 1_000)?)),
                Entry::Decision(Box::new(to_bob("s-2", "c-2", 2_000)?)),
            ])
        };
        let text = format!(
            "{}\n    [[apps.rules]]\n    name = \"default\"\n    group = 6521\n    weight = 2\n",
            testing::TWO_AGENTS
        );
        let config =
            handoff_core::config::parse(&text, std::path::Path::new("t.toml"), Vec::new())?;
        let weighted = Catalog::from_config(&config, std::path::Path::new("t.toml"))?;
        let report = replay(&weighted, lifetimes, numbered(entries()?)).await?;
        let (before, after) = report
            .groups
            .get("1400000001/6521")
            .ok_or("the group's seats")?;
        assert_eq!((before.peak, after.peak), (2, 4), "{:?}", report.groups);
        assert_eq!(report.changed_total, 2, "{:?}", report.changed);
        Ok(())
    }
}
