//! The floor as Tencent Desk knows it (members, their groups and reception limits), and how
//! it composes with the agents of the config file and of gRPC into the roster the engine
//! routes over.
//!
//! With Desk sync on and a roster synced once, Desk is the truth for who exists, which
//! groups they are in and how many sessions they take; the file's or gRPC's definition of
//! the same person (matched by lower-cased e-mail) adds what Desk does not know: skills,
//! attributes, shift, status, and the name when it gives one. Agents the file or gRPC
//! define that Desk does not list are not on the floor. Until the first roster arrives, and
//! with sync off, the file and gRPC alone make the roster, as without Desk.

use std::{collections::BTreeMap, sync::Arc};

use handoff_core::{
    config::AgentConfig,
    id::{AgentId, GroupId},
};
use serde::{Deserialize, Serialize};

use super::{Agent, App, RosterChanges};

/// A member of the Desk console: the fields routing takes from Desk. Also the stored form
/// (JSON in the journal and in Redis): the field names are the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskMember {
    /// The e-mail as Desk spells it (`MemberMail`), which is what an answer must list.
    pub id: AgentId,
    /// `NickName`, when Desk has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `MemberGroupIDList`: the AgentGroupIds the member takes sessions of.
    pub groups: Vec<GroupId>,
    /// `EffectiveReceptionLimit`: the member's own limit when enabled, else the largest of
    /// their groups'. Zero takes nothing.
    pub capacity: u32,
}

/// A Desk member group (`MemberGroupID`, which is the AgentGroupId handoff answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskGroup {
    /// The group.
    pub id: GroupId,
    /// `MemberGroupName`.
    pub name: String,
    /// `ReceptionLimit`: what a member without a limit of their own takes in this group.
    pub capacity: u32,
}

/// The key a member is matched by: the lower-cased e-mail.
pub fn member_key(id: &AgentId) -> String {
    id.as_str().to_ascii_lowercase()
}

/// What a roster sync read from Desk, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskRoster {
    /// Desk's groups; `None` until a roster was synced, and the file alone routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<DeskGroup>>,
    /// The members, by [`member_key`].
    #[serde(default)]
    pub members: BTreeMap<String, DeskMember>,
    /// Desk's business hours (`WorkTimeConfig`) as weekly entries in the schedules' own
    /// form (`"mon 09:00-11:30"`), when the app takes them (`[apps.desk] hours`); empty
    /// when Desk gives none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<String>,
}

/// What one roster sync changed: members added, changed (`Some`) or gone (`None`), by
/// [`member_key`], and Desk's groups when they changed or this is the first sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskDelta {
    /// Members put or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<(String, Option<DeskMember>)>,
    /// The groups from now on, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<DeskGroup>>,
    /// Desk's business hours from now on, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<String>>,
}

impl DeskDelta {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.groups.is_none() && self.hours.is_none()
    }

    /// The members it removes.
    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, member)| member.is_none())
            .map(|(key, _)| key.as_str())
    }
}

impl DeskRoster {
    /// Whether a roster was synced, so that Desk decides who is on the floor.
    pub fn known(&self) -> bool {
        self.groups.is_some()
    }

    /// Takes a sync's changes.
    pub fn apply(&mut self, delta: &DeskDelta) {
        for (key, member) in &delta.members {
            match member {
                Some(member) => self.members.insert(key.clone(), member.clone()),
                None => self.members.remove(key),
            };
        }
        if let Some(groups) = &delta.groups {
            self.groups = Some(groups.clone());
        }
        if let Some(hours) = &delta.hours {
            self.hours = hours.clone();
        }
    }

    /// What changes this roster into Desk's `members` and `groups` as read now.
    pub fn diff(&self, members: Vec<DeskMember>, groups: Vec<DeskGroup>) -> DeskDelta {
        let mut read: BTreeMap<String, DeskMember> = BTreeMap::new();
        for member in members {
            read.insert(member_key(&member.id), member);
        }
        let mut changed: Vec<(String, Option<DeskMember>)> = self
            .members
            .keys()
            .filter(|key| !read.contains_key(*key))
            .map(|key| (key.clone(), None))
            .collect();
        for (key, member) in read {
            if self.members.get(&key) != Some(&member) {
                changed.push((key, Some(member)));
            }
        }
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        DeskDelta {
            members: changed,
            groups: (self.groups.as_ref() != Some(&groups)).then_some(groups),
            hours: None,
        }
    }

