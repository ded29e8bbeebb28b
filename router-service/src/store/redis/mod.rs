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

use chrono_tz::Tz;
use handoff_core::{
    config::StoreConfig,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};
use redis::{
    Client, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};

mod snapshot;

use snapshot::{Snapshot, into_items, pairs, record, tag, text};

use super::{
    Assignment, Change, Store, StoreError,
    record::{
        self, AnswerRecord, CustomerRecord, HistoryRecord, RosterRecord, StatusRecord, from_ms,
        to_ms,
    },
};
use crate::engine::{Agent, Answer, App, Decision, StateView};

/// Expires due assignments; prepended to both scripts.
const SWEEP: &str = include_str!("sweep.lua");
/// Expires, then replays a live session or reads the app's state.
const SNAPSHOT: &str = include_str!("snapshot.lua");
/// Expires, then replays or reserves the first ranked candidate below capacity.
const RESERVE: &str = include_str!("reserve.lua");

/// Agents defined over gRPC, by app and id: the stored definition, the zone it was compiled
/// in (the app's, which a reload may change), and its compiled form.
type CompiledAgents = HashMap<(SdkAppId, AgentId), (String, Tz, Arc<Agent>)>;

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
    /// Agents added over gRPC, compiled once per definition and zone.
    compiled: Mutex<CompiledAgents>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

pub(super) fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

impl RedisStore {
    /// Connects to the server (or cluster) of `config`; fails when it cannot be reached.
    pub async fn connect(config: &StoreConfig, ttl: Duration) -> Result<Self, StoreError> {
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
        app: &App,
        session: Option<&SessionId>,
        customer: Option<&ClientUserId>,
        now: SystemTime,
    ) -> Result<Result<Snapshot, Answer>, StoreError> {
        let args = vec![
            to_ms(now).to_string(),
            session.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            customer.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        ];
        let reply = self.run(&self.snapshot, app.id, args).await?;
        let items = into_items(reply)?;
        if tag(&items)? == 1 {
            return Ok(Err(assignment(items.get(1))?));
        }
        Ok(Ok(self.parse_snapshot(app, &items)?))
    }

    fn parse_snapshot(&self, app: &App, items: &[Value]) -> Result<Snapshot, StoreError> {
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
            let history: HistoryRecord = record::decode(history.as_bytes()).map_err(unavailable)?;
            snapshot.history = Some((history.agent, from_ms(history.at_ms)));
        }
        for (agent, status) in pairs(items.get(4))? {
            let (Ok(agent), Ok(status)) = (
                AgentId::parse(agent),
                record::decode::<StatusRecord>(status.as_bytes()),
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
            snapshot.customer = record::decode::<CustomerRecord>(customer.as_bytes())
                .ok()
                .map(Into::into);
        }
        Ok(snapshot)
    }

    /// The compiled agent for a stored definition, compiled in `app`'s zone once per
    /// definition and zone.
    fn compile(&self, app: &App, id: &AgentId, spec: &str) -> Option<Arc<Agent>> {
        let key = (app.id, id.clone());
        let mut compiled = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, zone, agent)) = compiled.get(&key)
            && known == spec
            && *zone == app.zone
        {
            return Some(agent.clone());
        }
        let config = record::decode::<RosterRecord>(spec.as_bytes()).ok()??;
        let agent = Arc::new(Agent::compile(&config, app.zone).ok()?);
        compiled.insert(key, (spec.to_owned(), app.zone, agent.clone()));
        Some(agent)
    }
}

/// The answer of a stored assignment record.
fn assignment(value: Option<&Value>) -> Result<Answer, StoreError> {
    Ok(record(value)?.answer.into())
}

impl Store for RedisStore {
    async fn assign<F>(
        &self,
        app: &App,
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
            record::encode(&AnswerRecord::from(&template)),
            decision.max_agents.to_string(),
        ];
        for candidate in &decision.ranked {
            args.push(candidate.agent.as_str().to_owned());
            args.push(candidate.capacity.to_string());
        }
        let items = into_items(self.run(&self.reserve, app.id, args).await?)?;
        match tag(&items)? {
            1 => Ok(Assignment::Replayed(assignment(items.get(1))?)),
            2 => Ok(Assignment::Fresh(assignment(items.get(1))?)),
            _ => Ok(Assignment::Fresh(decision.without_reservation())),
        }
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
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

    async fn apply(&self, app: &App, change: Change, _now: SystemTime) -> Result<(), StoreError> {
        let keys = Keys::of(app.id);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match change {
            Change::SetStatus { agent, status } => {
                pipe.hset(&keys.statuses, agent.as_str(), record::encode(&status))
                    .ignore();
            }
            Change::PutAgent(agent) => {
                let spec = record::encode(&Some(&agent.spec));
                pipe.hset(&keys.roster, agent.id.as_str(), spec)
                    .ignore()
                    .hdel(&keys.statuses, agent.id.as_str())
                    .ignore();
            }
            Change::RemoveAgent(agent) => {
                pipe.hset(&keys.roster, agent.as_str(), record::encode(&None::<()>))
                    .ignore()
                    .hdel(&keys.statuses, agent.as_str())
                    .ignore();
            }
            Change::PutCustomer(customer) => {
                let json = record::encode(&CustomerRecord::from(&customer));
                pipe.hset(&keys.customers, customer.id.as_str(), json)
                    .ignore();
            }
        }
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
