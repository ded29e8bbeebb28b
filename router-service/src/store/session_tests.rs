//! Sessions through a store's one way in: reservations confirmed, moved and released by
//! events, deadlines, retries, and any order of delivery giving the same state.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime},
};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SessionId},
};
use proptest::prelude::*;

use super::{
    Applied, Change, LocalStore, Look, SessionEvent, SessionEventKind, Store, record::to_ms,
};
use crate::{
    engine::{self, App, Catalog, SessionState},
    testing::{self, Error, TWO_AGENTS, app_id, handoff, lifetimes},
};

type TestResult = Result<(), Error>;

/// Ten o'clock on the test's day, by every clock.
fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn app_with(extra: &str) -> Result<(Catalog, std::sync::Arc<App>), Error> {
    let text = TWO_AGENTS.replacen(
        "sdk_app_id = 1400000001\n",
        &format!("sdk_app_id = 1400000001\n{extra}\n"),
        1,
    );
    let config = handoff_core::config::parse(&text, Path::new("t.toml"), Vec::new())?;
    let catalog = Catalog::from_config(&config, Path::new("t.toml"))?;
    let app = catalog.app(app_id()?).ok_or("no app")?.clone();
    Ok((catalog, app))
}

fn agent(name: &str) -> Result<AgentId, Error> {
    Ok(AgentId::parse(format!("{name}@example.com"))?)
}

/// AssignHuman for `session` asked at `at`; the agent reserved.
async fn reserve(
    store: &impl Store,
    app: &App,
    session: &str,
    at: SystemTime,
) -> Result<Option<String>, Error> {
    let handoff = handoff(session, at)?;
    let assignment = store
        .assign(app, &handoff, at, |state| {
            engine::decide(app, &handoff, state, at)
        })
        .await?;
    Ok(assignment
        .answer()
        .reserved
        .as_ref()
        .map(|a| a.as_str().to_owned()))
}

fn event(
    session: &str,
    kind: SessionEventKind,
    agent_name: Option<&str>,
    at: SystemTime,
    id: Option<&str>,
) -> Result<Change, Error> {
    Ok(Change::Session(SessionEvent {
        session: SessionId::parse(session)?,
        kind,
        agent: agent_name.map(agent).transpose()?,
        from_agent: None,
        customer: Some(ClientUserId::parse(format!("customer-of-{session}"))?),
        at,
        id: id.map(str::to_owned),
    }))
}

/// What ListAgents and ListSessions would show: each agent's (active, confirmed), and each
/// session holding a seat with its state and agent.
type Picture = (
    BTreeMap<String, (u32, u32)>,
    Vec<(String, SessionState, String)>,
);

/// What the features beyond the peers keep of the same day: each agent's missed offers,
/// the sessions it took (fair share) and whether it finished serving one (wrap-up, by the
/// router's clock, so only whether), and the group's waits.
type Kept = (
    BTreeMap<String, (Option<engine::Misses>, Vec<String>, bool)>,
    Option<engine::Waits>,
);

async fn kept(store: &impl Store, app: &App, now: SystemTime) -> Result<Kept, Error> {
    let kept = store
        .inspect(app, Look::default(), now, |state| {
            let agents = ["ann", "bob"]
                .into_iter()
                .filter_map(|name| agent(name).ok())
                .map(|id| {
                    let taken = state
                        .taken(&id)
                        .map(|taken| taken.0.keys().cloned().collect())
                        .unwrap_or_default();
                    let finished = state.load(&id).last_finished.is_some();
                    (
                        id.to_string(),
                        (state.misses(&id).cloned(), taken, finished),
                    )
                })
                .collect();
            (agents, state.waits_of("6521").cloned())
        })
        .await?;
    Ok(kept)
}

/// Every feature that keeps state of its own, on (a wait-based overflow makes the stores
/// keep waits).
const FEATURES: &str = r#"
wrap_up = "60s"
max_missed = 2
fair_share = { sessions = 10, window = "1h" }
[[apps.rules]]
name = "everyone"
group = 6521
overflow_when = { wait_above = "1h" }
overflow = [{ group = 6521 }]
"#;

