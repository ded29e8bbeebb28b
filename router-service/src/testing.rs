//! What the router's unit tests share: a two-agent floor and walk-in handoffs on it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime},
};

use std::sync::Arc;

use handoff_core::{
    config::{AgentConfig, AgentStatus},
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use crate::{
    engine::{Catalog, Customer, Handoff},
    store::{Change, Lifetimes, SessionEvent, SessionEventKind, record::from_ms},
};

/// App 1400000001: group 6521 with ann (capacity 2) and bob (capacity 3).
pub const TWO_AGENTS: &str = r#"
    [[apps]]
    sdk_app_id = 1400000001
    [[apps.groups]]
    id = 6521
    name = "general"
    [[apps.agents]]
    id = "ann@example.com"
    groups = [6521]
    capacity = 2
    [[apps.agents]]
    id = "bob@example.com"
    groups = [6521]
    capacity = 3
"#;

/// What the fixtures fail with.
pub type Error = Box<dyn std::error::Error>;

/// The app every fixture is for.
pub fn app_id() -> Result<SdkAppId, Error> {
    Ok(SdkAppId::new(1_400_000_001)?)
}

/// [`TWO_AGENTS`] compiled.
pub fn catalog() -> Result<Catalog, Error> {
    let config = handoff_core::config::parse(TWO_AGENTS, Path::new("t.toml"), Vec::new())?;
    Ok(Catalog::from_config(&config, Path::new("t.toml"))?)
}

/// A handoff of `session`, from a customer of its own, at `at`.
pub fn handoff(session: &str, at: SystemTime) -> Result<Handoff, Error> {
    Ok(Handoff {
        app: app_id()?,
        session: SessionId::parse(session)?,
        client_user: ClientUserId::parse(format!("customer-of-{session}"))?,
        event_time: at,
        platform: String::new(),
        channel: String::new(),
        attributes: BTreeMap::new(),
    })
}

/// Reservations held for `ttl`; confirmed sessions for the default eight hours.
pub fn lifetimes(ttl: Duration) -> Lifetimes {
    Lifetimes {
        assignment_ttl: ttl,
        max_session: Duration::from_secs(8 * 3600),
    }
}

/// Every kind of change the router logs, one of each, in an order where each one shows
/// on [`TWO_AGENTS`] after a decision reserved bob for customer c-1 at 1 s: bob serves
/// session s-1, then is away; carol joins, ann leaves; customer c-2 is a VIP; links made
/// before 2.5 s are forgotten. All at 2 s.
pub fn every_change() -> Result<Vec<Change>, Error> {
    let at = from_ms(2_000);
    let carol: AgentConfig = serde_json::from_value(serde_json::json!({
        "id": "carol@example.com", "groups": [6521], "capacity": 4
    }))?;
    let app = catalog()?;
    let app = app.app(app_id()?).ok_or("no app")?;
    let mut vip = Customer::unknown(ClientUserId::parse("c-2")?);
    vip.known = true;
    vip.tier = Some("vip".into());
    let changes = vec![
        Change::Session(SessionEvent {
            session: SessionId::parse("s-1")?,
            kind: SessionEventKind::Assigned,
            agent: Some(AgentId::parse("bob@example.com")?),
            from_agent: None,
            customer: Some(ClientUserId::parse("c-1")?),
            at,
            id: Some("req-1".into()),
        }),
        Change::SetStatus {
            agent: AgentId::parse("bob@example.com")?,
            status: AgentStatus::Away,
            at,
            id: Some("req-2".into()),
            desk: false,
        },
        Change::PutAgent(Arc::new(app.check_agent(&carol).map_err(|f| f.message)?)),
        Change::RemoveAgent(AgentId::parse("ann@example.com")?),
        Change::PutCustomer(vip),
        Change::ForgetLinks {
            before: from_ms(2_500),
        },
        Change::DeskRoster(crate::engine::desk::DeskDelta {
            members: vec![(
                "bob@example.com".into(),
                Some(crate::engine::desk::DeskMember {
                    id: AgentId::parse("bob@example.com")?,
                    name: Some("Bob".into()),
                    groups: vec![handoff_core::id::GroupId::new(6521)?],
                    capacity: 4,
                }),
            )],
            groups: Some(vec![crate::engine::desk::DeskGroup {
                id: handoff_core::id::GroupId::new(6521)?,
                name: "general".into(),
                capacity: 4,
            }]),
            hours: None,
        }),
        Change::DeskLoad(vec![(AgentId::parse("bob@example.com")?, 2)]),
    ];
    // A new kind of change must be added above: this match stops compiling without it.
    let mut kinds = [false; 8];
    for change in &changes {
        kinds[match change {
            Change::Session(_) => 0,
            Change::SetStatus { .. } => 1,
            Change::PutAgent(_) => 2,
            Change::RemoveAgent(_) => 3,
            Change::PutCustomer(_) => 4,
            Change::ForgetLinks { .. } => 5,
            Change::DeskRoster(_) => 6,
            Change::DeskLoad(_) => 7,
        }] = true;
    }
    assert!(kinds.iter().all(|k| *k), "every kind is in the list");
    Ok(changes)
}

/// A filesystem of its own for a test, small enough to fill: a tmpfs mounted on a directory
/// under the system's temp dir, unmounted when dropped. Mounting needs root (CI runs as
/// root); elsewhere the test says it skipped, except under `CI=true`, where it fails.
pub struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    /// A disk of `bytes`, or `None` (outside CI) where mounting is not allowed.
    pub fn mount(name: &str, bytes: u64) -> Result<Option<Self>, Error> {
        let dir = std::env::temp_dir().join(format!(
            "handoff-disk-{name}-{}-{:?}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if mounted {
            return Ok(Some(Self { dir }));
        }
        let _ = std::fs::remove_dir(&dir);
        if std::env::var_os("CI").is_some() {
            return Err("cannot mount a tmpfs for the full-disk test (CI runs as root)".into());
        }
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        Ok(None)
    }

    /// The disk's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Takes every byte left with a file of its own.
    pub fn fill(&self) -> Result<(), Error> {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.dir.join("filler"))?;
        let block = vec![0u8; 4096];
        loop {
            match filler.write(&block) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(28) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Takes every byte left but `room` (rounded to the page the filesystem counts in).
    pub fn leave(&self, room: u64) -> Result<(), Error> {
        self.fill()?;
        let filler = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("filler"))?;
        let len = filler.metadata()?.len();
        filler.set_len(len.saturating_sub(room))?;
        Ok(())
    }

    /// Gives the bytes `fill` took back.
    pub fn free(&self) -> Result<(), Error> {
        Ok(std::fs::remove_file(self.dir.join("filler"))?)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
