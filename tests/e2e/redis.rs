//! The Redis store with real `redis-server`s that the tests start themselves: several router
//! replicas sharing one state under concurrent load, and Redis dying and coming back.

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    net::{SocketAddr, TcpListener as StdListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use handoff_proto::router::v1::{
    AgentStatus, AssignHumanRequest, Customer, ListAgentsRequest, SetAgentStatusRequest,
    UpsertCustomerRequest, router_service_client::RouterServiceClient,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::support::{Error, Running, TestResult, launch, on_shift_across_a_zone_reload};

/// Whether `redis-server` is on PATH (see [`crate::support::tool`]).
pub fn available() -> Result<bool, Error> {
    crate::support::tool("redis-server", "--version", "apt-get install redis-server")
}

/// A `redis-server` of the test's own, on a free loopback port, keeping nothing on disk.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one, or says why the test cannot run (`None` only outside CI).
    pub fn start() -> Result<Option<Self>, Error> {
        if !available()? {
            return Ok(None);
        }
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("handoff-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.spawn()?;
        Ok(Some(server))
    }

    fn spawn(&mut self) -> Result<(), Error> {
        self.spawn_with(&[])
    }

    fn spawn_with(&mut self, extra: &[&str]) -> Result<(), Error> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("redis-server on port {} never answered PING", self.port).into())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port, empty.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Four agents, twelve seats, reservations held ten minutes.
fn floor() -> String {
    crate::support::one_app(
        "[router]\nassignment_ttl = \"10m\"",
        "",
        (1, "floor"),
        &[
            ("ann@example.com", 3),
            ("bob@example.com", 3),
            ("cy@example.com", 2),
            ("dee@example.com", 4),
        ],
    )
}

/// Three `redis-server`s in cluster mode, slots spread over them by `redis-cli`.
struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    fn start() -> Result<Option<Self>, Error> {
        if RedisServer::start()?.is_none() {
            return Ok(None);
        }
        if Command::new("redis-cli").arg("--version").output().is_err() {
            return Err("redis-cli is not on PATH (.ci/run installs redis-tools)".into());
        }
        let mut nodes = Vec::new();
        for port in cluster_ports(3)? {
            let dir =
                std::env::temp_dir().join(format!("handoff-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut node = RedisServer {
                child: None,
                port,
                dir,
            };
            node.spawn_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !created.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&created.stdout)
            )
            .into());
        }
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if cluster.nodes.iter().all(|n| cluster_ok(n.port)) {
                return Ok(Some(cluster));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the redis cluster never reported cluster_state:ok".into())
    }

    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `count` ports that are free along with their cluster bus ports (port + 10000).
fn cluster_ports(count: usize) -> Result<Vec<u16>, Error> {
    let mut ports = Vec::new();
    let mut candidate = 20_000 + (std::process::id() % 5_000) as u16;
    while ports.len() < count && candidate < 30_000 {
        let free = |port: u16| StdListener::bind(("127.0.0.1", port)).is_ok();
        if free(candidate) && free(candidate + 10_000) {
            ports.push(candidate);
        }
        candidate += 7;
    }
    if ports.len() < count {
        return Err("no free ports for a redis cluster".into());
    }
    Ok(ports)
}

fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
}

/// A router replica on Redis, serving gRPC on a port of its own until dropped.
struct Replica {
    addr: SocketAddr,
    running: Running,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.running.stop.stop();
    }
}

impl Replica {
    async fn start(redis: &RedisServer) -> Result<Self, Error> {
        Self::start_on(redis.url(), false).await
    }

    async fn start_on(url: String, cluster: bool) -> Result<Self, Error> {
        let running = launch(&floor(), &Self::env(url, cluster), true, false).await?;
        Ok(Self {
            addr: running.router.ok_or("no router")?,
            running,
        })
    }