async fn picture(store: &impl Store, app: &App, now: SystemTime) -> Result<Picture, Error> {
    let look = Look {
        customer: None,
        sessions: true,
    };
    let picture = store
        .inspect(app, look, now, |state| {
            let loads = ["ann", "bob"]
                .into_iter()
                .filter_map(|name| agent(name).ok())
                .map(|id| {
                    let load = state.load(&id);
                    (id.to_string(), (load.active, load.confirmed))
                })
                .collect();
            let sessions = state
                .sessions()
                .into_iter()
                .map(|s| {
                    let agent = s.agent.map(|a| a.to_string()).unwrap_or_default();
                    (s.session.to_string(), s.state, agent)
                })
                .collect();
            (loads, sessions)
        })
        .await?;
    Ok(picture)
}

fn loads(pairs: &[(&str, (u32, u32))]) -> BTreeMap<String, (u32, u32)> {
    pairs
        .iter()
        .map(|(name, load)| (format!("{name}@example.com"), *load))
        .collect()
}

/// A directory of the test's own under the system's temp dir (the test removes it).
fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "handoff-{name}-{}-{}",
        std::process::id(),
        to_ms(SystemTime::now())
    ))
}

fn store() -> LocalStore {
    LocalStore::in_memory(lifetimes(Duration::from_secs(1800)))
}

#[tokio::test]
async fn a_reservation_is_confirmed_moved_to_tencents_choice_and_released() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    assert_eq!(
        reserve(&store, &app, "s1", t(0)).await?.as_deref(),
        Some("ann@example.com")
    );
    assert_eq!(
        picture(&store, &app, t(1)).await?.0,
        loads(&[("ann", (1, 0)), ("bob", (0, 0))])
    );

    // Tencent gave it to ann: confirmed.
    assert_eq!(
        store
            .apply(&app, event("s1", Assigned, Some("ann"), t(2), None)?, t(2))
            .await?,
        Applied::Recorded
    );
    let (loads_now, sessions) = picture(&store, &app, t(3)).await?;
    assert_eq!(loads_now, loads(&[("ann", (1, 1)), ("bob", (0, 0))]));
    assert_eq!(
        sessions,
        [(
            "s1".into(),
            SessionState::Confirmed,
            "ann@example.com".into()
        )]
    );

    // s2 is reserved on ann (1/2 < 0/3? no: bob 0/3 ranks first), Tencent picks ann instead.
    assert_eq!(
        reserve(&store, &app, "s2", t(4)).await?.as_deref(),
        Some("bob@example.com")
    );
    store
        .apply(&app, event("s2", Assigned, Some("ann"), t(5), None)?, t(5))
        .await?;
    assert_eq!(
        picture(&store, &app, t(6)).await?.0,
        loads(&[("ann", (2, 2)), ("bob", (0, 0))])
    );

    // A transfer moves the seat; an end releases it; a failure releases a reservation.
    store
        .apply(
            &app,
            event("s2", Transferred, Some("bob"), t(7), None)?,
            t(7),
        )
        .await?;
    assert_eq!(
        picture(&store, &app, t(8)).await?.0,
        loads(&[("ann", (1, 1)), ("bob", (1, 1))])
    );
    store
        .apply(&app, event("s1", Ended, None, t(9), None)?, t(9))
        .await?;
    reserve(&store, &app, "s3", t(10)).await?;
    store
        .apply(&app, event("s3", Failed, None, t(11), None)?, t(11))
        .await?;
    let (loads_now, sessions) = picture(&store, &app, t(12)).await?;
    assert_eq!(loads_now, loads(&[("ann", (0, 0)), ("bob", (1, 1))]));
    assert_eq!(
        sessions,
        [(
            "s2".into(),
            SessionState::Confirmed,
            "bob@example.com".into()
        )]
    );
    Ok(())
}