    /// `delta` with Desk's business hours as read now, when they differ from these.
    pub fn with_hours(&self, mut delta: DeskDelta, hours: Vec<String>) -> DeskDelta {
        if hours != self.hours {
            delta.hours = Some(hours);
        }
        delta
    }

    /// The name Desk gives group `id`.
    pub fn group_name(&self, id: GroupId) -> Option<&str> {
        self.groups
            .as_ref()?
            .iter()
            .find(|group| group.id == id)
            .map(|group| group.name.as_str())
    }
}

/// Desk's `WorkTimeConfig` periods (`("Monday", [("09:00", "11:30")])`) as weekly schedule
/// entries (`"mon 09:00-11:30"`); a day Desk names that is not a weekday is skipped.
pub fn weekly_entries(days: &[(String, Vec<(String, String)>)]) -> Vec<String> {
    const DAYS: [(&str, &str); 7] = [
        ("monday", "mon"),
        ("tuesday", "tue"),
        ("wednesday", "wed"),
        ("thursday", "thu"),
        ("friday", "fri"),
        ("saturday", "sat"),
        ("sunday", "sun"),
    ];
    let mut entries = Vec::new();
    for (day, periods) in days {
        let day = day.trim().to_ascii_lowercase();
        let Some((_, short)) = DAYS
            .iter()
            .find(|(long, short)| *long == day || *short == day)
        else {
            continue;
        };
        for (start, end) in periods {
            entries.push(format!("{short} {}-{}", start.trim(), end.trim()));
        }
    }
    entries
}

/// The business hours groups of `app` without hours of their own take from Desk: Desk's
/// `WorkTimeConfig` in the app's zone, when `[apps.desk] hours` is on and Desk gave some
/// that read as a schedule.
pub fn hours(app: &App, desk: &DeskRoster) -> Option<super::schedule::Schedule> {
    let wanted = app.desk.as_ref().is_some_and(|config| config.hours);
    if !wanted || desk.hours.is_empty() {
        return None;
    }
    match super::schedule::Schedule::parse(app.zone.name(), &desk.hours, &[]) {
        Ok(schedule) => Some(schedule),
        Err(message) => {
            tracing::warn!(app = %app.id, message, "Desk's business hours do not read as a schedule: groups without hours stay open");
            None
        }
    }
}

/// Where one of an agent's fields comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config file.
    #[default]
    File,
    /// UpsertAgent (or SetAgentStatus, for a status).
    Grpc,
    /// Tencent Desk, by sync.
    Desk,
    /// Nobody gave it: the default.
    Default,
}

impl Source {
    /// The name the API and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Grpc => "grpc",
            Source::Desk => "desk",
            Source::Default => "default",
        }
    }
}

/// Where each of an agent's fields comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    /// The display name.
    pub name: Source,
    /// The groups.
    pub groups: Source,
    /// The capacity.
    pub capacity: Source,
    /// Skills, attributes, shift and the defined status.
    pub profile: Source,
}

impl Sources {
    /// Every field from one place.
    pub fn all(source: Source) -> Self {
        Self {
            name: source,
            groups: source,
            capacity: source,
            profile: source,
        }
    }
}

/// The roster's run-time changes over the file with Desk's roster applied: `overlays` are
/// the agents gRPC put or removed. With sync off for `app`, or before the first roster, the
/// overlays as they are.
pub fn compose(app: &App, overlays: &RosterChanges, desk: &DeskRoster) -> RosterChanges {
    if !app.desk_sync || !desk.known() {
        return overlays.clone();
    }
    let mut composed = RosterChanges::new();
    // Everyone the file or gRPC defines whom Desk does not list (or spells differently)
    // is off the floor.
    let hide = |id: &AgentId, composed: &mut RosterChanges| {
        let listed = desk
            .members
            .get(&member_key(id))
            .is_some_and(|member| member.id == *id);
        if !listed {
            composed.insert(id.clone(), None);
        }
    };
    for agent in app.agents() {
        hide(&agent.id, &mut composed);
    }
    let mut overlay_of: BTreeMap<String, &Option<Arc<Agent>>> = BTreeMap::new();
    for (id, overlay) in overlays {
        hide(id, &mut composed);
        overlay_of.insert(member_key(id), overlay);
    }
    for (key, member) in &desk.members {
        let (base, source) = match overlay_of.get(key) {
            Some(Some(agent)) => (Some(&agent.spec), Source::Grpc),
            // Removed over gRPC: the file's profile no longer applies; Desk's member stays.
            Some(None) => (None, Source::Default),
            None => match app.agent_by_key(key) {
                Some(agent) => (Some(&agent.spec), Source::File),
                None => (None, Source::Default),
            },
        };
        if let Some(agent) = member_agent(app, member, base, source) {
            composed.insert(member.id.clone(), Some(Arc::new(agent)));
        }
    }
    composed
}