    fn env(url: String, cluster: bool) -> [(&'static str, String); 3] {
        [
            ("HANDOFF__ROUTER__STORE__URL", url),
            ("HANDOFF__ROUTER__STORE__CLUSTER", cluster.to_string()),
            ("HANDOFF__ROUTER__STORE__TIMEOUT", "300ms".to_owned()),
        ]
    }

    async fn client(&self) -> Result<RouterServiceClient<Channel>, Error> {
        Ok(RouterServiceClient::connect(format!("http://{}", self.addr)).await?)
    }

    /// Each agent's (active sessions, capacity), as ListAgents reports them.
    async fn loads(&self) -> Result<BTreeMap<String, (u32, u32)>, Error> {
        let request = ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        };
        let listed = self
            .client()
            .await?
            .list_agents(request)
            .await?
            .into_inner();
        Ok(listed
            .agents
            .into_iter()
            .filter_map(|row| {
                row.agent
                    .map(|agent| (agent.id, (row.active, agent.capacity)))
            })
            .collect())
    }

    async fn health(&self) -> Result<ServingStatus, Error> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?;
        let mut health = HealthClient::new(channel);
        let reply = health
            .check(HealthCheckRequest {
                service: handoff_router::SERVICE_NAME.into(),
            })
            .await?;
        Ok(reply.into_inner().status())
    }
}

