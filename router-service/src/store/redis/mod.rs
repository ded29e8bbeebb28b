//! The Redis store: every router replica shares one state, so any replica can answer any
//! handoff. All of an app's keys carry the app as a hash tag (`handoff:{<app>}:...`), so they
//! live in one slot of a Redis Cluster and one Lua script can touch them all.
//!
//! A decision takes one round trip: the engine decides over this replica's view of the app
//! (loads, statuses, roster changes, kept fresh from the app's changes stream) and what it
//! last read of this customer, then one reserve script releases what is due, replays a
//! live session, checks that the decision was made over the state as it is, re-checks
//! each ranked candidate's load and reserves the first still below capacity, and sends
//! back what changed since the view last looked. Two replicas deciding at the same moment
//! therefore never push an agent over capacity. When the customer's records differ from
//! what the replica read, or (for the one decision of a replica in flight that brings its
//! view up to date) anything changed since the view looked, the script reserves nothing and
//! sends what did: the engine decides again over that, and the second call reserves (two
//! round trips, at most).
//!
//! A session event reads the session's record, computes its next state with the same
//! [`session`] rules as the local store, and stores it with a script that applies it only if
//! the record is still the one read (else it reads again), together with the report's
//! identity: every event is one atomic step, and replicas never count one twice.

use std::{
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
mod view;

use snapshot::{into_items, pairs, tag, text};
use view::{Known, Looked, Update, View};

use super::{
    Applied, Assignment, Change, DEDUP_WINDOW, Lifetimes, Look, MAX_SEEN, Store, StoreError,
    record::{self, CustomerRecord, HistoryRecord, RosterRecord, StatusRecord, from_ms, to_ms},
    session::{self, Effects, MAX_STRAY_ENDS, SessionEvent, SessionRecord, Weighed},
};
use crate::{
    engine::{self, Agent, Answer, App, Customer, Decision, Handoff, LiveSession, StateView},
    hash::FastMap,
};

/// Helpers and the release of what is due; prepended to every script.
const SWEEP: &str = include_str!("sweep.lua");
/// Replays a live session or reads the app's state.
const SNAPSHOT: &str = include_str!("snapshot.lua");
/// Replays, or reserves the first ranked candidate below capacity.
const RESERVE: &str = include_str!("reserve.lua");
/// Reads one session's record.
const READ_SESSION: &str = include_str!("read_session.lua");
/// Stores a session's next state if its record is unchanged.
const EVENT: &str = include_str!("event.lua");
/// Sets a status unless a later one is known.
const STATUS: &str = include_str!("status.lua");
/// Forgets previous agents linked before a time, a slice of the history at a time.
const FORGET_LINKS: &str = include_str!("forget_links.lua");
/// Sets each member's unattributed load from Desk's counts and the seats held now.
const DESK_LOAD: &str = include_str!("desk_load.lua");

/// How many links one call of the forgetting script looks at.
const FORGET_BATCH: usize = 1_000;

/// How often a session event reads again when another change got there first.
const EVENT_ATTEMPTS: usize = 8;

/// Agents defined over gRPC, by app and id: the stored definition, the zone it was compiled
/// in (the app's, which a reload may change), and its compiled form.
type CompiledAgents = FastMap<(SdkAppId, AgentId), (String, Tz, Arc<Agent>)>;

/// The connection: one server (a manager that connects on first use and reconnects by
/// itself), or a cluster (connected on first use, and again after a failed attempt). The
/// router starts whether Redis is up or not.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use.
struct LazyCluster {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

/// The key that says which life of Redis's data this is: written at the first start
/// (a random id), read at every health check. Missing when it was there before, Redis lost
/// handoff's data (a restart without persistence, a failover to an empty replica, an
/// eviction): the replica says so loudly, forgets its views, and writes a new one.
const EPOCH_KEY: &str = "handoff:epoch";

/// The key that says which layout handoff's keys in Redis are in, written beside the
/// epoch; a replica refuses to serve from a newer layout than it knows.
const FORMAT_KEY: &str = "handoff:format";

/// The layout of handoff's keys this build writes and the newest it reads. 1 is the layout
/// as first released: a Redis holding handoff's keys but no format key is of it. 2 counts
/// seats by weight (the `weighted` hash, sessions' `weight`), keeps missed offers per
/// session as JSON and groups' waits: a replica of format 1 would count a weighted
/// session's release as one seat, so this one raises the format it finds, and older ones
/// then refuse to serve. 3 announces in each change of an agent's load only the fields that
/// changed (a replica of format 2 would read the others as zero).
pub const FORMAT: u32 = 3;

/// The scripts, each with the sweep in front.
struct Scripts {
    snapshot: Script,
    reserve: Script,
    read_session: Script,
    event: Script,
    status: Script,
    forget_links: Script,
    desk_load: Script,
}

/// Router state in Redis.
pub struct RedisStore {
    connection: Connection,
    lifetimes: Lifetimes,
    timeout: Duration,
    scripts: Scripts,
    /// Agents added over gRPC, compiled once per definition and zone.
    compiled: Mutex<CompiledAgents>,
    /// This replica's view of each app, kept fresh from the app's changes stream.
    views: Mutex<FastMap<SdkAppId, View>>,
    /// Each app's keys, formatted once.
    keys: parking_lot::Mutex<FastMap<SdkAppId, Arc<Keys>>>,
    /// The epoch this replica last saw in Redis.
    epoch: Mutex<Option<String>>,
    /// Set once Redis was found to hold a newer layout than this build reads: every call
    /// is refused (the gateway answers its fallback) until a newer handoff serves it.
    newer_format: std::sync::atomic::AtomicU32,
    /// Where this replica counts the times it found Redis had lost handoff's data.
    data_lost: std::sync::OnceLock<prometheus_client::metrics::counter::Counter>,
}

/// A decision's claim on reading the changes stream for its app's view, given up when it
/// drops: once the view took what was read, or when the read failed or was cancelled.
struct Claim<'a> {
    views: &'a Mutex<FastMap<SdkAppId, View>>,
    app: SdkAppId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(view) = views.get_mut(&self.app) {
            view.refreshed();
        }
    }
}