#[tokio::test]
async fn late_duplicate_and_out_of_order_events_change_nothing() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    // The end arrives before the assignment it follows: no phantom load.
    store
        .apply(&app, event("s9", Ended, None, t(20), Some("r-2"))?, t(21))
        .await?;
    let late = store
        .apply(
            &app,
            event("s9", Assigned, Some("ann"), t(10), Some("r-1"))?,
            t(22),
        )
        .await?;
    assert_eq!(late, Applied::Superseded);
    // A retry of the end by its RequestID is recognised.
    let again = store
        .apply(&app, event("s9", Ended, None, t(20), Some("r-2"))?, t(23))
        .await?;
    assert_eq!(again, Applied::Duplicate);
    assert_eq!(
        picture(&store, &app, t(24)).await?,
        (loads(&[("ann", (0, 0)), ("bob", (0, 0))]), vec![])
    );

    // A status reported earlier than the one known is superseded.
    let bob = agent("bob")?;
    let status = |status, at| Change::SetStatus {
        agent: bob.clone(),
        status,
        at,
        id: None,
        desk: false,
    };
    store
        .apply(&app, status(AgentStatus::Away, t(30)), t(31))
        .await?;
    let stale = store
        .apply(&app, status(AgentStatus::Available, t(29)), t(32))
        .await?;
    assert_eq!(stale, Applied::Superseded);
    let away = store
        .inspect(&app, Look::default(), t(33), |state| state.status(&bob))
        .await?;
    assert_eq!(away, Some(AgentStatus::Away));
    Ok(())
}

#[tokio::test]
async fn seats_run_out_unconfirmed_after_confirm_timeout_and_confirmed_after_max_session()
-> TestResult {
    let (store, (_, app)) = (store(), app_with("confirm_timeout = \"2m\"")?);
    use SessionEventKind::*;
    reserve(&store, &app, "queued", t(0)).await?;
    reserve(&store, &app, "served", t(0)).await?;
    store
        .apply(
            &app,
            event("served", Assigned, Some("bob"), t(5), None)?,
            t(5),
        )
        .await?;
    assert_eq!(
        picture(&store, &app, t(119)).await?.0,
        loads(&[("ann", (1, 0)), ("bob", (1, 1))])
    );
    // Two minutes on, the unconfirmed reservation is gone; the confirmed one stays.
    assert_eq!(
        picture(&store, &app, t(121)).await?.0,
        loads(&[("ann", (0, 0)), ("bob", (1, 1))])
    );
    // After max_session (8 h) with no end, the confirmed one goes too.
    assert_eq!(
        picture(&store, &app, t(5 + 8 * 3600 + 1)).await?.0,
        loads(&[("ann", (0, 0)), ("bob", (0, 0))])
    );
    // A late confirmation of the expired reservation does seat it, on the agent named.
    store
        .apply(
            &app,
            event("queued", Assigned, Some("bob"), t(200), None)?,
            t(8 * 3600 + 10),
        )
        .await?;
    assert_eq!(
        picture(&store, &app, t(8 * 3600 + 11)).await?.0,
        loads(&[("ann", (0, 0)), ("bob", (1, 1))])
    );
    Ok(())
}