fn handoff(session: &str) -> AssignHumanRequest {
    AssignHumanRequest {
        sdk_app_id: 1_400_000_001,
        session_id: session.to_owned(),
        client_user_id: format!("customer-{session}"),
        ..AssignHumanRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_redis_never_overbook_and_replay_each_others_answers() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replicas = [Replica::start(&redis).await?, Replica::start(&redis).await?];
    let clients = [replicas[0].client().await?, replicas[1].client().await?];

    // 40 concurrent handoffs for 12 seats, alternating between the replicas.
    let calls: Vec<_> = (0..40)
        .map(|n| {
            let mut client = clients[n % 2].clone();
            tokio::spawn(async move { client.assign_human(handoff(&format!("s-{n}"))).await })
        })
        .collect();
    let mut seats: BTreeMap<String, u32> = BTreeMap::new();
    let mut answers = BTreeMap::new();
    for (n, call) in calls.into_iter().enumerate() {
        let answer = call.await??.into_inner();
        let reserved = answer
            .decision
            .as_ref()
            .map(|d| d.reserved_agent_id.clone())
            .unwrap_or_default();
        if !reserved.is_empty() {
            *seats.entry(reserved).or_default() += 1;
        }
        answers.insert(n, answer);
    }
    let expected: BTreeMap<String, u32> = [
        ("ann@example.com", 3),
        ("bob@example.com", 3),
        ("cy@example.com", 2),
        ("dee@example.com", 4),
    ]
    .into_iter()
    .map(|(agent, seats)| (agent.to_owned(), seats))
    .collect();
    assert_eq!(seats, expected, "every seat filled once, none twice");

    // Either replica sees the same load, and replays the other's answers.
    for replica in &replicas {
        let active: BTreeMap<String, u32> = replica
            .loads()
            .await?
            .into_iter()
            .map(|(agent, (active, _))| (agent, active))
            .collect();
        assert_eq!(active, expected);
    }
    // All retried at once on the full floor: decisions in flight together leave the changes
    // stream to one of them and read the session plainly, and must replay all the same.
    let retries: Vec<_> = answers
        .keys()
        .map(|n| {
            let mut other = clients[(n + 1) % 2].clone();
            let session = format!("s-{n}");
            tokio::spawn(async move { other.assign_human(handoff(&session)).await })
        })
        .collect();
    let mut reserved_sessions = HashSet::new();
    for ((n, earlier), retry) in answers.iter().zip(retries) {
        let again = retry.await??.into_inner();
        let reserved = earlier
            .decision
            .as_ref()
            .map(|d| d.reserved_agent_id.clone())
            .unwrap_or_default();
        if reserved.is_empty() {
            continue;
        }
        reserved_sessions.insert(*n);
        assert!(
            again.decision.as_ref().is_some_and(|d| d.replayed),
            "s-{n} not replayed"
        );
        assert_eq!(again.agent_ids, earlier.agent_ids, "s-{n}");
    }
    assert_eq!(reserved_sessions.len(), 12);
    Ok(())
}

#[tokio::test]
async fn a_redis_outage_answers_unavailable_and_the_router_recovers_by_itself() -> TestResult {
    let Some(mut redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replica = Replica::start(&redis).await?;
    let mut client = replica.client().await?;
    client.assign_human(handoff("before")).await?;
    assert_eq!(replica.health().await?, ServingStatus::Serving);

    redis.kill();
    let started = Instant::now();
    let status = client
        .assign_human(handoff("during"))
        .await
        .err()
        .ok_or("assigned without redis")?;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?} to give up",
        started.elapsed()
    );
    // Every call reports the outage as what it is, even one whose request could be wrong
    // (an owner that would have to be looked up).
    let customer = Customer {
        id: "c-1".into(),
        owner_agent_id: "ann@example.com".into(),
        ..Customer::default()
    };
    let calls = [
        client
            .upsert_customer(UpsertCustomerRequest {
                sdk_app_id: 1_400_000_001,
                customer: Some(customer),
            })
            .await
            .err(),
        client
            .set_agent_status(SetAgentStatusRequest {
                sdk_app_id: 1_400_000_001,
                agent_id: "ann@example.com".into(),
                status: AgentStatus::Away.into(),
                ..SetAgentStatusRequest::default()
            })
            .await
            .err(),
        client
            .list_agents(ListAgentsRequest {
                sdk_app_id: 1_400_000_001,
                group_id: None,
            })
            .await
            .err(),
    ];
    for status in calls {
        let code = status.map(|status| status.code());
        assert_eq!(code, Some(Code::Unavailable));
    }
    let mut health = ServingStatus::Serving;
    for _ in 0..50 {
        health = replica.health().await?;
        if health == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health, ServingStatus::NotServing);

    redis.restart()?;
    let mut recovered = None;
    for _ in 0..100 {
        match client.assign_human(handoff("after")).await {
            Ok(answer) => {
                recovered = Some(answer.into_inner());
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.ok_or("never recovered")?;
    assert!(!recovered.agent_ids.is_empty());
    for _ in 0..50 {
        health = replica.health().await?;
        if health == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health, ServingStatus::Serving);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_serves_replicas_too() -> TestResult {
    let Some(cluster) = RedisCluster::start()? else {
        return Ok(());
    };
    let replicas = [
        Replica::start_on(cluster.url(), true).await?,
        Replica::start_on(cluster.url(), true).await?,
    ];
    let mut seats: BTreeMap<String, u32> = BTreeMap::new();
    for n in 0..16 {
        let mut client = replicas[n % 2].client().await?;
        let answer = client
            .assign_human(handoff(&format!("c-{n}")))
            .await?
            .into_inner();
        let reserved = answer
            .decision
            .map(|d| d.reserved_agent_id)
            .unwrap_or_default();
        if !reserved.is_empty() {
            *seats.entry(reserved).or_default() += 1;
        }
    }
    assert_eq!(seats.values().sum::<u32>(), 12, "{seats:?}");
    assert_eq!(seats.get("dee@example.com"), Some(&4));
    let again = replicas[1]
        .client()
        .await?
        .assign_human(handoff("c-0"))
        .await?
        .into_inner();
    assert!(again.decision.is_some_and(|d| d.replayed));
    assert_eq!(replicas[0].health().await?, ServingStatus::Serving);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_decides_over_what_the_others_did_even_after_the_change_stream_is_lost()
-> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replicas = [Replica::start(&redis).await?, Replica::start(&redis).await?];
    let mut clients = [replicas[0].client().await?, replicas[1].client().await?];
    let mut reserved = Vec::new();
    for (n, replica) in [0, 1, 0, 1, 0, 1].into_iter().enumerate() {
        if n == 4 {
            // The app's change stream disappears: each replica must notice it cannot catch
            // up from where it was and read the app whole.
            let deleted = Command::new("redis-cli")
                .args([
                    "-p",
                    &redis.port.to_string(),
                    "DEL",
                    "handoff:{1400000001}:changes",
                ])
                .output()?;
            assert!(deleted.status.success(), "{deleted:?}");
        }
        let answer = clients[replica]
            .assign_human(handoff(&format!("v-{n}")))
            .await?
            .into_inner();
        reserved.push(
            answer
                .decision
                .map(|d| d.reserved_agent_id)
                .unwrap_or_default(),
        );
    }
    // least_loaded, whichever replica took the previous handoff: first everyone once
    // (capacities 3, 3, 2, 4), then dee (1/4), then ann (1/3, idle longer than bob).
    let expected = ["ann", "bob", "cy", "dee", "dee", "ann"].map(|a| format!("{a}@example.com"));
    assert_eq!(reserved, expected);
    Ok(())
}

/// A replica decides over a customer's records before its one round trip to Redis, as it
/// last read them: a change no agent's load or status shows (another replica's
/// UpsertCustomer, a previous agent forgotten) must still be seen, and the decision made
/// again over the records as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_decides_over_a_customers_records_as_redis_holds_them_not_as_it_read_them()
-> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replicas = [Replica::start(&redis).await?, Replica::start(&redis).await?];
    let mut first = replicas[0].client().await?;
    let mut second = replicas[1].client().await?;
    let mut assign = async |session: &str, customer: &str| -> Result<String, Error> {
        let request = AssignHumanRequest {
            client_user_id: customer.to_owned(),
            ..handoff(session)
        };
        let answer = first.assign_human(request).await?.into_inner();
        Ok(answer
            .decision
            .map(|d| d.reserved_agent_id)
            .unwrap_or_default())
    };

    // The first replica serves crm-9 (everyone idle: ann), reading that nothing is known
    // of them but their previous agent now.
    assert_eq!(assign("p-1", "crm-9").await?, "ann@example.com");
    // The other replica hears from the CRM that dee owns crm-9: no agent changed.
    second
        .upsert_customer(UpsertCustomerRequest {
            sdk_app_id: 1_400_000_001,
            customer: Some(Customer {
                id: "crm-9".into(),
                owner_agent_id: "dee@example.com".into(),
                ..Customer::default()
            }),
        })
        .await?;
    assert_eq!(
        assign("p-2", "crm-9").await?,
        "dee@example.com",
        "the owner goes before the previous agent"
    );

    // crm-8's previous agent, bob (the least loaded), is forgotten as the sweep of links
    // past sticky_ttl forgets one: deleted, announced to nobody.
    assert_eq!(assign("p-3", "crm-8").await?, "bob@example.com");
    let forgotten = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(["HDEL", "handoff:{1400000001}:history", "crm-8"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&forgotten.stdout).trim(), "1");
    assert_eq!(
        assign("p-4", "crm-8").await?,
        "cy@example.com",
        "no previous agent: the least loaded"
    );
    Ok(())
}

/// A Redis replica decides before its reserve script finds the session answered: the
/// decision log's replay names no agents considered, as on the local stores, where a
/// replay decides nothing.
#[tokio::test]
async fn a_replayed_answer_on_redis_logs_no_agents_considered() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let dir = crate::support::Scratch::new("redis-dlog")?;
    let log = dir.join("decisions.jsonl");
    let mut env = Replica::env(redis.url(), false).to_vec();
    env.push((
        "HANDOFF__ROUTER__DECISION_LOG__PATH",
        log.display().to_string(),
    ));
    let running = launch(&floor(), &env, true, false).await?;
    let router = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{router}")).await?;
    for _ in 0..2 {
        client.assign_human(handoff("r-1")).await?;
    }
    let lines = crate::decision_log::lines_of(&log, 3).await;
    running.shutdown().await?;
    let decisions: Vec<Box<handoff_router::decision_log::Decided>> = lines
        .iter()
        .map(|line| serde_json::from_str(line))
        .collect::<Result<Vec<handoff_router::decision_log::Entry>, _>>()?
        .into_iter()
        .filter_map(|entry| match entry {
            handoff_router::decision_log::Entry::Decision(decided) => Some(decided),
            _ => None,
        })
        .collect();
    let [first, again] = decisions.as_slice() else {
        return Err(format!("two decisions, not {lines:?}").into());
    };
    assert!(!first.replayed && !first.considered.is_empty(), "{first:?}");
    assert!(again.replayed, "{again:?}");
    assert!(again.considered.is_empty(), "{:?}", again.considered);
    Ok(())
}

#[tokio::test]
async fn agents_added_at_run_time_follow_a_reloaded_time_zone() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replica = Replica::start(&redis).await?;
    let reloader = &replica.running.reloader;
    let shifts = on_shift_across_a_zone_reload(&floor(), replica.addr, reloader, 1).await?;
    assert_eq!(shifts, (true, false), "(on shift before, after)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_under_load_fails_calls_cleanly_and_loses_no_consistency() -> TestResult {
    let Some(mut redis) = RedisServer::start()? else {
        return Ok(());
    };
    let replica = Replica::start(&redis).await?;
    let client = replica.client().await?;
    let stop = handoff_core::shutdown::Stop::new();

    // Four callers keep asking, each with fresh sessions, until told to stop.
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let mut client = client.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut unavailable, mut other) = (0u32, 0u32, Vec::new());
                let mut n = 0;
                while !stop.is_stopped() {
                    n += 1;
                    let started = Instant::now();
                    match client
                        .assign_human(handoff(&format!("load-{caller}-{n}")))
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(status) if status.code() == Code::Unavailable => unavailable += 1,
                        Err(status) => other.push(format!("{status:?}")),
                    }
                    if started.elapsed() > Duration::from_secs(2) {
                        other.push(format!("a call took {:?}", started.elapsed()));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (ok, unavailable, other)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart()?;
    // Let the callers see Redis back before stopping them.
    let mut back = false;
    for _ in 0..100 {
        if replica
            .client()
            .await?
            .assign_human(handoff("probe"))
            .await
            .is_ok()
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "never recovered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.stop();

    let (mut ok, mut unavailable) = (0, 0);
    for caller in callers {
        let (o, u, other) = caller.await?;
        assert!(other.is_empty(), "{other:?}");
        ok += o;
        unavailable += u;
    }
    assert!(
        ok > 0 && unavailable > 0,
        "ok {ok}, unavailable {unavailable}"
    );

    // Whatever the restarted Redis holds is consistent: no agent over capacity.
    for (agent, (active, capacity)) in replica.loads().await? {
        assert!(active <= capacity, "{agent} holds {active} of {capacity}");
    }
    Ok(())
}

/// A command with an integer reply (`HLEN key`, `PTTL key`) on the server at `port`, over
/// raw RESP.
pub fn integer(port: u16, command: &[&str]) -> Result<i64, Error> {
    let reply = redis_cli(port, command)?;
    Ok(reply
        .trim()
        .strip_prefix(':')
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| format!("not an integer reply: {reply:?}"))?)
}

/// `command` on the server at `port`: its reply, as sent (RESP).
pub fn redis_cli(port: u16, command: &[&str]) -> Result<String, Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = format!("*{}\r\n", command.len());
    for part in command {
        request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
}

/// `HLEN key` on the server at `port`.
pub fn hlen(port: u16, key: &str) -> Result<i64, Error> {
    integer(port, &["HLEN", key])
}

#[tokio::test]
async fn previous_agents_past_sticky_ttl_are_deleted_from_redis() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let mut env = Replica::env(redis.url(), false).to_vec();
    env.push(("HANDOFF__APPS__0__STICKY_TTL", "1s".to_owned()));
    let running = launch(&floor(), &env, true, false).await?;
    let router = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{router}")).await?;
    client
        .assign_human(AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: "linked".into(),
            client_user_id: "c-linked".into(),
            ..AssignHumanRequest::default()
        })
        .await?;
    let history = "handoff:{1400000001}:history";
    let linked = hlen(redis.port, history)?;
    // The router forgets links past sticky_ttl every half of it.
    let mut left = linked;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = hlen(redis.port, history)?;
        if left == 0 {
            break;
        }
    }
    let sessions = hlen(redis.port, "handoff:{1400000001}:sessions")?;
    // The sweeping replica holds the app's lock for most of a round (every half
    // sticky_ttl, at least a second), so that other replicas skip the round.
    let mut lock = -2;
    for _ in 0..20 {
        lock = integer(redis.port, &["PTTL", "handoff:{1400000001}:forgetting"])?;
        if lock > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop.stop();
    assert!(
        (1..=900).contains(&lock),
        "the sweep lock's time to live: {lock}"
    );
    assert_eq!(linked, 1, "the decision linked the customer to their agent");
    assert_eq!(left, 0, "the link outlived sticky_ttl in Redis");
    assert_eq!(sessions, 1, "the session itself is kept");
    Ok(())
}