/// What a snapshot read besides the agents' state: for the customer and the sessions.
struct Fetched {
    update: Update,
    known: Option<Arc<Known>>,
    sessions: Vec<LiveSession>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

/// The CA and client certificate `[router.store]` names for `rediss://`, if any.
fn certificates(config: &StoreConfig) -> Result<Option<redis::TlsCertificates>, StoreError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| unavailable(format!("{}: {err}", path.display())))
    };
    if config.tls_ca.is_none() && config.tls_cert.is_none() {
        return Ok(None);
    }
    let client_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert: config.tls_ca.as_deref().map(read).transpose()?,
    }))
}

pub(super) fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

impl RedisStore {
    /// Connects to the server (or cluster) of `config`; fails when it cannot be reached.
    pub async fn connect(config: &StoreConfig, lifetimes: Lifetimes) -> Result<Self, StoreError> {
        let url = config
            .url
            .as_ref()
            .map(|url| url.expose().to_owned())
            .unwrap_or_default();
        let timeout = config.timeout.get();
        let certificates = certificates(config)?;
        let connection = if config.cluster {
            let nodes: Vec<String> = url.split(',').map(|node| node.trim().to_owned()).collect();
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1);
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            let client = builder.build().map_err(unavailable)?;
            Connection::Cluster(Arc::new(LazyCluster {
                client,
                connection: tokio::sync::OnceCell::new(),
            }))
        } else {
            let client = match certificates {
                Some(certificates) => Client::build_with_tls(url.as_str(), certificates),
                None => Client::open(url.as_str()),
            }
            .map_err(unavailable)?;
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, manager).map_err(unavailable)?,
            )
        };
        let script = |own: &str| Script::new(&format!("{SWEEP}\n{own}"));
        Ok(Self {
            connection,
            lifetimes,
            timeout,
            scripts: Scripts {
                snapshot: script(SNAPSHOT),
                reserve: script(RESERVE),
                read_session: script(READ_SESSION),
                event: script(EVENT),
                status: script(STATUS),
                forget_links: script(FORGET_LINKS),
                desk_load: script(DESK_LOAD),
            },
            compiled: Mutex::new(FastMap::default()),
            views: Mutex::new(FastMap::default()),
            keys: parking_lot::Mutex::new(FastMap::default()),
            epoch: Mutex::new(None),
            newer_format: std::sync::atomic::AtomicU32::new(0),
            data_lost: std::sync::OnceLock::new(),
        })
    }

    /// Counts each loss of handoff's data this replica finds in `counter` (the router's
    /// `handoff_router_store_data_lost_total`).
    pub fn count_data_lost_in(&self, counter: prometheus_client::metrics::counter::Counter) {
        let _ = self.data_lost.set(counter);
    }

    /// Checks that Redis still holds handoff's data, by the epoch key: written when there
    /// is none yet; when one this replica saw is gone or replaced, the data was lost (or
    /// another replica found so first): the loss is logged and counted, and this replica's
    /// views are dropped, so that every decision reads what Redis holds now rather than
    /// what this replica remembers of a state that is gone.
    async fn check_epoch(&self) -> Result<(), StoreError> {
        // Two reads: the keys may live on different nodes of a cluster.
        let mut read = redis::pipe();
        read.get(FORMAT_KEY);
        let (format,): (Option<u32>,) = self.query(read).await?;
        match format {
            Some(format) if format > FORMAT => {
                self.newer_format
                    .store(format, std::sync::atomic::Ordering::Relaxed);
                return Err(self
                    .refused_format()
                    .unwrap_or_else(|| unavailable("format")));
            }
            Some(format) if format == FORMAT => self
                .newer_format
                .store(0, std::sync::atomic::Ordering::Relaxed),
            // None, or an older layout this build reads: raised to this one (never
            // lowered, should a newer replica have raised it meanwhile).
            _ => {
                self.newer_format
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                let mut write = redis::pipe();
                write
                    .cmd("EVAL")
                    .arg(
                        "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) \
                         then redis.call('SET', KEYS[1], ARGV[1]) end",
                    )
                    .arg(1)
                    .arg(FORMAT_KEY)
                    .arg(FORMAT)
                    .ignore();
                self.write(write).await?;
            }
        }
        let mut read = redis::pipe();
        read.get(EPOCH_KEY);
        let (current,): (Option<String>,) = self.query(read).await?;
        let known = self
            .epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let current = match current {
            Some(current) => current,
            None => {
                let fresh = format!("{:x}-{}", std::process::id(), to_ms(SystemTime::now()));
                let mut write = redis::pipe();
                write
                    .cmd("SET")
                    .arg(EPOCH_KEY)
                    .arg(&fresh)
                    .arg("NX")
                    .ignore();
                write.get(EPOCH_KEY);
                let (written,): (Option<String>,) = self.query(write).await?;
                written.unwrap_or(fresh)
            }
        };
        if known.as_ref().is_some_and(|known| *known != current) {
            if let Some(counter) = self.data_lost.get() {
                counter.inc();
            }
            tracing::error!(
                "Redis lost handoff's state (restarted without persistence, failed over to an empty replica, or evicted keys): seats, statuses, agents added over gRPC, pushed customers and previous agents are gone; the config's roster, groups and customers still route. Give Redis persistence (appendonly yes) and maxmemory-policy noeviction"
            );
            self.views
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        *self.epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(current);
        Ok(())
    }

    /// What in Redis's own settings puts handoff's state at risk (read with `CONFIG GET`;
    /// managed services that refuse it are named as unread): without an append-only file
    /// synced every second or better a restart loses state; with an eviction policy other
    /// than `noeviction` Redis may drop it under memory pressure.
    pub async fn audit(&self) -> Result<Vec<String>, StoreError> {
        let mut ping = redis::pipe();
        ping.cmd("PING").ignore();
        self.write(ping).await?;
        let mut pipe = redis::pipe();
        for key in ["appendonly", "appendfsync", "maxmemory-policy"] {
            pipe.cmd("CONFIG").arg("GET").arg(key);
        }
        let read: Result<(Vec<String>, Vec<String>, Vec<String>), _> = self.query(pipe).await;
        let Ok((appendonly, appendfsync, policy)) = read else {
            return Ok(vec![
                "cannot read Redis's settings (CONFIG GET is refused): make sure it persists with appendonly yes, appendfsync everysec or always, and maxmemory-policy noeviction".to_owned(),
            ]);
        };
        let value = |pair: &[String]| pair.get(1).cloned().unwrap_or_default();
        let mut warnings = Vec::new();
        if value(&appendonly) != "yes" {
            warnings.push(format!(
                "Redis has appendonly {}: a restart loses handoff's state (seats, statuses, run-time agents, customers); set appendonly yes",
                value(&appendonly)
            ));
        } else if !matches!(value(&appendfsync).as_str(), "everysec" | "always") {
            warnings.push(format!(
                "Redis has appendfsync {}: a crash may lose more than a second of handoff's state; set everysec or always",
                value(&appendfsync)
            ));
        }
        if value(&policy) != "noeviction" {
            warnings.push(format!(
                "Redis has maxmemory-policy {}: under memory pressure it may evict handoff's state; set noeviction",
                value(&policy)
            ));
        }
        Ok(warnings)
    }

    /// Runs `script` with the app's keys, `now` and `max_session` and then what `args`
    /// adds, bounded by the timeout.
    ///
    /// One `EVALSHA` command is built in place (redis' `ScriptInvocation` would copy every
    /// key and argument into a buffer of its own first); a server that does not know the
    /// script yet is sent it once, and the call is repeated.
    async fn run(
        &self,
        script: &Script,
        app: SdkAppId,
        now: SystemTime,
        args: impl FnOnce(&mut redis::Cmd),
    ) -> Result<Value, StoreError> {
        if let Some(refused) = self.refused_format() {
            return Err(refused);
        }
        let keys = self.keys(app);
        let mut cmd = redis::cmd("EVALSHA");
        let all = keys.all();
        cmd.arg(script.get_hash()).arg(all.len());
        for key in all {
            cmd.arg(key);
        }
        cmd.arg(to_ms(now)).arg(millis(self.lifetimes.max_session));
        args(&mut cmd);
        let call = async {
            match &self.connection {
                Connection::Single(conn) => evalsha(script, &cmd, &mut conn.clone()).await,
                Connection::Cluster(lazy) => evalsha(script, &cmd, &mut lazy.get().await?).await,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unavailable)
    }

    /// The app's keys, formatted once.
    fn keys(&self, app: SdkAppId) -> Arc<Keys> {
        self.keys
            .lock()
            .entry(app)
            .or_insert_with(|| Arc::new(Keys::of(app)))
            .clone()
    }

    /// Runs a plain command pipeline atomically (refused while Redis holds a newer layout).
    async fn write(&self, pipe: redis::Pipeline) -> Result<(), StoreError> {
        if let Some(refused) = self.refused_format() {
            return Err(refused);
        }
        self.query(pipe).await
    }

    /// Why every call is refused, once Redis was found in a newer layout than this build's.
    fn refused_format(&self) -> Option<StoreError> {
        let newer = self.newer_format.load(std::sync::atomic::Ordering::Relaxed);
        (newer > FORMAT).then(|| {
            unavailable(format!(
                "Redis holds handoff's state in format {newer}, written by a newer handoff; this one reads up to format {FORMAT}: run the newer version"
            ))
        })
    }

    /// Runs a plain command pipeline, bounded by the timeout.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, StoreError> {
        let call = async {
            match &self.connection {
                Connection::Single(conn) => pipe.query_async::<T>(&mut conn.clone()).await,
                Connection::Cluster(lazy) => pipe.query_async::<T>(&mut lazy.get().await?).await,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unavailable)
    }

    /// What changed in `app` since this replica's view last looked (or everything), and
    /// what `look` asks for; or the answer to replay for `session`.
    async fn fetch(
        &self,
        app: &App,
        session: Option<&SessionId>,
        look: Look<'_>,
        now: SystemTime,
        seen: String,
    ) -> Result<Result<Fetched, Answer>, StoreError> {
        let reply = self
            .run(&self.scripts.snapshot, app.id, now, |cmd| {
                cmd.arg(session.map_or("", SessionId::as_str))
                    .arg(look.customer.map_or("", ClientUserId::as_str))
                    .arg(if look.sessions { "1" } else { "0" })
                    .arg(seen);
            })
            .await?;
        let items = into_items(reply)?;
        if tag(&items)? == 1 {
            return match session_record(items.get(1))?.and_then(|r| r.replay()) {
                Some(answer) => Ok(Err(answer)),
                None => Err(unavailable("a session to replay without its answer")),
            };
        }
        let mode = text(items.get(1))?;
        let last = text(items.get(2))?;
        let known = Known::read(text(items.get(3))?, text(items.get(4))?)?;
        let mut sessions = Vec::new();
        for (session, raw) in pairs(items.get(5))? {
            let (Ok(session), Ok(record)) = (
                SessionId::parse(session),
                record::decode::<SessionRecord>(raw.as_bytes()),
            ) else {
                continue;
            };
            let record = record.normalized();
            if record.state().holds_seat() {
                sessions.push(record.live(&session));
            }
        }
        sessions.sort_by(|a, b| a.session.cmp(&b.session));
        let update = Update::parse(&mode, &last, items.get(6..).unwrap_or_default())?;
        Ok(Ok(Fetched {
            update,
            known,
            sessions,
        }))
    }

    /// Where this replica's view of `app` should read the changes stream from, for a look
    /// that must see everything up to now (Explain, ListAgents, ...).
    fn seen(&self, app: SdkAppId) -> String {
        self.views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&app)
            .map(View::seen)
            .unwrap_or_default()
    }

    /// What a decision passes the reserve script for the changes stream: where to read it
    /// from, with the claim on reading it, or `-` (no reading) when another decision of
    /// this replica is reading it already. Under load, one call in flight at a time carries
    /// what changed, instead of every call carrying it all again.
    fn claim(&self, app: SdkAppId) -> (String, Option<Claim<'_>>) {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        match views.entry(app).or_default().claim() {
            Some(seen) => {
                let claim = Claim {
                    views: &self.views,
                    app,
                };
                (seen, Some(claim))
            }
            None => (NOT_READING.to_owned(), None),
        }
    }

    /// Brings this replica's view of `app` up to date with `fetched` and runs `read` over it.
    fn over_view<R>(
        &self,
        app: &App,
        fetched: Fetched,
        customer: Option<&ClientUserId>,
        read: impl FnOnce(&dyn StateView) -> R,
    ) -> R {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let view = views.entry(app.id).or_default();
        view.apply(app, fetched.update, |id, spec| self.compile(app, id, spec));
        if let Some(customer) = customer {
            view.learn(customer, fetched.known.clone());
        }
        let looked = Looked {
            view,
            known: fetched.known,
            customer_id: customer,
            sessions: fetched.sessions,
        };
        read(&looked)
    }

    /// Runs `decide` over this replica's view of `app` as it is, with what it last read of
    /// `customer`: the decision, the records it read, and what Desk counts beyond the seats
    /// of its candidates.
    fn decide_over_view(
        &self,
        app: &App,
        customer: &ClientUserId,
        decide: &mut impl FnMut(&dyn StateView) -> Decision,
    ) -> (Decision, Option<Arc<Known>>, FastMap<AgentId, u32>) {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let view = views.entry(app.id).or_default();
        view.prepare(app, |id, spec| self.compile(app, id, spec));
        let known = view.known(customer);
        let looked = Looked {
            view,
            known: known.clone(),
            customer_id: Some(customer),
            sessions: Vec::new(),
        };
        let decision = decide(&looked);
        let unattributed = decision
            .ranked
            .iter()
            .filter_map(|candidate| {
                let extra = view.unattributed(&candidate.agent);
                (extra > 0).then(|| (candidate.agent.clone(), extra))
            })
            .collect();
        (decision, known, unattributed)
    }

    /// Brings this replica's view of `app` up to date with what a reserve script sent back
    /// (what changed, and what `customer`'s records are now); the view's last change seen,
    /// to read from next.
    fn refresh(
        &self,
        app: &App,
        customer: &ClientUserId,
        update: Update,
        known: Option<Arc<Known>>,
    ) -> String {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let view = views.entry(app.id).or_default();
        view.apply(app, update, |id, spec| self.compile(app, id, spec));
        view.learn(customer, known);
        view.seen()
    }

    /// Runs the reserve script for `decision`: checked against what it read (`checked`:
    /// the customer's records) unless `checked` is `None`, sent what changed since `seen`
    /// (`-`: nothing). The script's reply, and the answer the first candidate would get.
    #[allow(clippy::too_many_arguments)]
    async fn reserve(
        &self,
        app: &App,
        handoff: &Handoff,
        now: SystemTime,
        decision: &Decision,
        unattributed: &FastMap<AgentId, u32>,
        checked: Option<&Option<Arc<Known>>>,
        seen: &str,
    ) -> Result<(Vec<Value>, Option<Answer>), StoreError> {
        let customer = &handoff.client_user;
        let hold = self.lifetimes.hold(app);
        let wanted = decision.wants_reservation();
        let template = wanted.then(|| decision.reserve_at(0));
        // What the session's record is when it is new and the first candidate takes it.
        let first = template.as_ref().map(|template| {
            let (first, _) =
                session::reserve(None, template, customer, handoff.event_time, now, hold);
            record::encode(&first)
        });
        // Each candidate and the seats taken below which the session still fits: capacity
        // less what Desk counts beyond the seats, less the session's seats but one.
        let mut ranked = String::new();
        if wanted {
            use std::fmt::Write as _;
            let more = decision.weight.saturating_sub(1);
            for candidate in &decision.ranked {
                let extra = unattributed.get(&candidate.agent).copied().unwrap_or(0);
                let below = candidate
                    .capacity
                    .saturating_sub(extra)
                    .saturating_sub(more);
                let _ = write!(ranked, "{} {below} ", candidate.agent);
            }
        }
        let reply = self
            .run(&self.scripts.reserve, app.id, now, |cmd| {
                cmd.arg(handoff.session.as_str())
                    .arg(customer.as_str())
                    .arg(to_ms(now + hold))
                    .arg(decision.max_agents)
                    .arg(to_ms(handoff.event_time))
                    .arg(first.as_deref().unwrap_or_default());
                let [keep, oldest] = fair_share_args(app, now);
                cmd.arg(keep).arg(oldest).arg(decision.weight);
                match checked {
                    Some(known) => {
                        let (history, profile) = known.as_deref().map_or(("", ""), |known| {
                            (known.history_raw.as_str(), known.profile_raw.as_str())
                        });
                        cmd.arg("1").arg(history).arg(profile);
                    }
                    None => {
                        cmd.arg("").arg("").arg("");
                    }
                }
                cmd.arg(seen).arg(ranked);
            })
            .await?;
        Ok((into_items(reply)?, template))
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
        let agent = Arc::new(Agent::compile_overlay(&config, app.zone).ok()?);
        compiled.insert(key, (spec.to_owned(), app.zone, agent.clone()));
        Some(agent)
    }

    /// Records a session event: read, weigh with [`session::weigh`], store if unchanged.
    ///
    /// Whether the event's agent is one of the app's, and their capacity, come from this
    /// replica's view of the roster, read up to now first; their load is checked by the
    /// storing script itself.
    async fn report(
        &self,
        app: &App,
        event: &SessionEvent,
        identity: Option<String>,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
        let session_id = event.session.as_str().to_owned();
        let capacity = match event.agent.as_ref() {
            Some(agent) => {
                self.inspect(app, Look::default(), now, |state| {
                    engine::agent(app, state.roster_changes(), agent).map(|agent| agent.capacity)
                })
                .await?
            }
            None => None,
        };
        let identity = identity.unwrap_or_default();
        for _ in 0..EVENT_ATTEMPTS {
            let raw = self
                .run(&self.scripts.read_session, app.id, now, |cmd| {
                    cmd.arg(&session_id);
                })
                .await?;
            let raw = text(Some(&raw))?;
            let old = if raw.is_empty() {
                None
            } else {
                let record: SessionRecord = record::decode(raw.as_bytes()).map_err(unavailable)?;
                Some(record.normalized())
            };
            let weighed = session::weigh(
                old,
                event,
                now,
                self.lifetimes.max_session,
                app.reports.capacity_margin,
                |_| capacity,
            );
            let (record, effects, limit, outcome) = match weighed {
                Weighed::Nothing(Applied::Superseded) => {
                    (None, Effects::default(), None, Applied::Superseded)
                }
                // Nothing to store, and no identity to remember: a retry is answered alike.
                Weighed::Nothing(outcome) => return Ok(outcome),
                Weighed::Changes {
                    record,
                    effects,
                    limit,
                    outcome,
                } => (Some(*record), *effects, limit, outcome),
            };
            let mut args = vec![
                session_id.clone(),
                raw,
                record.as_ref().map(record::encode).unwrap_or_default(),
                record
                    .as_ref()
                    .map(|record| record.expires_at_ms.to_string())
                    .unwrap_or_default(),
                identity.clone(),
            ];
            args.extend(effect_args(&effects));
            args.extend([millis(DEDUP_WINDOW).to_string(), MAX_SEEN.to_string()]);
            match limit {
                Some((agent, most)) => args.extend([agent.to_string(), most.to_string()]),
                None => args.extend([String::new(), String::new()]),
            }
            let stray = record.as_ref().is_some_and(SessionRecord::is_stray_end);
            args.extend([
                if stray { "1" } else { "0" }.to_owned(),
                MAX_STRAY_ENDS.to_string(),
            ]);
            for effect in [&effects.finished, &effects.missed, &effects.accepted] {
                match effect {
                    Some((agent, ms)) => args.extend([agent.to_string(), ms.to_string()]),
                    None => args.extend([String::new(), String::new()]),
                }
            }
            args.push(handoff_core::config::MAX_MISSES.to_string());
            match &effects.took {
                Some((agent, ms)) => args.extend([agent.to_string(), ms.to_string()]),
                None => args.extend([String::new(), String::new()]),
            }
            args.extend(fair_share_args(app, now));
            args.extend([
                effects.released_seats.max(1).to_string(),
                effects.taken_seats.max(1).to_string(),
            ]);
            match effects.waited.as_ref().filter(|_| app.tracks_waits) {
                Some((group, asked, wait)) => {
                    args.extend([group.clone(), asked.to_string(), wait.to_string()]);
                }
                None => args.extend([String::new(), String::new(), String::new()]),
            }
            let reply = self
                .run(&self.scripts.event, app.id, now, |cmd| {
                    cmd.arg(args);
                })
                .await?;
            match reply {
                Value::Int(1) => return Ok(outcome),
                Value::Int(2) => return Ok(Applied::Duplicate),
                Value::Int(3) => return Ok(Applied::Superseded),
                Value::Int(4) => return Ok(Applied::OverCapacity),
                Value::Int(0) => continue,
                other => return Err(unavailable(format!("unexpected event reply {other:?}"))),
            }
        }
        Err(unavailable(format!(
            "session {} kept changing under {EVENT_ATTEMPTS} attempts to record an event",
            event.session
        )))
    }
}