#[tokio::test]
async fn a_confirmation_of_the_reserved_agent_counts_whatever_the_clocks_say() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    // The channel's clock runs a little behind the time the user asked by.
    assert_eq!(
        reserve(&store, &app, "s1", t(10)).await?.as_deref(),
        Some("ann@example.com")
    );
    store
        .apply(&app, event("s1", Assigned, Some("ann"), t(9), None)?, t(11))
        .await?;
    assert_eq!(
        picture(&store, &app, t(12)).await?.1,
        [(
            "s1".into(),
            SessionState::Confirmed,
            "ann@example.com".into()
        )]
    );
    // Another agent reported as earlier than the ask does not move it: the ask came after.
    reserve(&store, &app, "s2", t(20)).await?;
    store
        .apply(
            &app,
            event("s2", Assigned, Some("ann"), t(19), None)?,
            t(21),
        )
        .await?;
    let (_, sessions) = picture(&store, &app, t(22)).await?;
    assert_eq!(
        sessions[1],
        (
            "s2".into(),
            SessionState::Provisional,
            "bob@example.com".into()
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_session_that_ended_decides_afresh_when_it_asks_again() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    assert_eq!(
        reserve(&store, &app, "s1", t(0)).await?.as_deref(),
        Some("ann@example.com")
    );
    assert_eq!(
        reserve(&store, &app, "s1", t(1)).await?.as_deref(),
        Some("ann@example.com"),
        "a retry replays"
    );
    assert_eq!(
        picture(&store, &app, t(2)).await?.0,
        loads(&[("ann", (1, 0)), ("bob", (0, 0))])
    );
    store
        .apply(
            &app,
            event("s1", SessionEventKind::Ended, None, t(3), None)?,
            t(3),
        )
        .await?;
    // ann is idle longer now than bob? No: ann was assigned at 0, bob never: bob ranks first
    // among equals by load; the point is that it decides and reserves again.
    let again = reserve(&store, &app, "s1", t(4)).await?;
    assert!(again.is_some());
    let (loads_now, sessions) = picture(&store, &app, t(5)).await?;
    assert_eq!(loads_now.values().map(|(active, _)| active).sum::<u32>(), 1);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].1, SessionState::Provisional);
    Ok(())
}

#[tokio::test]
async fn the_embedded_store_reads_sessions_back_after_a_restart() -> TestResult {
    let dir = scratch("sessions");
    let path = dir.join("state.redb");
    let (catalog, app) = app_with("")?;
    let lifetimes = lifetimes(Duration::from_secs(1800));
    use SessionEventKind::*;
    let before = {
        let store = LocalStore::embedded(&path, lifetimes, &catalog, t(0))?;
        reserve(&store, &app, "s1", t(0)).await?;
        reserve(&store, &app, "s2", t(0)).await?;
        store
            .apply(
                &app,
                event("s1", Assigned, Some("bob"), t(1), Some("r-1"))?,
                t(1),
            )
            .await?;
        picture(&store, &app, t(2)).await?
    };
    let store = LocalStore::embedded(&path, lifetimes, &catalog, t(2))?;
    let after = picture(&store, &app, t(2)).await?;
    let retry = store
        .apply(
            &app,
            event("s1", Assigned, Some("bob"), t(1), Some("r-1"))?,
            t(3),
        )
        .await?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(after, before);
    assert_eq!(after.0, loads(&[("ann", (0, 0)), ("bob", (2, 1))]));
    assert_eq!(
        retry,
        Applied::Duplicate,
        "report identities survive the restart"
    );
    Ok(())
}

#[tokio::test]
async fn an_unconfirmed_seat_expires_alike_before_and_after_restarts_and_is_forgotten_on_time()
-> TestResult {
    let dir = scratch("expiry");
    let path = dir.join("state.redb");
    let (catalog, app) = app_with("")?;
    let lifetimes = lifetimes(Duration::from_secs(10));
    let open = |at| LocalStore::embedded(&path, lifetimes, &catalog, at);
    let nobody = loads(&[("ann", (0, 0)), ("bob", (0, 0))]);

    let store = open(t(0))?;
    reserve(&store, &app, "s1", t(0)).await?;
    // Expired while running (not written: the file keeps the record whose deadline passed).
    assert_eq!(
        picture(&store, &app, t(20)).await?,
        (nobody.clone(), vec![])
    );
    drop(store);

    // Read back at a restart, it expires the same way.
    let store = open(t(30))?;
    assert_eq!(
        picture(&store, &app, t(30)).await?,
        (nobody.clone(), vec![])
    );
    drop(store);
    let remembered = |at| -> Result<bool, Error> {
        let store = open(at)?;
        drop(store);
        let (journal, loaded) = super::embedded::Journal::open(&path)?;
        drop(journal);
        let known = loaded.get(&app_id()?).is_some_and(|app| {
            app.sessions
                .iter()
                .any(|(session, _)| session.as_str() == "s1")
        });
        Ok(known)
    };
    // Remembered for max_session from its deadline (t(10)), however many restarts noticed it.
    let max_session = 8 * 3600;
    let remembered_before = remembered(t(10 + max_session - 5))?;
    let remembered_after = remembered(t(10 + max_session + 5))?;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(remembered_before, "forgotten too early");
    assert!(!remembered_after, "still remembered after max_session");
    Ok(())
}

