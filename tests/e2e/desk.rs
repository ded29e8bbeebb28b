//! The floor synced from Tencent Desk, through the real servers against a fake Desk REST
//! API in the test process (which verifies the UserSig it is sent with its own verifier):
//! members added and removed, reception limits, statuses, Desk's own count of the
//! sessions each member serves, rate limits and refused credentials; on the embedded store
//! and on Redis shared by two replicas, of which one syncs.

use std::time::{Duration, Instant};

use handoff_proto::router::v1::{
    AgentSource, AgentState, AssignHumanRequest, DeskSyncStatus, ExplainAssignmentRequest,
    FieldSource, GetStatusRequest, ListAgentsRequest, ListSessionsRequest,
    router_service_client::RouterServiceClient,
};

use crate::{
    fake_desk::FakeDesk,
    redis::RedisServer,
    support::{Error, Running, Scratch, TestResult, body, launch, now_secs, request, signed_uri},
};

const APP: u64 = 1_400_000_001;
const ADMIN: &str = "administrator";
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

/// Desk's status codes as the test's config maps them.
const FREE: i64 = 1;
const REST: i64 = 2;

/// An app whose floor Desk gives: the file knows group 6521 for its rule and ann's skills;
/// Desk knows who exists and their limits. Syncs every second; seats Desk does not count
/// go after two.
fn config(desk: &FakeDesk) -> String {
    format!(
        r#"
[router]
assignment_ttl = "10m"
[gateway]
path = "/tencent/callback"
router_timeout = "500ms"
[[apps]]
sdk_app_id = {APP}
token = "xxxxyyyy"
fallback_group_id = 9000
[[apps.groups]]
id = 6521
name = "general"
[[apps.agents]]
id = "Ann@Example.com"
name = "Ann from the file"
groups = [6521]
skills = {{ billing = 5 }}
[[apps.rules]]
name = "everyone"
group = 6521
candidates = 5
[apps.desk]
api = "{url}"
admin = "{ADMIN}"
roster_every = "1s"
status_every = "1s"
reconcile_after = "2s"
timeout = "2s"
member_status = {{ "{FREE}" = "available", "{REST}" = "away", "3" = "offline" }}
"#,
        url = desk.url()
    )
}

/// State in memory (a state file another run left would hold that run's Desk roster), and
/// the secret key.
fn memory_env() -> [(&'static str, String); 2] {
    [
        ("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned()),
        key_env(),
    ]
}

/// The secret key, as an operator gives it: from the environment.
fn key_env() -> (&'static str, String) {
    ("HANDOFF__APPS__0__DESK__SECRET_KEY", KEY.to_owned())
}

async fn desk() -> FakeDesk {
    let desk = FakeDesk::start(APP, ADMIN, KEY).await;
    desk.set_max_page(2);
    desk.set_groups(vec![(6521, "general", 3), (6522, "vip", 2)]);
    desk.set_member("ann@example.com", "Ann", &[6521], 1);
    desk.set_member("bob@example.com", "Bob", &[6521, 6522], 2);
    desk.set_live("ann@example.com", FREE, 0);
    desk.set_live("bob@example.com", FREE, 0);
    desk
}

async fn client(
    running: &Running,
) -> Result<RouterServiceClient<tonic::transport::Channel>, Error> {
    let addr = running.router.ok_or("no router")?;
    Ok(RouterServiceClient::connect(format!("http://{addr}")).await?)
}

async fn agents(running: &Running) -> Result<Vec<AgentState>, Error> {
    let request = ListAgentsRequest {
        sdk_app_id: APP,
        group_id: None,
    };
    Ok(client(running)
        .await?
        .list_agents(request)
        .await?
        .into_inner()
        .agents)
}

fn row<'a>(agents: &'a [AgentState], id: &str) -> Option<&'a AgentState> {
    agents
        .iter()
        .find(|row| row.agent.as_ref().is_some_and(|agent| agent.id == id))
}