#[tokio::test]
async fn session_records_are_deleted_from_redis_once_remembered_long_enough() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let mut env = Replica::env(redis.url(), false).to_vec();
    env.push(("HANDOFF__ROUTER__ASSIGNMENT_TTL", "1s".to_owned()));
    env.push(("HANDOFF__ROUTER__MAX_SESSION", "1s".to_owned()));
    let running = launch(&floor(), &env, true, false).await?;
    let router = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{router}")).await?;
    let assign = |session: &str| AssignHumanRequest {
        sdk_app_id: 1_400_000_001,
        session_id: session.into(),
        client_user_id: format!("c-{session}"),
        ..AssignHumanRequest::default()
    };
    for session in ["s-1", "s-2", "s-3"] {
        client.assign_human(assign(session)).await?;
    }
    let sessions = "handoff:{1400000001}:sessions";
    let held = hlen(redis.port, sessions)?;
    // Each seat runs out after a second, and its record is forgotten a second later; what
    // is due goes with the next call.
    let mut left = held;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client
            .list_agents(ListAgentsRequest {
                sdk_app_id: 1_400_000_001,
                group_id: None,
            })
            .await?;
        left = hlen(redis.port, sessions)?;
        if left == 0 {
            break;
        }
    }
    running.stop.stop();
    assert_eq!(held, 3);
    assert_eq!(
        left, 0,
        "session records outlived their seat and max_session"
    );
    Ok(())
}

