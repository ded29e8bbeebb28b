//! The Redis store: every router replica shares one state, so any replica can answer any
//! handoff. All of an app's keys carry the app as a hash tag (`handoff:{<app>}:...`), so they
//! live in one slot of a Redis Cluster and one Lua script can touch them all.
//!
//! A decision takes two round trips: a snapshot script (expire what is due, replay a live
//! session, else read loads, statuses, roster changes, this customer and their history),
//! then the engine decides locally, then a reserve script that atomically re-checks each
//! ranked candidate's load and reserves the first still below capacity. Two replicas
//! deciding at the same moment therefore never push an agent over capacity.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use handoff_core::{
    config::{AgentConfig, AgentStatus, StoreConfig},
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};
use redis::{
    Client, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};

use super::{
    Assignment, Store, StoreError,
    embedded::{AssignmentRecord, HistoryRecord, from_ms, to_ms},
};
use crate::engine::{
    Agent, AgentLoad, Answer, Catalog, Customer, Decision, RosterChanges, StateView,
};

/// Expires due assignments; shared by both scripts. KEYS: 1 sessions, 2 expiry, 3 active.
const SWEEP: &str = r#"
local function sweep(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, session in ipairs(due) do
    local raw = redis.call('HGET', KEYS[1], session)
    if raw then
      local agent = cjson.decode(raw).answer.reserved
      if type(agent) == 'string' then
        if redis.call('HINCRBY', KEYS[3], agent, -1) <= 0 then
          redis.call('HDEL', KEYS[3], agent)
        end
      end
      redis.call('HDEL', KEYS[1], session)
    end
  end
  if #due > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  end
end
"#;

/// ARGV: now_ms, session ('' for none), customer ('' for none).
/// Returns {1, record} to replay, or {0, active, last, history, statuses, roster, customer}.
const SNAPSHOT: &str = r#"
sweep(ARGV[1])
if ARGV[2] ~= '' then
  local replay = redis.call('HGET', KEYS[1], ARGV[2])
  if replay then return {1, replay} end
end
local history, customer = '', ''
if ARGV[3] ~= '' then
  history = redis.call('HGET', KEYS[5], ARGV[3]) or ''
  customer = redis.call('HGET', KEYS[8], ARGV[3]) or ''
end
return {0, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), history,
        redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7]), customer}
"#;