/// Waits (at most 10 s) until `check` holds of the listed agents.
async fn until(
    running: &Running,
    what: &str,
    check: impl Fn(&[AgentState]) -> bool,
) -> Result<Vec<AgentState>, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = agents(running).await?;
        if check(&listed) {
            return Ok(listed);
        }
        if Instant::now() > deadline {
            return Err(format!("never: {what}; agents: {listed:#?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agents a callback for `session` is answered with.
async fn offered(running: &Running, session: &str) -> Result<Vec<String>, Error> {
    let http = running.gateway.ok_or("no gateway")?;
    let reply = request(http, "POST", &signed_uri(now_secs()), body(session)).await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    Ok(reply.agents())
}

/// The agents holding seats, by session.
async fn seats(running: &Running) -> Result<Vec<(String, String)>, Error> {
    let sessions = client(running)
        .await?
        .list_sessions(ListSessionsRequest {
            sdk_app_id: APP,
            ..ListSessionsRequest::default()
        })
        .await?
        .into_inner()
        .sessions;
    Ok(sessions
        .into_iter()
        .map(|session| (session.session_id, session.agent_id))
        .collect())
}

/// A metric's value summed over the samples whose labels contain every one of `labels`,
/// and over every router in `routers` (on Redis, whichever replica syncs counts).
pub async fn metric(routers: &[&Running], name: &str, labels: &[&str]) -> Result<f64, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sum = 0.0;
    for running in routers {
        let addr = running.metrics.ok_or("no metrics listener")?;
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        sum += text
            .lines()
            .filter(|line| {
                line.starts_with(name) && labels.iter().all(|label| line.contains(label))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(sum)
}

/// The Desk sync as GetStatus shows it on whichever of `routers` syncs the app.
async fn desk_health(routers: &[&Running]) -> Result<DeskSyncStatus, Error> {
    let mut syncing = Vec::new();
    for running in routers {
        let status = client(running)
            .await?
            .get_status(GetStatusRequest {})
            .await?
            .into_inner();
        let desk = status.desk.into_iter().find(|desk| desk.sdk_app_id == APP);
        syncing.extend(desk.filter(|desk| desk.syncing));
    }
    match <[DeskSyncStatus; 1]>::try_from(syncing) {
        Ok([one]) => Ok(one),
        Err(all) => Err(format!("not one router syncs: {all:?}").into()),
    }
}

/// Everything the sync promises, over a running stack whose Desk is `desk`; `routers` are
/// every router sharing its state, for their metrics.
async fn the_floor_follows_desk(
    desk: &FakeDesk,
    running: &Running,
    routers: &[&Running],
) -> TestResult {
    // The first roster: Desk's members, with the file's profile for Ann (matched without
    // regard to case, listed as Desk spells her), Desk's limits and groups.
    let listed = until(running, "Desk's members are the roster", |agents| {
        row(agents, "ann@example.com").is_some() && row(agents, "bob@example.com").is_some()
    })
    .await?;
    assert!(
        row(&listed, "Ann@Example.com").is_none(),
        "the file's spelling is gone"
    );
    let ann = row(&listed, "ann@example.com").ok_or("ann")?;
    let ann_agent = ann.agent.as_ref().ok_or("agent")?;
    assert_eq!(ann.source(), AgentSource::Desk);
    assert_eq!(ann_agent.capacity, 1);
    assert_eq!(ann_agent.name, "Ann from the file");
    assert_eq!(ann_agent.skills.get("billing"), Some(&5));
    let fields = ann.fields.ok_or("fields")?;
    assert_eq!(
        (
            fields.groups(),
            fields.capacity(),
            fields.name(),
            fields.profile()
        ),
        (
            FieldSource::Desk,
            FieldSource::Desk,
            FieldSource::File,
            FieldSource::File
        )
    );
    // Explain says the same of each agent it weighs.
    let explained = client(running)
        .await?
        .explain_assignment(ExplainAssignmentRequest {
            handoff: Some(AssignHumanRequest {
                sdk_app_id: APP,
                session_id: "explained".into(),
                client_user_id: "someone".into(),
                ..AssignHumanRequest::default()
            }),
            at: None,
        })
        .await?
        .into_inner();
    let weighed = explained
        .candidates
        .iter()
        .find(|candidate| candidate.agent_id == "ann@example.com")
        .ok_or("ann is a candidate")?;
    let fields = weighed.fields.ok_or("explained fields")?;
    assert_eq!(
        (fields.capacity(), fields.profile()),
        (FieldSource::Desk, FieldSource::File)
    );
    // The round is noted once it is over (after its changes are visible).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = desk_health(routers).await?;
        if health.last_roster.is_some() && health.error.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let bob = row(&listed, "bob@example.com").ok_or("bob")?;
    assert_eq!(
        bob.agent
            .as_ref()
            .map(|a| (a.name.as_str(), a.capacity, a.group_ids.clone())),
        Some(("Bob", 2, vec![6521, 6522]))
    );
    assert_eq!(bob.fields.ok_or("fields")?.name(), FieldSource::Desk);

    // A member added in Desk is offered within a roster round.
    desk.set_member("cy@example.com", "Cy", &[6521], 1);
    desk.set_live("cy@example.com", FREE, 0);
    until(running, "cy joins", |agents| {
        row(agents, "cy@example.com").is_some()
    })
    .await?;
    let answer = offered(running, "s-1").await?;
    assert!(answer.contains(&"cy@example.com".to_owned()), "{answer:?}");

    // A changed reception limit changes capacity.
    desk.set_member("ann@example.com", "Ann", &[6521], 3);
    until(running, "ann takes three", |agents| {
        row(agents, "ann@example.com")
            .and_then(|row| row.agent.as_ref())
            .is_some_and(|agent| agent.capacity == 3)
    })
    .await?;

    // A member Desk removed is not offered, and the seat they held is freed.
    let held_by_bob = seats(running)
        .await?
        .into_iter()
        .any(|(_, agent)| agent == "bob@example.com");
    if !held_by_bob {
        // Give bob a seat: the others are marked away for one callback.
        desk.set_live("ann@example.com", REST, 0);
        desk.set_live("cy@example.com", REST, 0);
        until(running, "only bob free", |agents| {
            ["ann@example.com", "cy@example.com"].iter().all(|id| {
                row(agents, id)
                    .and_then(|row| row.agent.as_ref())
                    .is_some_and(|a| a.status == 2)
            })
        })
        .await?;
        let answer = offered(running, "s-bob").await?;
        assert_eq!(answer.first().map(String::as_str), Some("bob@example.com"));
        desk.set_live("ann@example.com", FREE, 0);
        desk.set_live("cy@example.com", FREE, 0);
        // Desk counts bob's session, so the poll leaves the seat alone.
        desk.set_live("bob@example.com", FREE, 1);
    }
    assert!(
        seats(running)
            .await?
            .iter()
            .any(|(_, agent)| agent == "bob@example.com")
    );
    desk.remove_member("bob@example.com");
    until(running, "bob leaves", |agents| {
        row(agents, "bob@example.com").is_none()
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while seats(running)
        .await?
        .iter()
        .any(|(_, agent)| agent == "bob@example.com")
    {
        assert!(Instant::now() < deadline, "bob's seat was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = offered(running, "s-2").await?;
    assert!(
        !answer.contains(&"bob@example.com".to_owned()),
        "{answer:?}"
    );

    // A status code mapped to away stops offers; back to free, they come again.
    desk.set_live("cy@example.com", REST, 0);
    until(running, "cy away", |agents| {
        row(agents, "cy@example.com")
            .and_then(|row| row.agent.as_ref())
            .is_some_and(|a| a.status == 2)
    })
    .await?;
    let cy = agents(running).await?;
    let cy = row(&cy, "cy@example.com")
        .and_then(|row| row.fields)
        .ok_or("cy's fields")?;
    assert_eq!(cy.status(), FieldSource::Desk, "the sync set the status");
    let answer = offered(running, "s-3").await?;
    assert!(!answer.contains(&"cy@example.com".to_owned()), "{answer:?}");

    // Desk counting fewer sessions than ann's seats: after the grace, the stale seats go.
    // Checked while cy is away, so that s-3 just took one of ann's (Desk has counted her
    // none all along: seats older than the grace may be gone already, this one is not).
    let ann_seats = |seats: &[(String, String)]| {
        seats
            .iter()
            .filter(|(_, agent)| agent == "ann@example.com")
            .count()
    };
    let held = seats(running).await?;
    assert!(
        held.iter()
            .any(|(session, agent)| session == "s-3" && agent == "ann@example.com"),
        "ann holds s-3's seat: {held:?}"
    );
    desk.set_live("ann@example.com", FREE, 0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while ann_seats(&seats(running).await?) > 0 {
        assert!(
            Instant::now() < deadline,
            "ann's stale seats were never reconciled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metric(
            routers,
            "handoff_router_desk_changes_total",
            &["change=\"seat_released\""]
        )
        .await?
            >= 1.0
    );

    desk.set_live("cy@example.com", FREE, 0);
    until(running, "cy back", |agents| {
        row(agents, "cy@example.com")
            .and_then(|row| row.agent.as_ref())
            .is_some_and(|a| a.status == 1)
    })
    .await?;

    // Desk counting more than cy's seats: the rest is unattributed load, and fills cy.
    desk.set_live("cy@example.com", FREE, 1);
    until(running, "cy full of Desk's sessions", |agents| {
        row(agents, "cy@example.com").is_some_and(|row| row.unattributed == 1 && row.active == 1)
    })
    .await?;
    let answer = offered(running, "s-4").await?;
    assert!(
        !answer.contains(&"cy@example.com".to_owned()),
        "cy is full: {answer:?}"
    );

    // Rate-limited: the next poll backs off, then succeeds.
    let ok_before = metric(
        routers,
        "handoff_router_desk_syncs_total",
        &["sync=\"status\"", "outcome=\"ok\""],
    )
    .await?;
    desk.fail_next("describe_member_realtime_statistics", 141009, 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let limited = metric(
            routers,
            "handoff_router_desk_syncs_total",
            &["outcome=\"rate_limited\""],
        )
        .await?;
        let ok = metric(
            routers,
            "handoff_router_desk_syncs_total",
            &["sync=\"status\"", "outcome=\"ok\""],
        )
        .await?;
        if limited >= 1.0 && ok > ok_before + 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rate limit then success: {limited} {ok}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Wrong credentials: refused, counted, not retried every second; routing goes on.
    desk.set_key("another app's key");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        routers,
        "handoff_router_desk_syncs_total",
        &["outcome=\"bad_credentials\""],
    )
    .await?
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the refused key was never counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !desk_health(routers)
        .await?
        .error
        .contains("refused the credentials")
    {
        assert!(
            Instant::now() < deadline,
            "GetStatus never said the key was refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_calls = desk.refused().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        desk.refused().len() <= refused_calls + 1,
        "a refused key is not tried again each round: {:?}",
        desk.refused()
    );
    let answer = offered(running, "s-5").await?;
    assert!(answer.contains(&"ann@example.com".to_owned()), "{answer:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_floor_follows_desk() -> TestResult {
    let desk = desk().await;
    let scratch = Scratch::new("desk-embedded")?;
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "embedded".to_owned()),
        (
            "HANDOFF__ROUTER__STORE__PATH",
            scratch.join("state.redb").display().to_string(),
        ),
        key_env(),
    ];
    let running = launch(&config(&desk), &env, true, true).await?;
    the_floor_follows_desk(&desk, &running, &[&running]).await?;
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_share_one_sync_of_desk() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let desk = desk().await;
    let env = [("HANDOFF__ROUTER__STORE__URL", redis.url()), key_env()];
    let config = config(&desk);
    let first = launch(&config, &env, true, true).await?;
    let second = launch(&config, &env, true, false).await?;
    the_floor_follows_desk(&desk, &first, &[&first, &second]).await?;
    // The other replica routes on the same roster, and never synced.
    let listed = agents(&second).await?;
    assert!(row(&listed, "cy@example.com").is_some() && row(&listed, "bob@example.com").is_none());
    let name = "handoff_router_desk_syncs_total";
    let (a, b) = (
        metric(&[&first], name, &[]).await?,
        metric(&[&second], name, &[]).await?,
    );
    assert!((a > 0.0) != (b > 0.0), "one replica syncs: {a} and {b}");
    first.shutdown().await?;
    second.shutdown().await
}

/// `handoff desk` prints Desk's floor with each member's raw status code, and what differs
/// from the file; `handoff check` warns of rule groups Desk lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_command_shows_the_codes_and_what_differs_from_the_file() -> TestResult {
    let desk = desk().await;
    desk.set_live("bob@example.com", 7, 1);
    let scratch = Scratch::new("desk-command")?;
    let path = scratch.join("handoff.toml");
    let text = config(&desk).replace("group = 6521\ncandidates", "group = 6599\ncandidates");
    std::fs::write(&path, text)?;
    let run = |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(args)
            .env(key_env().0, key_env().1)
            .output()
    };
    let shown = tokio::task::spawn_blocking({
        let path = path.display().to_string();
        move || run(vec!["desk".into(), "--config".into(), path])
    })
    .await??;
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let bob = out
        .lines()
        .find(|line| line.contains("bob@example.com  "))
        .ok_or(out.to_string())?;
    assert!(
        bob.contains("6521,6522") && bob.contains(" 7 ") && bob.contains("(unmapped)"),
        "{bob}"
    );
    let ann = out
        .lines()
        .find(|line| line.contains("ann@example.com  "))
        .ok_or(out.to_string())?;
    assert!(ann.ends_with("available"), "{ann}");
    assert!(
        out.contains(
            "status codes member_status does not map (their statuses are left alone): 7 (1 members)"
        ),
        "{out}"
    );
    assert!(
        out.contains("bob@example.com is in Desk, not in the file"),
        "{out}"
    );
    assert!(out.contains("group 6599 is named by a rule"), "{out}");
    assert!(!out.contains(KEY) && !out.contains("usersig="), "{out}");

    let checked = tokio::task::spawn_blocking({
        let path = path.display().to_string();
        move || run(vec!["check".into(), "--config".into(), path])
    })
    .await??;
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{err}");
    assert!(
        err.contains("group 6599 is named by a rule or the fallback, but Desk has no such group"),
        "{err}"
    );

    // Wrong credentials: the command fails saying so.
    desk.set_key("another");
    let refused = tokio::task::spawn_blocking({
        let path = path.display().to_string();
        move || run(vec!["desk".into(), "--config".into(), path])
    })
    .await??;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("Desk refused the credentials"), "{said}");
    Ok(())
}

/// With `hours = true`, a group the file gives no hours takes Desk's `WorkTimeConfig`:
/// closed, the answer is the fallback group; open again, the agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_without_hours_take_desks_work_time() -> TestResult {
    let desk = desk().await;
    // Today (UTC, the app's zone) closed all day, every other day open all day.
    let today = ((now_secs() / 86_400 + 3) % 7) as usize;
    let days = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let all_day: &[(&str, &str)] = &[("00:00", "24:00")];
    let closed_today: Vec<(&str, &[(&str, &str)])> = days
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != today)
        .map(|(_, day)| (*day, all_day))
        .collect();
    desk.set_work_time("default", &closed_today);
    let text = config(&desk).replace("[apps.desk]\n", "[apps.desk]\nhours = true\n");
    // Memory: a file left by another run would hold that run's Desk hours.
    let env = memory_env();
    let running = launch(&text, &env, true, true).await?;
    until(&running, "the roster", |agents| {
        row(agents, "bob@example.com").is_some()
    })
    .await?;
    let http = running.gateway.ok_or("no gateway")?;
    let reply = request(http, "POST", &signed_uri(now_secs()), body("h-1")).await?;
    assert!(reply.agents().is_empty(), "{reply:?}");
    assert_eq!(reply.json["AgentGroupId"], 9000, "the fallback: {reply:?}");

    let every_day: Vec<(&str, &[(&str, &str)])> = days.iter().map(|day| (*day, all_day)).collect();
    desk.set_work_time("default", &every_day);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = request(
            http,
            "POST",
            &signed_uri(now_secs()),
            body(&format!("h-{}", now_secs())),
        )
        .await?;
        if !reply.agents().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Desk's hours never opened the group: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await
}

/// With `rest_parked`, an agent parked after missed offers is set to rest in Desk too, once
/// per park, so that Tencent stops offering them as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_agent_is_set_to_rest_in_desk() -> TestResult {
    let desk = desk().await;
    let text = config(&desk)
        .replace("[apps.desk]\n", "[apps.desk]\nrest_parked = true\n")
        .replace(
            "fallback_group_id = 9000\n",
            "fallback_group_id = 9000\nmax_missed = 1\n",
        );
    let env = memory_env();
    let running = launch(&text, &env, true, true).await?;
    until(&running, "the roster", |agents| {
        row(agents, "bob@example.com").is_some()
    })
    .await?;
    let answer = offered(&running, "p-1").await?;
    let reserved = answer.first().cloned().ok_or("nobody offered")?;
    let other = if reserved == "ann@example.com" {
        "bob@example.com"
    } else {
        "ann@example.com"
    };
    // Tencent gives the session to the other one: the reserved agent missed it.
    let http = running.gateway.ok_or("no gateway")?;
    let uri = signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", "Desk.SessionEventNotify");
    let event = format!(
        r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"p-1","Event":"AgentAccept","EventTime":{},"ChannelType":"SDK","ClientUserId":"user-p-1","AgentId":"{other}"}}"#,
        now_secs() * 1000
    );
    let ack = request(http, "POST", &uri, event).await?;
    assert_eq!(ack.status, 200, "{ack:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let told = desk.set_statuses();
        if told.contains(&(reserved.clone(), "STATUS_REST".to_owned())) {
            assert_eq!(told.len(), 1, "once per park: {told:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never set to rest: {told:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Rounds go on; the same park is not told again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(desk.set_statuses().len(), 1, "{:?}", desk.set_statuses());
    running.shutdown().await
}

/// With Desk sync, an operator who sets an agent away in the console sets them to rest in
/// Desk too (else Desk's status would come back at the next poll); offline is Desk's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sets_a_status_in_desk_too() -> TestResult {
    let desk = desk().await;
    let running = launch(&config(&desk), &memory_env(), true, true).await?;
    until(&running, "the roster", |agents| {
        row(agents, "bob@example.com").is_some()
    })
    .await?;
    let console = running.console.ok_or("no console")?;
    // No router tokens here: the console is loopback's, and opens a session by itself.
    let first = crate::console::http(console, "GET", "/agents?app=1400000001", None, None).await?;
    let cookie = first
        .header("set-cookie")
        .and_then(|cookie| cookie.split(';').next())
        .ok_or("no session")?
        .to_owned();
    let page = crate::console::http(
        console,
        "GET",
        "/agents?app=1400000001",
        Some(&cookie),
        None,
    )
    .await?;
    assert!(
        !page
            .body
            .contains("aria-label=\"Set bob@example.com offline\""),
        "offline is Desk's own: {}",
        page.body
    );
    let csrf = crate::console::csrf_of(&page.body).ok_or("no csrf")?;
    let form = format!("app=1400000001&agent=bob%40example.com&status=away&csrf={csrf}");
    let done = crate::console::http(
        console,
        "POST",
        "/agents/status",
        Some(&cookie),
        Some(&form),
    )
    .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        desk.set_statuses(),
        [("bob@example.com".to_owned(), "STATUS_REST".to_owned())]
    );
    let offline = format!("app=1400000001&agent=bob%40example.com&status=offline&csrf={csrf}");
    let refused = crate::console::http(
        console,
        "POST",
        "/agents/status",
        Some(&cookie),
        Some(&offline),
    )
    .await?;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(
        refused.body.contains("signing out of Desk"),
        "{}",
        refused.body
    );
    // The floor shows Tencent's queue as the status rounds read it.
    desk.set_queue(3, &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = crate::console::http(
            console,
            "GET",
            "/floor/live?app=1400000001",
            Some(&cookie),
            None,
        )
        .await?;
        if live.body.contains(r#"data-count="queued">3<"#) {
            assert!(live.body.contains("Desk sync: roster"), "{}", live.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never showed: {}",
            live.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await
}