/// A Desk member as an agent: Desk's id, groups and capacity over `base`'s profile (from
/// `source`).
fn member_agent(
    app: &App,
    member: &DeskMember,
    base: Option<&AgentConfig>,
    source: Source,
) -> Option<Agent> {
    let mut spec = base.cloned().unwrap_or_else(|| AgentConfig {
        id: member.id.clone(),
        name: None,
        groups: Vec::new(),
        capacity: 1,
        status: Default::default(),
        skills: BTreeMap::new(),
        attributes: BTreeMap::new(),
        shift: None,
    });
    spec.id = member.id.clone();
    spec.groups = member.groups.clone();
    spec.capacity = member.capacity.min(super::MAX_CAPACITY);
    let name = if spec.name.is_some() {
        source
    } else {
        spec.name = member.name.clone().filter(|name| !name.trim().is_empty());
        if spec.name.is_some() {
            Source::Desk
        } else {
            Source::Default
        }
    };
    let compiled = Agent::compile(&spec, app.zone).or_else(|fault| {
        // A shift that no longer compiles: the member routes without the profile's shift.
        tracing::warn!(app = %app.id, agent = %member.id, message = fault.message, "a Desk member's shift does not compile: routing without it");
        spec.shift = None;
        Agent::compile(&spec, app.zone)
    });
    let mut agent = compiled.ok()?;
    agent.sources = Sources {
        name,
        groups: Source::Desk,
        capacity: Source::Desk,
        profile: source,
    };
    Some(agent)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use handoff_core::config::AgentStatus;

    use super::*;
    use crate::engine::{Catalog, roster};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// An app synced from Desk: the file defines Ann (in its own spelling) with a skill,
    /// and Zed, whom Desk does not list.
    fn catalog(desk: bool) -> Result<Catalog, Box<dyn std::error::Error>> {
        let mut text = r#"
            [[apps]]
            sdk_app_id = 1400000001
            [[apps.groups]]
            id = 6521
            name = "general"
            [[apps.agents]]
            id = "Ann@Example.com"
            name = "Ann of the file"
            groups = [6521]
            skills = { billing = 5 }
            status = "away"
            [[apps.agents]]
            id = "zed@example.com"
            groups = [6521]
        "#
        .to_owned();
        if desk {
            text.push_str(
                "[apps.desk]\napi = \"https://adminapisgp.im.qcloud.com\"\nadmin = \"a\"\nsecret_key = \"k\"\n",
            );
        }
        let config = handoff_core::config::parse(&text, Path::new("t.toml"), Vec::new())?;
        Ok(Catalog::from_config(&config, Path::new("t.toml"))?)
    }

    fn member(id: &str, name: Option<&str>, groups: &[u64], capacity: u32) -> DeskMember {
        DeskMember {
            id: AgentId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            name: name.map(str::to_owned),
            groups: groups
                .iter()
                .map(|g| GroupId::new(*g).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            capacity,
        }
    }

    fn desk_of(members: Vec<DeskMember>) -> DeskRoster {
        let mut desk = DeskRoster::default();
        let groups = vec![DeskGroup {
            id: GroupId::new(7000).unwrap_or_else(|e| panic!("{e}")),
            name: "desk only".into(),
            capacity: 4,
        }];
        desk.apply(&desk.diff(members, groups));
        desk
    }

    #[test]
    fn desk_decides_who_exists_and_the_file_adds_what_desk_does_not_know() -> TestResult {
        let catalog = catalog(true)?;
        let app = catalog.apps().next().ok_or("no app")?;
        let desk = desk_of(vec![
            member("ann@example.com", Some("Ann"), &[7000], 3),
            member("new@example.com", Some("Newcomer"), &[7000], 2),
        ]);
        let changes = compose(app, &RosterChanges::new(), &desk);
        let floor = roster(app, &changes);
        let ids: Vec<&str> = floor.iter().map(|agent| agent.id.as_str()).collect();
        assert_eq!(
            ids,
            ["ann@example.com", "new@example.com"],
            "Zed and the file's spelling are off"
        );
        let ann = floor[0];
        assert_eq!((ann.capacity, ann.groups.len()), (3, 1));
        assert_eq!(ann.name.as_deref(), Some("Ann of the file"));
        assert_eq!((ann.skill("billing"), ann.status), (5, AgentStatus::Away));
        assert_eq!(
            ann.sources,
            Sources {
                name: Source::File,
                groups: Source::Desk,
                capacity: Source::Desk,
                profile: Source::File,
            }
        );
        let new = floor[1];
        assert_eq!(new.name.as_deref(), Some("Newcomer"));
        assert_eq!(
            (new.sources.name, new.sources.profile),
            (Source::Desk, Source::Default)
        );

        // gRPC's definition goes over the file's; a gRPC removal leaves Desk's member bare.
        let mut overlays = RosterChanges::new();
        let mut spec = ann.spec.clone();
        spec.skills.insert("refunds".into(), 2);
        spec.name = None;
        let put = Agent::compile_overlay(&spec, app.zone).map_err(|fault| fault.message)?;
        overlays.insert(put.id.clone(), Some(Arc::new(put)));
        overlays.insert(AgentId::parse("new@example.com")?, None);
        let changes = compose(app, &overlays, &desk);
        let floor = roster(app, &changes);
        assert_eq!(floor[0].skill("refunds"), 2);
        assert_eq!(
            (floor[0].name.as_deref(), floor[0].sources.name),
            (Some("Ann"), Source::Desk)
        );
        assert_eq!(floor[0].sources.profile, Source::Grpc);
        assert_eq!(floor[1].sources.profile, Source::Default);
        Ok(())
    }

    #[test]
    fn before_the_first_roster_and_without_sync_the_file_alone_routes() -> TestResult {
        let synced = catalog(true)?;
        let app = synced.apps().next().ok_or("no app")?;
        let unknown = DeskRoster::default();
        assert!(compose(app, &RosterChanges::new(), &unknown).is_empty());
        let off = catalog(false)?;
        let app = off.apps().next().ok_or("no app")?;
        let desk = desk_of(vec![member("new@example.com", None, &[6521], 1)]);
        assert!(compose(app, &RosterChanges::new(), &desk).is_empty());
        Ok(())
    }

    #[test]
    fn a_diff_names_what_changed_and_applying_it_reaches_what_desk_holds() -> TestResult {
        let groups = |name: &str| {
            vec![DeskGroup {
                id: GroupId::new(1).unwrap_or_else(|e| panic!("{e}")),
                name: name.into(),
                capacity: 2,
            }]
        };
        let mut held = DeskRoster::default();
        let first = held.diff(
            vec![
                member("a@x.io", None, &[1], 1),
                member("b@x.io", None, &[1], 1),
            ],
            groups("g"),
        );
        assert_eq!((first.members.len(), first.groups.is_some()), (2, true));
        held.apply(&first);
        assert!(
            held.diff(
                vec![
                    member("b@x.io", None, &[1], 1),
                    member("A@x.io", None, &[1], 1)
                ],
                groups("g")
            )
            .members
            .len()
                == 1,
            "a respelt e-mail is a changed member"
        );
        let next = held.diff(vec![member("b@x.io", None, &[1], 4)], groups("g"));
        assert_eq!(next.removed().collect::<Vec<_>>(), ["a@x.io"]);
        assert_eq!((next.members.len(), next.groups.is_none()), (2, true));
        held.apply(&next);
        assert!(
            held.diff(vec![member("b@x.io", None, &[1], 4)], groups("g"))
                .is_empty()
        );
        assert_eq!(held.group_name(GroupId::new(1)?), Some("g"));
        Ok(())
    }

    #[test]
    fn desks_work_time_reads_as_weekly_entries() {
        let days = vec![
            (
                "Monday".to_owned(),
                vec![
                    ("09:00".to_owned(), "11:30".to_owned()),
                    ("13:00".to_owned(), "18:00".to_owned()),
                ],
            ),
            (
                "Sunday".to_owned(),
                vec![("00:00".to_owned(), "24:00".to_owned())],
            ),
            (
                "Holiday".to_owned(),
                vec![("10:00".to_owned(), "12:00".to_owned())],
            ),
        ];
        assert_eq!(
            weekly_entries(&days),
            ["mon 09:00-11:30", "mon 13:00-18:00", "sun 00:00-24:00"]
        );
    }
}