/// ARGV: now_ms, session, customer, expires_ms, answer template, limit, then agent and
/// capacity for each ranked candidate. Returns {1, record} to replay, {2, record} when
/// reserved, {0} when every candidate is full.
const RESERVE: &str = r#"
sweep(ARGV[1])
local replay = redis.call('HGET', KEYS[1], ARGV[2])
if replay then return {1, replay} end
local limit = tonumber(ARGV[6])
local count = (#ARGV - 6) / 2
for i = 0, count - 1 do
  local agent = ARGV[7 + 2 * i]
  local active = tonumber(redis.call('HGET', KEYS[3], agent) or '0')
  if active < tonumber(ARGV[8 + 2 * i]) then
    local answer = cjson.decode(ARGV[5])
    local agents = {}
    for j = i, math.min(count - 1, i + limit - 1) do
      table.insert(agents, ARGV[7 + 2 * j])
    end
    answer.agents = agents
    answer.reserved = agent
    local record = cjson.encode({answer = answer, expires_at_ms = tonumber(ARGV[4])})
    redis.call('HINCRBY', KEYS[3], agent, 1)
    redis.call('HSET', KEYS[4], agent, ARGV[1])
    redis.call('HSET', KEYS[5], ARGV[3], cjson.encode({agent = agent, at_ms = tonumber(ARGV[1])}))
    redis.call('HSET', KEYS[1], ARGV[2], record)
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
    return {2, record}
  end
end
return {0}
"#;

/// Agents defined over gRPC, by app and id: the stored definition and its compiled form.
type CompiledAgents = HashMap<(SdkAppId, AgentId), (String, Arc<Agent>)>;

/// The connection: one server, or a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Router state in Redis.
pub struct RedisStore {
    connection: Connection,
    ttl: Duration,
    timeout: Duration,
    snapshot: Script,
    reserve: Script,
    /// Agents added over gRPC, compiled once per definition.
    compiled: Mutex<CompiledAgents>,
    zones: HashMap<SdkAppId, chrono_tz::Tz>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

impl RedisStore {
    /// Connects to the server (or cluster) of `config`; fails when it cannot be reached.
    pub async fn connect(
        config: &StoreConfig,
        ttl: Duration,
        catalog: &Catalog,
    ) -> Result<Self, StoreError> {
        let url = config
            .url
            .as_ref()
            .map(|url| url.expose().to_owned())
            .unwrap_or_default();
        let timeout = config.timeout.get();
        let connection = if config.cluster {
            let nodes: Vec<String> = url.split(',').map(|node| node.trim().to_owned()).collect();
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(unavailable)?;
            Connection::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = Client::open(url.as_str()).map_err(unavailable)?;
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            Connection::Single(
                ConnectionManager::new_with_config(client, manager)
                    .await
                    .map_err(unavailable)?,
            )
        };
        Ok(Self {
            connection,
            ttl,
            timeout,
            snapshot: Script::new(&format!("{SWEEP}{SNAPSHOT}")),
            reserve: Script::new(&format!("{SWEEP}{RESERVE}")),
            compiled: Mutex::new(HashMap::new()),
            zones: catalog.zones(),
        })
    }

    /// Runs `script` with the app's keys and `args`, bounded by the timeout.
    async fn run(
        &self,
        script: &Script,
        app: SdkAppId,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in Keys::of(app).all() {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let call = async {
            match self.connection.clone() {
                Connection::Single(mut conn) => invocation.invoke_async::<Value>(&mut conn).await,
                Connection::Cluster(mut conn) => invocation.invoke_async::<Value>(&mut conn).await,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unavailable)
    }

    /// Runs a plain command pipeline atomically.
    async fn write(&self, pipe: redis::Pipeline) -> Result<(), StoreError> {
        let call = async {
            match self.connection.clone() {
                Connection::Single(mut conn) => pipe.query_async::<()>(&mut conn).await,
                Connection::Cluster(mut conn) => pipe.query_async::<()>(&mut conn).await,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unavailable)
    }

    /// The state of `app` as the snapshot script returned it, or a session to replay.
    async fn snapshot(
        &self,
        app: SdkAppId,
        session: Option<&SessionId>,
        customer: Option<&ClientUserId>,
        now: SystemTime,
    ) -> Result<Result<Snapshot, Answer>, StoreError> {
        let args = vec![
            to_ms(now).to_string(),
            session.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            customer.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        ];
        let reply = self.run(&self.snapshot, app, args).await?;
        let items = into_items(reply)?;
        if tag(&items)? == 1 {
            return Ok(Err(record(items.get(1))?.answer));
        }
        Ok(Ok(self.parse_snapshot(app, &items)?))
    }

    fn parse_snapshot(&self, app: SdkAppId, items: &[Value]) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        for (agent, count) in pairs(items.get(1))? {
            let Ok(agent) = AgentId::parse(agent) else {
                continue;
            };
            snapshot.loads.entry(agent).or_default().active = count.parse().unwrap_or_default();
        }
        for (agent, ms) in pairs(items.get(2))? {
            let Ok(agent) = AgentId::parse(agent) else {
                continue;
            };
            snapshot.loads.entry(agent).or_default().last_assigned = ms.parse().ok().map(from_ms);
        }
        let history = text(items.get(3))?;
        if !history.is_empty() {
            let record: HistoryRecord = serde_json::from_str(&history).map_err(unavailable)?;
            snapshot.history = Some((record.agent, from_ms(record.at_ms)));
        }
        for (agent, status) in pairs(items.get(4))? {
            let (Ok(agent), Ok(status)) = (
                AgentId::parse(agent),
                serde_json::from_str::<AgentStatus>(&status),
            ) else {
                continue;
            };
            snapshot.statuses.insert(agent, status);
        }
        for (agent, spec) in pairs(items.get(5))? {
            let Ok(id) = AgentId::parse(agent) else {
                continue;
            };
            let change = self.compile(app, &id, &spec);
            snapshot.changes.insert(id, change);
        }
        let customer = text(items.get(6))?;
        if !customer.is_empty() {
            snapshot.customer = serde_json::from_str(&customer).ok();
        }
        Ok(snapshot)
    }

    /// The compiled agent for a stored definition, compiling it once per definition.
    fn compile(&self, app: SdkAppId, id: &AgentId, spec: &str) -> Option<Arc<Agent>> {
        let key = (app, id.clone());
        let mut compiled = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, agent)) = compiled.get(&key)
            && known == spec
        {
            return Some(agent.clone());
        }
        let config: AgentConfig = serde_json::from_str::<Option<AgentConfig>>(spec).ok()??;
        let zone = self.zones.get(&app).copied().unwrap_or(chrono_tz::UTC);
        let agent = Arc::new(Agent::compile(&config, zone).ok()?);
        compiled.insert(key, (spec.to_owned(), agent.clone()));
        Some(agent)
    }
}

impl Store for RedisStore {
    async fn assign<F>(
        &self,
        app: SdkAppId,
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        let snapshot = match self
            .snapshot(app, Some(session), Some(customer), now)
            .await?
        {
            Err(replayed) => return Ok(Assignment::Replayed(replayed)),
            Ok(snapshot) => snapshot.for_customer(customer),
        };
        let decision = decide(&snapshot);
        if !decision.wants_reservation() {
            return Ok(Assignment::Fresh(decision.without_reservation()));
        }
        let template = decision.reserve_at(0);
        let mut args = vec![
            to_ms(now).to_string(),
            session.as_str().to_owned(),
            customer.as_str().to_owned(),
            to_ms(now + self.ttl).to_string(),
            serde_json::to_string(&template).map_err(unavailable)?,
            decision.limit.to_string(),
        ];
        for candidate in &decision.candidates {
            args.push(candidate.agent.as_str().to_owned());
            args.push(candidate.capacity.to_string());
        }
        let items = into_items(self.run(&self.reserve, app, args).await?)?;
        match tag(&items)? {
            1 => Ok(Assignment::Replayed(record(items.get(1))?.answer)),
            2 => Ok(Assignment::Fresh(record(items.get(1))?.answer)),
            _ => Ok(Assignment::Fresh(decision.without_reservation())),
        }
    }

    async fn inspect<F, R>(
        &self,
        app: SdkAppId,
        customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        // Without a session there is nothing to replay.
        let snapshot = self
            .snapshot(app, None, customer, now)
            .await?
            .unwrap_or_default();
        let snapshot = match customer {
            Some(customer) => snapshot.for_customer(customer),
            None => snapshot,
        };
        Ok(read(&snapshot))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING").ignore();
        self.write(pipe).await
    }

    async fn set_status(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        status: AgentStatus,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        let status = serde_json::to_string(&status).map_err(unavailable)?;
        pipe.hset(Keys::of(app).statuses, agent.as_str(), status)
            .ignore();
        self.write(pipe).await
    }

    async fn upsert_agent(
        &self,
        app: SdkAppId,
        agent: Arc<Agent>,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let keys = Keys::of(app);
        let spec = serde_json::to_string(&Some(&agent.spec)).map_err(unavailable)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&keys.roster, agent.id.as_str(), spec)
            .ignore()
            .hdel(&keys.statuses, agent.id.as_str())
            .ignore();
        self.write(pipe).await
    }

    async fn remove_agent(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let keys = Keys::of(app);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&keys.roster, agent.as_str(), "null")
            .ignore()
            .hdel(&keys.statuses, agent.as_str())
            .ignore();
        self.write(pipe).await
    }

    async fn upsert_customer(
        &self,
        app: SdkAppId,
        customer: Customer,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&customer).map_err(unavailable)?;
        let mut pipe = redis::pipe();
        pipe.hset(Keys::of(app).customers, customer.id.as_str(), json)
            .ignore();
        self.write(pipe).await
    }
}