/// One session's life, as a channel would report it, after AssignHuman reserved it.
#[derive(Debug, Clone)]
struct Life {
    /// Who takes it first (0 ann, 1 bob), or nobody (the transfer failed).
    taken_by: Option<usize>,
    /// Who it is transferred to afterwards, if anyone.
    transferred_to: Option<usize>,
    /// Whether it ends.
    ends: bool,
    /// How far the channel's clock runs behind (seconds): enough puts events before the
    /// reservation.
    skew: u64,
}

fn life() -> impl Strategy<Value = Life> {
    (
        proptest::option::of(0usize..2),
        proptest::option::of(0usize..2),
        any::<bool>(),
        0u64..80,
    )
        .prop_map(|(taken_by, transferred_to, ends, skew)| Life {
            taken_by,
            transferred_to: taken_by.and(transferred_to),
            ends,
            skew,
        })
}

/// The events of `lives`, each session's in the order they happened, with ids.
fn events(lives: &[Life]) -> Result<Vec<Change>, Error> {
    use SessionEventKind::*;
    let names = ["ann", "bob"];
    let mut all = Vec::new();
    for (n, life) in lives.iter().enumerate() {
        let session = format!("p{n}");
        let at = |step: u64| t(100 + n as u64 * 10 + step - life.skew);
        let id = |step: u64| format!("{session}-{step}");
        match life.taken_by {
            None => all.push(event(&session, Failed, None, at(1), Some(&id(1)))?),
            Some(first) => {
                all.push(event(
                    &session,
                    Assigned,
                    Some(names[first]),
                    at(1),
                    Some(&id(1)),
                )?);
                if let Some(next) = life.transferred_to {
                    all.push(event(
                        &session,
                        Transferred,
                        Some(names[next]),
                        at(2),
                        Some(&id(2)),
                    )?);
                }
            }
        }
        if life.ends {
            all.push(event(&session, Ended, None, at(3), Some(&id(3)))?);
        }
    }
    Ok(all)
}

proptest! {
    /// However the events of a day are shuffled and repeated, the loads and sessions end
    /// the same as when each arrived once and in order, and so does what the features
    /// beyond the peers keep (misses, fair share's seats, wrap-up, waits).
    #[test]
    fn any_order_and_any_repetition_end_in_the_same_state(
        lives in proptest::collection::vec(life(), 1..5),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
        repeats in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let fail = |e: Error| TestCaseError::fail(e.to_string());
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (in_order, shuffled) = runtime.block_on(async {
            let (_, app) = app_with(FEATURES).map_err(fail)?;
            let in_order = events(&lives).map_err(fail)?;
            let mut shuffled = in_order.clone();
            for (n, swap) in order.iter().enumerate() {
                let len = shuffled.len();
                shuffled.swap(n % len, swap.index(len));
            }
            for repeat in &repeats {
                let again = shuffled[repeat.index(shuffled.len())].clone();
                shuffled.push(again);
            }
            let mut pictures = Vec::new();
            for stream in [in_order, shuffled] {
                let store = store();
                for n in 0..lives.len() {
                    reserve(&store, &app, &format!("p{n}"), t(50)).await.map_err(fail)?;
                }
                for change in stream {
                    store.apply(&app, change, t(500)).await.map_err(|e| fail(e.into()))?;
                }
                let picture = picture(&store, &app, t(501)).await.map_err(fail)?;
                pictures.push((picture, kept(&store, &app, t(501)).await.map_err(fail)?));
            }
            Ok::<_, TestCaseError>((pictures[0].clone(), pictures[1].clone()))
        })?;
        prop_assert_eq!(in_order, shuffled);
    }
}