/// The router's health over gRPC.
async fn health_of(grpc: SocketAddr) -> Result<ServingStatus, Error> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: handoff_router::SERVICE_NAME.into(),
        })
        .await?
        .into_inner()
        .status();
    Ok(status)
}

/// Waits up to five seconds for the router's health to be `wanted`.
async fn health_becomes(grpc: SocketAddr, wanted: ServingStatus) -> Result<(), Error> {
    let mut seen = None;
    for _ in 0..50 {
        let status = health_of(grpc).await?;
        if status == wanted {
            return Ok(());
        }
        seen = Some(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("health stayed {seen:?}, not {wanted:?}").into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_in_one_starts_while_redis_is_down_answers_the_fallback_and_connects_later()
-> TestResult {
    let Some(mut redis) = RedisServer::start()? else {
        return Ok(());
    };
    redis.kill();
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        ("HANDOFF__ROUTER__STORE__URL", redis.url()),
    ];
    let running = crate::support::launch(crate::support::CONFIG, &env, true, true).await?;
    let (grpc, http) = (
        running.router.ok_or("no router")?,
        running.gateway.ok_or("no gateway")?,
    );
    health_becomes(grpc, ServingStatus::NotServing).await?;
    // Tencent still gets an answer: the app's fallback group.
    let uri = crate::support::signed_uri(crate::support::now_secs());
    let reply = crate::support::request(http, "POST", &uri, crate::support::body("down-1")).await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["AgentGroupId"], 9000, "{reply:?}");

    redis.restart()?;
    health_becomes(grpc, ServingStatus::Serving).await?;
    let uri = crate::support::signed_uri(crate::support::now_secs());
    let reply = crate::support::request(http, "POST", &uri, crate::support::body("up-1")).await?;
    assert!(!reply.agents().is_empty(), "{reply:?}");
    running.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_empty_is_noticed_logged_and_counted() -> TestResult {
    let Some(mut redis) = RedisServer::start()? else {
        return Ok(());
    };
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        ("HANDOFF__ROUTER__STORE__URL", redis.url()),
    ];
    let running = crate::support::launch(crate::support::CONFIG, &env, true, false).await?;
    let grpc = running.router.ok_or("no router")?;
    let metrics = running.metrics.ok_or("no metrics")?.to_string();
    let mut client = RouterServiceClient::connect(format!("http://{grpc}")).await?;
    client.assign_human(handoff("kept-1")).await?;
    client
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: 1_400_000_001,
            agent_id: "bob@example.com".into(),
            status: AgentStatus::Away.into(),
            ..SetAgentStatusRequest::default()
        })
        .await?;
    health_becomes(grpc, ServingStatus::Serving).await?;
    let lost = |scrape: &prometheus_parse::Scrape| {
        crate::metrics::value(scrape, "handoff_router_store_data_lost_total", &[])
    };
    assert_eq!(lost(&crate::metrics::scrape(&metrics).await?), 0.0);
    // The epoch key handoff wrote at its start.
    assert_eq!(integer(redis.port(), &["EXISTS", "handoff:epoch"])?, 1);

    // Redis restarts without persistence: everything handoff kept there is gone.
    redis.restart()?;
    let mut counted = 0.0;
    for _ in 0..50 {
        counted = lost(&crate::metrics::scrape(&metrics).await?);
        if counted > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 1.0, "the loss was not noticed");
    // A new epoch is written, and the router serves what Redis holds now: bob is back to
    // the file's status, and the session's seat is gone.
    assert_eq!(integer(redis.port(), &["EXISTS", "handoff:epoch"])?, 1);
    let agents = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner()
        .agents;
    let bob = agents
        .iter()
        .filter_map(|row| row.agent.as_ref())
        .find(|agent| agent.id == "bob@example.com")
        .ok_or("no bob")?;
    assert_eq!(bob.status(), AgentStatus::Available);
    assert!(agents.iter().all(|row| row.active == 0), "{agents:?}");
    // Noticed once: it is not counted again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lost(&crate::metrics::scrape(&metrics).await?), 1.0);
    running.shutdown().await
}