/// The keys of one app, all in the app's hash slot.
struct Keys {
    sessions: String,
    expiry: String,
    active: String,
    last: String,
    history: String,
    statuses: String,
    roster: String,
    customers: String,
}

impl Keys {
    fn of(app: SdkAppId) -> Self {
        let key = |name: &str| format!("handoff:{{{app}}}:{name}");
        Self {
            sessions: key("sessions"),
            expiry: key("expiry"),
            active: key("active"),
            last: key("last"),
            history: key("history"),
            statuses: key("statuses"),
            roster: key("roster"),
            customers: key("customers"),
        }
    }

    /// In the scripts' KEYS order.
    fn all(self) -> [String; 8] {
        [
            self.sessions,
            self.expiry,
            self.active,
            self.last,
            self.history,
            self.statuses,
            self.roster,
            self.customers,
        ]
    }
}

/// One look at an app's state in Redis.
#[derive(Default)]
struct Snapshot {
    loads: HashMap<AgentId, AgentLoad>,
    statuses: HashMap<AgentId, AgentStatus>,
    changes: RosterChanges,
    customer: Option<Customer>,
    history: Option<(AgentId, SystemTime)>,
    customer_id: Option<ClientUserId>,
}

impl Snapshot {
    fn for_customer(mut self, customer: &ClientUserId) -> Self {
        self.customer_id = Some(customer.clone());
        self
    }
}

impl StateView for Snapshot {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).copied()
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customer.as_ref().filter(|customer| &customer.id == id)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        if self.customer_id.as_ref() != Some(customer) {
            return None;
        }
        self.history.as_ref().map(|(agent, at)| (agent, *at))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }
}

fn into_items(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unavailable(format!("unexpected script reply {other:?}"))),
    }
}

fn tag(items: &[Value]) -> Result<i64, StoreError> {
    match items.first() {
        Some(Value::Int(tag)) => Ok(*tag),
        other => Err(unavailable(format!("unexpected script tag {other:?}"))),
    }
}

fn text(value: Option<&Value>) -> Result<String, StoreError> {
    match value {
        Some(Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).map_err(unavailable),
        Some(Value::SimpleString(text)) => Ok(text.clone()),
        Some(Value::Nil) | None => Ok(String::new()),
        Some(other) => Err(unavailable(format!("unexpected reply {other:?}"))),
    }
}

fn record(value: Option<&Value>) -> Result<AssignmentRecord, StoreError> {
    serde_json::from_str(&text(value)?).map_err(unavailable)
}

/// An HGETALL reply as (field, value) pairs.
fn pairs(value: Option<&Value>) -> Result<Vec<(String, String)>, StoreError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Map(map)) => {
            return map
                .iter()
                .map(|(k, v)| Ok((text(Some(k))?, text(Some(v))?)))
                .collect();
        }
        _ => return Ok(Vec::new()),
    };
    items
        .chunks(2)
        .map(|pair| Ok((text(pair.first())?, text(pair.get(1))?)))
        .collect()
}