#[test]
fn the_fixture_days_cover_every_kind_of_event() -> TestResult {
    let lives = [
        Life {
            taken_by: Some(0),
            transferred_to: Some(1),
            ends: true,
            skew: 0,
        },
        Life {
            taken_by: None,
            transferred_to: None,
            ends: false,
            skew: 70,
        },
    ];
    let kinds: Vec<SessionEventKind> = events(&lives)?
        .into_iter()
        .filter_map(|change| match change {
            Change::Session(event) => Some(event.kind),
            _ => None,
        })
        .collect();
    use SessionEventKind::*;
    assert_eq!(kinds, [Assigned, Transferred, Ended, Failed]);
    let _ = testing::catalog()?;
    Ok(())
}

/// The previous agent `store` knows for `customer`.
async fn previous_of(
    store: &impl Store,
    app: &App,
    customer: &str,
    now: SystemTime,
) -> Result<Option<String>, Error> {
    let customer = ClientUserId::parse(customer)?;
    let look = Look {
        customer: Some(&customer),
        sessions: false,
    };
    Ok(store
        .inspect(app, look, now, |state| {
            state
                .last_agent(&customer)
                .map(|(agent, _)| agent.as_str().to_owned())
        })
        .await?)
}

#[tokio::test]
async fn previous_agents_are_forgotten_once_linked_before_the_cut_and_stay_forgotten() -> TestResult
{
    let dir = scratch("links");
    let path = dir.join("state.redb");
    let (catalog, app) = app_with("")?;
    let lifetimes = lifetimes(Duration::from_secs(1800));
    let (old, new) = ("customer-of-s1", "customer-of-s2");
    let seen = {
        let store = LocalStore::embedded(&path, lifetimes, &catalog, t(0))?;
        reserve(&store, &app, "s1", t(0)).await?;
        reserve(&store, &app, "s2", t(10)).await?;
        let cut = Change::ForgetLinks { before: t(5) };
        assert_eq!(store.apply(&app, cut, t(11)).await?, Applied::Recorded);
        (
            previous_of(&store, &app, old, t(11)).await?,
            previous_of(&store, &app, new, t(11)).await?,
        )
    };
    // Read back after a restart: the forgetting was journaled too.
    let store = LocalStore::embedded(&path, lifetimes, &catalog, t(12))?;
    let after = (
        previous_of(&store, &app, old, t(12)).await?,
        previous_of(&store, &app, new, t(12)).await?,
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(seen.0, None, "linked before the cut: forgotten");
    assert!(seen.1.is_some(), "linked after it: kept");
    assert_eq!(after, seen);
    Ok(())
}

#[tokio::test]
async fn an_event_naming_an_agent_the_app_does_not_know_seats_nobody() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    // A session the router never saw, given to a stranger: nothing is stored.
    for n in 0..50 {
        let stranger = event(&format!("x{n}"), Assigned, Some("mallory"), t(2), None)?;
        assert_eq!(
            store.apply(&app, stranger, t(2)).await?,
            Applied::UnknownAgent
        );
    }
    // A reserved session Tencent gave to a stranger: the reservation's seat is released.
    assert_eq!(
        reserve(&store, &app, "s1", t(3)).await?.as_deref(),
        Some("ann@example.com")
    );
    let taken = event("s1", Assigned, Some("mallory"), t(4), None)?;
    assert_eq!(store.apply(&app, taken, t(4)).await?, Applied::UnknownAgent);
    assert_eq!(
        picture(&store, &app, t(5)).await?,
        (loads(&[("ann", (0, 0)), ("bob", (0, 0))]), vec![])
    );
    Ok(())
}