/// Appends a roster change (which also drops the agent's live status) to the app's changes
/// stream, in the same transaction as the change.
fn announce(pipe: &mut redis::Pipeline, keys: &Keys, agent: &str, spec: &str) {
    pipe.cmd("XADD")
        .arg(&keys.changes)
        .arg("MAXLEN")
        .arg("~")
        .arg(20_000)
        .arg("*")
        .arg("agent")
        .arg(agent)
        .arg("status")
        .arg("")
        .arg("roster")
        .arg(spec)
        .ignore();
}

/// The event script's arguments for `effects`: seat released, seat taken, idle clock,
/// previous-agent link.
fn effect_args(effects: &Effects) -> Vec<String> {
    let seat = |seat: &Option<(AgentId, bool)>| match seat {
        Some((agent, confirmed)) => [agent.to_string(), if *confirmed { "1" } else { "0" }.into()],
        None => [String::new(), "0".into()],
    };
    let mut args = Vec::with_capacity(9);
    args.extend(seat(&effects.released));
    args.extend(seat(&effects.taken));
    match &effects.last_assigned {
        Some((agent, ms)) => args.extend([agent.to_string(), ms.to_string()]),
        None => args.extend([String::new(), String::new()]),
    }
    match &effects.history {
        Some((customer, agent, ms)) => {
            args.extend([customer.to_string(), agent.to_string(), ms.to_string()]);
        }
        None => args.extend([String::new(), String::new(), String::new()]),
    }
    args
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Fair share's arguments to the scripts: how many sessions an agent's record keeps ('0'
/// when the app has no fair share) and the oldest time it counts.
fn fair_share_args(app: &App, now: SystemTime) -> [String; 2] {
    match app.fair_share {
        Some((sessions, window)) => [
            sessions.to_string(),
            to_ms(now.checked_sub(window).unwrap_or(std::time::UNIX_EPOCH)).to_string(),
        ],
        None => ["0".to_owned(), "0".to_owned()],
    }
}

/// The field of the `desk` hash that holds Desk's groups (never an e-mail).
pub(super) const DESK_GROUPS: &str = "groups";
/// The field of the `desk` hash that holds Desk's business hours (never an e-mail).
pub(super) const DESK_HOURS: &str = "hours";

/// Where a decision that leaves the changes stream to another reads it from: nowhere.
const NOT_READING: &str = "-";

/// A customer's previous agent and when it was linked, from its stored record (`""`: none).
fn previous_agent(raw: &str) -> Result<Option<(AgentId, SystemTime)>, StoreError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let history: HistoryRecord = record::decode(raw.as_bytes()).map_err(unavailable)?;
    Ok(Some((history.agent, from_ms(history.at_ms))))
}

/// A customer's profile from its stored record (`""`: none; unreadable: none).
fn profile(raw: &str) -> Option<Customer> {
    (!raw.is_empty())
        .then(|| record::decode::<CustomerRecord>(raw.as_bytes()).ok())
        .flatten()
        .map(Into::into)
}

/// A stored session record, if the reply holds one.
fn session_record(value: Option<&Value>) -> Result<Option<SessionRecord>, StoreError> {
    let raw = text(value)?;
    if raw.is_empty() {
        return Ok(None);
    }
    let record: SessionRecord = record::decode(raw.as_bytes()).map_err(unavailable)?;
    Ok(Some(record.normalized()))
}

impl Store for RedisStore {
    async fn assign<F>(
        &self,
        app: &App,
        handoff: &Handoff,
        now: SystemTime,
        mut decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnMut(&dyn StateView) -> Decision + Send,
    {
        let customer = &handoff.client_user;
        let (mut seen, claim) = self.claim(app.id);
        // The first call is checked against the state as it is; the second, over what the
        // first sent back, is not.
        let mut checked = true;
        loop {
            let (decision, known, unattributed) = self.decide_over_view(app, customer, &mut decide);
            let check = checked.then_some(&known);
            let (items, template) = self
                .reserve(app, handoff, now, &decision, &unattributed, check, &seen)
                .await?;
            let update = Update::parse(
                &text(items.get(4))?,
                &text(items.get(5))?,
                items.get(6..).unwrap_or_default(),
            )?;
            let known = Known::read(text(items.get(2))?, text(items.get(3))?)?;
            let now_seen = self.refresh(app, customer, update, known);
            if claim.is_some() {
                seen = now_seen;
            }
            let answer = |items: &[Value]| -> Result<Answer, StoreError> {
                session_record(items.get(1))?
                    .and_then(|record| record.answered())
                    .ok_or_else(|| unavailable("a reserved session without its answer"))
            };
            return match tag(&items)? {
                4 if checked => {
                    checked = false;
                    continue;
                }
                1 => Ok(Assignment::Replayed(answer(&items)?)),
                2 => Ok(Assignment::Fresh(answer(&items)?)),
                // Stored as built: the answer is the template's.
                3 => template
                    .map(Assignment::Fresh)
                    .ok_or_else(|| unavailable("a reservation without candidates")),
                0 => Ok(Assignment::Fresh(decision.without_reservation())),
                other => Err(unavailable(format!("unexpected reserve reply {other}"))),
            };
        }
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
        look: Look<'_>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        // Without a session there is nothing to replay.
        let seen = self.seen(app.id);
        match self.fetch(app, None, look, now, seen).await? {
            Ok(fetched) => Ok(self.over_view(app, fetched, look.customer, read)),
            Err(_) => Err(unavailable("a replay without a session")),
        }
    }

    /// Reachable, and still holding handoff's data (see [`RedisStore::check_epoch`]).
    async fn ping(&self) -> Result<(), StoreError> {
        self.check_epoch().await
    }

    /// A key per app and job, in the app's slot, holding its holder's name until it
    /// expires: taken when absent, renewed by its holder, refused to anyone else.
    async fn lease(
        &self,
        app: &App,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        const LEASE: &str = "local held = redis.call('GET', KEYS[1]) \
            if held == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
            if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
            return 0";
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(LEASE)
            .arg(1)
            .arg(format!("handoff:{{{}}}:lease:{job}", app.id))
            .arg(holder)
            .arg(millis(ttl).max(1));
        let (held,): (i64,) = self.query(pipe).await?;
        Ok(held == 1)
    }

    async fn apply(
        &self,
        app: &App,
        change: Change,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
        let keys = self.keys(app.id);
        let identity = change.identity();
        let mut pipe = redis::pipe();
        pipe.atomic();
        match change {
            Change::SetStatus {
                agent,
                status,
                at,
                desk,
                ..
            } => {
                let record = StatusRecord::timed(status, at, desk);
                let args = vec![
                    agent.to_string(),
                    record::encode(&record),
                    to_ms(at).to_string(),
                    identity.unwrap_or_default(),
                    millis(DEDUP_WINDOW).to_string(),
                    MAX_SEEN.to_string(),
                ];
                let reply = self
                    .run(&self.scripts.status, app.id, now, |cmd| {
                        cmd.arg(args);
                    })
                    .await?;
                return match reply {
                    Value::Int(1) => Ok(Applied::Recorded),
                    Value::Int(2) => Ok(Applied::Duplicate),
                    Value::Int(3) => Ok(Applied::Superseded),
                    other => Err(unavailable(format!("unexpected status reply {other:?}"))),
                };
            }
            Change::Session(event) => return self.report(app, &event, identity, now).await,
            Change::ForgetLinks { before } => {
                // One replica sweeps an app per round (the routers send this every half
                // sticky_ttl, 1 s to 60 s): the first to take the app's lock. Were two to
                // sweep, deleting a forgotten link twice would change nothing.
                let round = super::forget_round(app.sticky_ttl);
                let mut lock = redis::pipe();
                lock.cmd("SET")
                    .arg(format!("handoff:{{{}}}:forgetting", app.id))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(round * 9 / 10));
                let (taken,): (Option<String>,) = self.query(lock).await?;
                if taken.is_none() {
                    return Ok(Applied::Recorded);
                }
                // A slice per call, so that no script holds Redis for long.
                let (mut cursor, mut forgotten) = ("0".to_owned(), 0i64);
                loop {
                    let reply = self
                        .run(&self.scripts.forget_links, app.id, now, |cmd| {
                            cmd.arg(to_ms(before)).arg(&cursor).arg(FORGET_BATCH);
                        })
                        .await?;
                    let items = into_items(reply)?;
                    cursor = text(items.first())?;
                    forgotten += match items.get(1) {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    if cursor == "0" {
                        break;
                    }
                }
                tracing::debug!(app = %app.id, forgotten, "previous agents forgotten");
                return Ok(Applied::Recorded);
            }
            Change::PutAgent(agent) => {
                let spec = record::encode(&Some(&agent.spec));
                pipe.hset(&keys.roster, agent.id.as_str(), &spec)
                    .ignore()
                    .hdel(&keys.statuses, agent.id.as_str())
                    .ignore();
                announce(&mut pipe, &keys, agent.id.as_str(), &spec);
            }
            Change::RemoveAgent(agent) => {
                let spec = record::encode(&None::<()>);
                pipe.hset(&keys.roster, agent.as_str(), &spec)
                    .ignore()
                    .hdel(&keys.statuses, agent.as_str())
                    .ignore();
                announce(&mut pipe, &keys, agent.as_str(), &spec);
            }
            Change::PutCustomer(customer) => {
                let json = record::encode(&CustomerRecord::from(&customer));
                pipe.hset(&keys.customers, customer.id.as_str(), json)
                    .ignore();
            }
            Change::DeskRoster(delta) => {
                for (key, member) in &delta.members {
                    match member {
                        Some(member) => pipe.hset(&keys.desk, key, record::encode(member)),
                        None => pipe.hdel(&keys.desk, key),
                    }
                    .ignore();
                }
                if let Some(groups) = &delta.groups {
                    pipe.hset(&keys.desk, DESK_GROUPS, record::encode(groups))
                        .ignore();
                }
                if let Some(hours) = &delta.hours {
                    pipe.hset(&keys.desk, DESK_HOURS, record::encode(hours))
                        .ignore();
                }
                pipe.cmd("XADD")
                    .arg(&keys.changes)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(20_000)
                    .arg("*")
                    .arg("desk")
                    .arg(record::encode(&delta))
                    .ignore();
            }
            Change::DeskLoad(serving) => {
                self.run(&self.scripts.desk_load, app.id, now, |cmd| {
                    for (agent, count) in &serving {
                        cmd.arg(agent.as_str()).arg(count);
                    }
                })
                .await?;
                return Ok(Applied::Recorded);
            }
        }
        self.write(pipe).await?;
        Ok(Applied::Recorded)
    }
}

/// Runs an `EVALSHA` of `script`, loading the script first if the server lacks it.
async fn evalsha(
    script: &Script,
    cmd: &redis::Cmd,
    conn: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<Value> {
    match cmd.query_async(conn).await {
        Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        result => result,
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
    confirmed: String,
    changes: String,
    seen: String,
    stray_ends: String,
    desk: String,
    unattributed: String,
    finished: String,
    misses: String,
    taken: String,
    weighted: String,
    waits: String,
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
            confirmed: key("confirmed"),
            changes: key("changes"),
            seen: key("seen"),
            stray_ends: key("stray_ends"),
            desk: key("desk"),
            unattributed: key("unattributed"),
            finished: key("finished"),
            misses: key("misses"),
            taken: key("taken"),
            weighted: key("weighted"),
            waits: key("waits"),
        }
    }

    /// In the scripts' KEYS order.
    fn all(&self) -> [&str; 19] {
        [
            &self.sessions,
            &self.expiry,
            &self.active,
            &self.last,
            &self.history,
            &self.statuses,
            &self.roster,
            &self.customers,
            &self.confirmed,
            &self.changes,
            &self.seen,
            &self.stray_ends,
            &self.desk,
            &self.unattributed,
            &self.finished,
            &self.misses,
            &self.taken,
            &self.weighted,
            &self.waits,
        ]
    }
}