#[test]
fn check_warns_of_a_redis_that_would_lose_or_evict_handoffs_state() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let config = std::env::temp_dir().join(format!(
        "handoff-check-redis-{}-{}.toml",
        std::process::id(),
        redis.port()
    ));
    std::fs::write(&config, crate::support::CONFIG)?;
    let check = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(["check", "--config"])
            .arg(&config)
            .env("HANDOFF__ROUTER__STORE__URL", url)
            .output()
    };
    // The tests' Redis keeps nothing on disk: a restart would lose handoff's state.
    let risky = check(redis.url())?;
    let stderr = String::from_utf8_lossy(&risky.stderr).into_owned();
    assert!(risky.status.success(), "{stderr}");
    assert!(stderr.contains("appendonly no"), "{stderr}");
    // Configured as handoff needs it: no warning.
    for (key, value) in [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("maxmemory-policy", "noeviction"),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", redis.port()))?;
        let command = format!(
            "*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        stream.write_all(command.as_bytes())?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply)?;
        assert!(reply[..n].starts_with(b"+OK"), "{:?}", &reply[..n]);
    }
    let safe = check(redis.url())?;
    let stderr = String::from_utf8_lossy(&safe.stderr).into_owned();
    assert!(
        safe.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
    // A Redis that cannot be reached is said so; the config itself is still fine.
    drop(redis);
    let down = check("redis://127.0.0.1:1".to_owned())?;
    let stderr = String::from_utf8_lossy(&down.stderr).into_owned();
    assert!(
        down.status.success() && stderr.contains("cannot be reached"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&config);
    Ok(())
}

/// A Redis holding handoff's state in a newer layout than this build reads (a newer
/// handoff wrote it, then this one was started): the router refuses to serve from it,
/// saying why, and health turns NOT_SERVING; once the layout is one it reads, it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_a_newer_format_is_refused_until_the_format_is_one_it_reads() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        ("HANDOFF__ROUTER__STORE__URL", redis.url()),
    ];
    let running = crate::support::launch(crate::support::CONFIG, &env, true, false).await?;
    let grpc = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{grpc}")).await?;
    health_becomes(grpc, ServingStatus::Serving).await?;
    assert_eq!(
        redis_cli(redis.port(), &["GET", "handoff:format"])?,
        "$1\r\n3\r\n",
        "written at start"
    );
    client.assign_human(handoff("old-1")).await?;

    redis_cli(redis.port(), &["SET", "handoff:format", "4"])?;
    health_becomes(grpc, ServingStatus::NotServing).await?;
    let refused = client
        .assign_human(handoff("new-1"))
        .await
        .err()
        .ok_or("served from a newer layout")?;
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused.message().contains("format 4"),
        "{}",
        refused.message()
    );

    // An older layout (format 2, as an older replica wrote it) is raised to this one's, so
    // that older replicas stop serving from keys they would misread.
    redis_cli(redis.port(), &["SET", "handoff:format", "2"])?;
    health_becomes(grpc, ServingStatus::Serving).await?;
    client.assign_human(handoff("new-2")).await?;
    assert_eq!(
        redis_cli(redis.port(), &["GET", "handoff:format"])?,
        "$1\r\n3\r\n",
        "raised"
    );
    running.shutdown().await
}