#[tokio::test]
async fn sessions_the_router_did_not_reserve_count_only_up_to_capacity_and_margin() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    // ann's capacity is 2 and the default margin 2: four of Tencent's own sessions count.
    let mut outcomes = Vec::new();
    for n in 0..10 {
        let own = event(&format!("t{n}"), Assigned, Some("ann"), t(2), None)?;
        outcomes.push(store.apply(&app, own, t(2)).await?);
    }
    let recorded = outcomes.iter().filter(|o| **o == Applied::Recorded).count();
    let over = outcomes
        .iter()
        .filter(|o| **o == Applied::OverCapacity)
        .count();
    assert_eq!((recorded, over), (4, 6), "{outcomes:?}");
    let (loads_now, sessions) = picture(&store, &app, t(3)).await?;
    assert_eq!(loads_now, loads(&[("ann", (4, 4)), ("bob", (0, 0))]));
    assert_eq!(sessions.len(), 4);
    // A session ann already holds may be confirmed again; one the router reserved for her
    // counts whatever her load.
    let again = event("t0", Assigned, Some("ann"), t(4), None)?;
    assert_eq!(store.apply(&app, again, t(4)).await?, Applied::Recorded);
    // Once one ends, another of Tencent's own fits again.
    store
        .apply(&app, event("t0", Ended, None, t(5), None)?, t(5))
        .await?;
    let next = event("t9", Assigned, Some("ann"), t(6), None)?;
    assert_eq!(store.apply(&app, next, t(6)).await?, Applied::Recorded);
    Ok(())
}

#[tokio::test]
async fn the_ends_of_sessions_the_router_did_not_reserve_are_remembered_in_bounded_number()
-> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    let count = super::session::MAX_STRAY_ENDS + 10;
    for n in 0..count {
        let end = event(&format!("e{n}"), Ended, None, t(20), None)?;
        store.apply(&app, end, t(21)).await?;
    }
    // The newest ends are remembered: their late assignment seats nobody. The oldest were
    // forgotten first, so theirs is taken as new.
    let newest = event(
        &format!("e{}", count - 1),
        Assigned,
        Some("ann"),
        t(10),
        None,
    )?;
    assert_eq!(store.apply(&app, newest, t(22)).await?, Applied::Superseded);
    let oldest = event("e0", Assigned, Some("ann"), t(10), None)?;
    assert_eq!(store.apply(&app, oldest, t(22)).await?, Applied::Recorded);
    Ok(())
}

#[tokio::test]
async fn a_reused_report_id_never_swallows_a_different_report() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    use SessionEventKind::*;
    reserve(&store, &app, "s1", t(1)).await?;
    reserve(&store, &app, "s2", t(1)).await?;
    let first = event("s1", Assigned, Some("ann"), t(2), Some("r-1"))?;
    assert_eq!(
        store.apply(&app, first.clone(), t(2)).await?,
        Applied::Recorded
    );
    // The same id on another session, another kind or another time is another report.
    for other in [
        event("s2", Assigned, Some("bob"), t(2), Some("r-1"))?,
        event("s1", Ended, None, t(3), Some("r-1"))?,
    ] {
        assert_eq!(store.apply(&app, other, t(3)).await?, Applied::Recorded);
    }
    // The same report again is a retry.
    assert_eq!(store.apply(&app, first, t(4)).await?, Applied::Duplicate);
    let bob = agent("bob")?;
    let status = |at| Change::SetStatus {
        agent: bob.clone(),
        status: AgentStatus::Away,
        at,
        id: Some("r-1".into()),
        desk: false,
    };
    assert_eq!(
        store.apply(&app, status(t(5)), t(5)).await?,
        Applied::Recorded
    );
    assert_eq!(
        store.apply(&app, status(t(5)), t(6)).await?,
        Applied::Duplicate
    );
    Ok(())
}

#[tokio::test]
async fn report_identities_are_remembered_in_bounded_number_oldest_forgotten_first() -> TestResult {
    let (store, (_, app)) = (store(), app_with("")?);
    let bob = agent("bob")?;
    let status = |n: usize| Change::SetStatus {
        agent: bob.clone(),
        status: AgentStatus::Available,
        at: t(10),
        id: Some(format!("r-{n}")),
        desk: false,
    };
    for n in 0..=super::MAX_SEEN {
        store.apply(&app, status(n), t(11)).await?;
    }
    // The newest is still known; the oldest was forgotten, so it is weighed again (and,
    // as old as the status known, changes nothing new).
    let newest = store.apply(&app, status(super::MAX_SEEN), t(12)).await?;
    assert_eq!(newest, Applied::Duplicate);
    let oldest = store.apply(&app, status(0), t(12)).await?;
    assert_eq!(oldest, Applied::Recorded);
    Ok(())
}
