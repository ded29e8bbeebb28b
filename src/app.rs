//! The one place the router and the gateway are wired: [`Application::build`] assembles
//! whichever parts have a listener from one config, and [`Application::run`] serves them
//! until a stop, the gateway draining first so that callbacks in flight still reach the
//! router.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use handoff_core::{Config, config::ConfigError, reload, shutdown::Stop};
use handoff_gateway::{Gateway, GatewayError, router_client::RouterClient};
use handoff_router::{
    Router, RouterError, ServeError, Services, engine::Catalog, grpc::auth::Policy, store::AnyStore,
};
use tokio::{net::TcpListener, task::JoinHandle};

/// The listeners the caller has bound, one per part to run; a part without one is not run.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Where the router serves gRPC.
    pub router: Option<TcpListener>,
    /// Where the gateway serves Tencent's callbacks.
    pub gateway: Option<TcpListener>,
    /// Where the router serves its metrics (`[router] metrics_listen`), when it runs.
    pub metrics: Option<TcpListener>,
    /// Where the router serves the operator console (`[router.console] listen`), when it
    /// runs.
    pub console: Option<TcpListener>,
}

/// Why the application could not be built, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The config was refused.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// The router could not be built (its store could not be opened).
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The gateway could not be built or failed while serving.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    /// The router's gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A listener could not be bound or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A part stopped although nobody asked it to.
    #[error("the {0} stopped on its own")]
    StoppedEarly(&'static str),
    /// A part's task panicked.
    #[error("the {0} task failed: {1}")]
    Panicked(&'static str, String),
}

/// Checks everything a binary needs of a config beyond its shape: the router's catalog
/// (rules, agents, schedules) compiles. Every binary refuses a file that fails it.
pub fn check(config: &Config, origin: &Path) -> Result<(), ConfigError> {
    Listening::load(config, origin)?;
    let catalog = Catalog::from_config(config, origin)?;
    let problems = catalog.lint(config, std::time::SystemTime::now());
    if problems.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = problems
        .iter()
        .map(|(key, message)| format!("  {key}: {message}"))
        .collect();
    Err(ConfigError::new(
        origin,
        "",
        format!(
            "expressions that cannot decide anything (they fail, never hold, or do not give a bool):\n{}",
            listed.join("\n")
        ),
    ))
}

/// What `handoff check` says beyond the config itself: for the Redis store, what in the
/// reachable Redis's own settings puts the router's state at risk (persistence, eviction);
/// for apps synced from Desk, the groups their rules name that Desk lacks, or why Desk
/// cannot be read. Reads on a thread of its own, each within a few seconds.
pub fn audit(config: &Config) -> Vec<String> {
    let redis = config.router.store.kind() == handoff_core::config::StoreKind::Redis;
    let desk = config.apps.iter().any(|app| app.desk.is_some());
    if !redis && !desk {
        return Vec::new();
    }
    let config = config.clone();
    let read = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| err.to_string())?;
        runtime.block_on(async {
            let mut warnings = Vec::new();
            if redis {
                warnings.extend(audit_redis(&config.router.store).await);
            }
            warnings.extend(crate::desk::audit(&config).await);
            Ok::<_, String>(warnings)
        })
    });
    match read.join() {
        Ok(Ok(warnings)) => warnings,
        Ok(Err(err)) => vec![format!("the checks beyond the file could not run: {err}")],
        Err(_) => vec!["checking Redis's and Desk's settings failed".to_owned()],
    }
}

async fn audit_redis(store: &handoff_core::config::StoreConfig) -> Vec<String> {
    let lifetimes = handoff_router::store::Lifetimes::of(&Default::default());
    let checked = async {
        let redis = handoff_router::store::RedisStore::connect(store, lifetimes)
            .await
            .map_err(|err| err.to_string())?;
        tokio::time::timeout(std::time::Duration::from_secs(3), redis.audit())
            .await
            .map_err(|_| "no answer within 3 s".to_owned())?
            .map_err(|err| err.to_string())
    };
    match checked.await {
        Ok(warnings) => warnings,
        Err(err) => vec![format!(
            "Redis cannot be reached now ({err}): its persistence and eviction settings were not checked"
        )],
    }
}

/// Applies a reloaded config to the running parts: the router compiles it first, and the
/// gateway takes it only if it did (a gateway alone still refuses what would not compile).
#[derive(Clone, Default)]
pub struct Reloader {
    router: Option<Arc<Router<AnyStore>>>,
    /// Who may call the router's port: swapped after the router took the config.
    access: Option<Policy>,
    gateway: Option<Arc<Gateway>>,
}

impl Reloader {
    /// Counts how a reload went, in the router's metrics and the gateway's.
    pub fn observe(&self, refused: Option<&ConfigError>) {
        if let Some(router) = &self.router {
            router.metrics().reloaded(refused.is_some());
            if let Some(error) = refused {
                router.reload_refused(error);
            }
        }
        if let Some(gateway) = &self.gateway {
            gateway.counters().reloaded(refused.is_some());
        }
    }

    /// Swaps `config` (read from `origin`) into every running part, or into none.
    pub fn apply(&self, config: &Config, origin: &Path) -> Result<(), ConfigError> {
        match &self.router {
            Some(router) => router.reload(config, origin)?,
            None => check(config, origin)?,
        }
        if let Some(access) = &self.access {
            access.reload(&config.router.auth);
        }
        if let Some(gateway) = &self.gateway {
            gateway.reload(config)?;
        }
        Ok(())
    }
}

/// What reloads the config: the file, the environment its overrides came from, and SIGHUP.
struct Watch {
    path: PathBuf,
    env: Vec<(String, String)>,
    hangups: reload::Hangups,
}

/// A part ready to serve.
struct Part<T> {
    listener: TcpListener,
    service: Arc<T>,
    grace: Duration,
}

/// The router and/or the gateway, built and bound, ready to run.
pub struct Application {
    router: Option<Part<Router<AnyStore>>>,
    services: Option<Services<AnyStore>>,
    /// The router listener's access policy (`[router.auth]`).
    access: Option<Policy>,
    gateway: Option<Part<Gateway>>,
    router_addr: Option<SocketAddr>,
    gateway_addr: Option<SocketAddr>,
    metrics: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    console: Option<TcpListener>,
    console_addr: Option<SocketAddr>,
    watch: Option<Watch>,
    /// The config built with: what a reload is compared with.
    started: Config,
    /// `[gateway.tls]` and `[router.tls]`, loaded.
    tls: Listening,
}

/// The TLS each listener serves, when configured.
#[derive(Clone, Default)]
struct Listening {
    gateway: Option<Arc<rustls::ServerConfig>>,
    router: Option<Arc<rustls::ServerConfig>>,
    /// `[router.tls]` for the console, which speaks HTTP/1.1.
    console: Option<Arc<rustls::ServerConfig>>,
}

impl Listening {
    /// Loads `config`'s certificates now, so that a bad file stops the start (and
    /// `check`) naming its key.
    fn load(config: &Config, origin: &Path) -> Result<Self, ConfigError> {
        let load = |tls: &Option<handoff_core::config::TlsConfig>, key: &str, alpn: &[&[u8]]| {
            tls.as_ref()
                .map(|tls| {
                    handoff_core::tls::server_config(tls, alpn)
                        .map_err(|message| ConfigError::new(origin, key, message))
                })
                .transpose()
        };
        Ok(Self {
            gateway: load(&config.gateway.tls, "gateway.tls", &[b"http/1.1"])?,
            router: load(&config.router.tls, "router.tls", &[b"h2"])?,
            console: match config.router.console.listen {
                Some(_) => load(&config.router.tls, "router.tls", &[b"http/1.1"])?,
                None => None,
            },
        })
    }
}

impl Application {
    /// Builds the parts `listeners` has listeners for from `config` (read from `origin`).
    /// With both, the gateway calls this router's gRPC service implementation in process,
    /// whatever `[gateway] router_url` says.
    pub async fn build(
        config: Config,
        origin: &Path,
        listeners: Listeners,
    ) -> Result<Self, AppError> {
        let tls = Listening::load(&config, origin)?;
        let router_addr = listeners.router.as_ref().map(local_addr).transpose()?;
        let gateway_addr = listeners.gateway.as_ref().map(local_addr).transpose()?;
        let metrics = listeners.metrics.filter(|_| listeners.router.is_some());
        let metrics_addr = metrics.as_ref().map(local_addr).transpose()?;
        let console = listeners.console.filter(|_| listeners.router.is_some());
        let console_addr = console.as_ref().map(local_addr).transpose()?;
        let (router, services, access) = match listeners.router {
            Some(listener) => {
                let router = Router::open(&config, origin).await?;
                let access = Policy::from_config(&config.router.auth);
                let services = Services::new(
                    router.clone(),
                    access.clone(),
                    config.router.max_concurrent_calls,
                )
                .await?;
                let part = Part {
                    listener,
                    service: router,
                    grace: config.router.shutdown_grace.get(),
                };
                (Some(part), Some(services), Some(access))
            }
            None => {
                check(&config, origin)?;
                (None, None, None)
            }
        };
        let gateway = match listeners.gateway {
            Some(listener) => {
                let gateway = match &services {
                    Some(services) => {
                        let timeout = config.gateway.router_timeout.get();
                        let router = RouterClient::in_process(
                            services.router_service(),
                            services.health_service(),
                            timeout,
                        );
                        Gateway::with_router(&config, router)
                    }
                    None => Gateway::from_config(&config)?,
                };
                let gateway = Arc::new(gateway);
                gateway.export_metrics();
                Some(Part {
                    listener,
                    service: gateway,
                    grace: config.gateway.shutdown_grace.get(),
                })
            }
            None => None,
        };
        Ok(Self {
            router,
            services,
            access,
            gateway,
            router_addr,
            gateway_addr,
            metrics,
            metrics_addr,
            console,
            console_addr,
            watch: None,
            started: config,
            tls,
        })
    }

    /// Where the router listens, when it runs.
    pub fn router_addr(&self) -> Option<SocketAddr> {
        self.router_addr
    }

    /// Where the gateway listens, when it runs.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway_addr
    }

    /// Where the router serves its metrics, when it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the router serves the console, when it does.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    /// The router, when it runs (to look at or change its state in process).
    pub fn router(&self) -> Option<&Arc<Router<AnyStore>>> {
        self.router.as_ref().map(|part| &part.service)
    }

    /// The gateway, when it runs.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.gateway.as_ref().map(|part| &part.service)
    }

    /// What applies a reloaded config to the parts that run.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            router: self.router.as_ref().map(|part| part.service.clone()),
            access: self.access.clone(),
            gateway: self.gateway.as_ref().map(|part| part.service.clone()),
        }
    }

    /// Reloads the config from `path` (with `env`'s overrides) when the file changes or on
    /// SIGHUP, for as long as the application runs.
    pub fn reload_on_change(mut self, path: PathBuf, env: Vec<(String, String)>) -> Self {
        // Listening from now: a SIGHUP before the watcher runs is kept, not fatal.
        self.watch = Some(Watch {
            path,
            env,
            hangups: reload::hangups(),
        });
        self
    }

    /// Serves until `shutdown` resolves, then stops the gateway (draining its callbacks)
    /// and then the router. Fails when either part stops on its own.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let (router_stop, gateway_stop, watch_stop) = (Stop::new(), Stop::new(), Stop::new());
        let reloader = self.reloader();
        let limits = handoff_gateway::Limits::of(&self.started.gateway);
        let max_concurrent_calls = self.started.router.max_concurrent_calls;
        let connection_limits =
            handoff_router::listener::ConnectionLimits::of(&self.started.router);
        let sources = handoff_gateway::Sources::of(&self.started.gateway);
        let console_config = self.started.router.clone();
        let Listening {
            gateway: gateway_tls,
            router: router_tls,
            console: console_tls,
        } = self.tls.clone();
        let watcher = self.watch.map(|watch| {
            tokio::spawn(reload::watch(
                watch.path,
                watch.env,
                watch.hangups,
                self.started,
                watch_stop.stopped(),
                {
                    let reloader = reloader.clone();
                    move |config, origin| reloader.apply(config, origin)
                },
                move |refused| reloader.observe(refused),
            ))
        });
        let metrics = self
            .metrics
            .zip(self.router.as_ref().map(|part| part.service.clone()))
            .map(|(listener, router)| {
                let stop = router_stop.clone();
                tokio::spawn(async move {
                    if let Err(err) = handoff_router::serve_metrics(listener, router, stop).await {
                        tracing::error!(error = %err, "the router's metrics listener failed");
                    }
                })
            });
        let console = self
            .console
            .zip(self.router.as_ref().map(|part| part.service.clone()))
            .zip(self.access.clone())
            .map(|((listener, router), access)| {
                let stop = router_stop.clone();
                tokio::spawn(async move {
                    let served = handoff_router::serve_console(
                        listener,
                        router,
                        access,
                        console_config,
                        console_tls,
                        stop,
                    )
                    .await;
                    if let Err(err) = served {
                        tracing::error!(error = %err, "the router's console listener failed");
                    }
                })
            });
        let mut router = self.router.zip(self.services).map(|(part, services)| {
            let stop = router_stop.clone();
            tokio::spawn(async move {
                handoff_router::serve(
                    part.listener,
                    services,
                    router_tls,
                    connection_limits,
                    max_concurrent_calls,
                    stop,
                    part.grace,
                )
                .await
                .map_err(AppError::from)
            })
        });
        let mut gateway = self.gateway.map(|part| {
            let stop = gateway_stop.clone();
            tokio::spawn(async move {
                handoff_gateway::serve(
                    part.listener,
                    part.service,
                    limits,
                    sources,
                    gateway_tls.map(handoff_gateway::TlsAcceptor::from),
                    stop,
                    part.grace,
                )
                .await
                .map_err(AppError::from)
            })
        });

        let early = tokio::select! {
            () = shutdown => None,
            result = finished(&mut router) => Some(("router", result)),
            result = finished(&mut gateway) => Some(("gateway", result)),
        };
        let result = match early {
            Some((part, result)) => {
                // Nothing is served by halves: stop the other part too.
                gateway_stop.stop();
                router_stop.stop();
                let _ = join("gateway", gateway).await;
                let _ = join("router", router).await;
                outcome(part, result).and(Err(AppError::StoppedEarly(part)))
            }
            None => {
                gateway_stop.stop();
                let gateway_result = join("gateway", gateway).await;
                router_stop.stop();
                let router_result = join("router", router).await;
                gateway_result.and(router_result)
            }
        };
        watch_stop.stop();
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(console) = console {
            let _ = console.await;
        }
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        result
    }
}

/// Waits for a part's task; a part that does not run never finishes. Leaves `None` behind,
/// so that a finished part is not waited for again.
async fn finished(
    task: &mut Option<JoinHandle<Result<(), AppError>>>,
) -> Result<Result<(), AppError>, tokio::task::JoinError> {
    match task {
        Some(handle) => {
            let result = handle.await;
            *task = None;
            result
        }
        None => std::future::pending().await,
    }
}

/// Waits for a part that was asked to stop; a part that does not run is done already.
async fn join(
    part: &'static str,
    task: Option<JoinHandle<Result<(), AppError>>>,
) -> Result<(), AppError> {
    match task {
        Some(handle) => outcome(part, handle.await),
        None => Ok(()),
    }
}

/// A finished part's result, a panic included.
fn outcome(
    part: &'static str,
    result: Result<Result<(), AppError>, tokio::task::JoinError>,
) -> Result<(), AppError> {
    result.map_err(|err| AppError::Panicked(part, err.to_string()))?
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, AppError> {
    listener.local_addr().map_err(|source| AppError::Io {
        what: "reading a listener's address".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::SystemTime};

    use handoff_core::id::{ClientUserId, SdkAppId, SessionId};
    use handoff_router::engine::Handoff;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn config_with_group(group: u64) -> String {
        format!(
            "[router.store]\nkind = \"memory\"\n\
             [[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = {group}\nname = \"g\"\n\
             [[apps.agents]]\nid = \"ann@example.com\"\ngroups = [{group}]\n"
        )
    }

    /// A directory of its own under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> std::io::Result<Self> {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir =
                std::env::temp_dir().join(format!("handoff-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn build(path: &Path, router: bool, gateway: bool) -> Result<Application, AppError> {
        let config = handoff_core::config::load(path, Vec::new())?;
        let bind = || async {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| AppError::Io {
                    what: "binding".into(),
                    source,
                })
        };
        let listeners = Listeners {
            router: if router { Some(bind().await?) } else { None },
            gateway: if gateway { Some(bind().await?) } else { None },
            metrics: None,
            console: None,
        };
        Application::build(config, path, listeners).await
    }

    /// Reads `path` again and hands it to `reloader`, as a file change or SIGHUP does.
    fn reload_file(reloader: &Reloader, path: &Path) -> Result<(), ConfigError> {
        reload::reload_now(path, &[], &|config, origin| reloader.apply(config, origin)).map(drop)
    }

    /// The group the router answers for a walk-in now.
    async fn answered_group(router: &Router<AnyStore>) -> Result<Option<u64>, RouterError> {
        let handoff = Handoff {
            app: SdkAppId::new(1_400_000_001).map_err(|e| RouterError::invalid("app", e))?,
            session: SessionId::parse("probe").map_err(|e| RouterError::invalid("s", e))?,
            client_user: ClientUserId::parse("probe").map_err(|e| RouterError::invalid("c", e))?,
            event_time: SystemTime::now(),
            platform: String::new(),
            channel: String::new(),
            attributes: BTreeMap::new(),
        };
        let answer = router.explain(&handoff, None).await?.answer;
        Ok(answer.group.map(|g| g.get()))
    }

    #[tokio::test]
    async fn a_bad_file_is_refused_and_a_good_one_swapped_in() -> TestResult {
        let scratch = Scratch::new("reload")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let app = build(&path, true, true).await?;
        let (router, reloader) = (app.router().ok_or("no router")?.clone(), app.reloader());
        assert_eq!(answered_group(&router).await?, Some(6521));

        let bad = config_with_group(7000).replace("groups = [7000]", "groups = [7001]");
        std::fs::write(&path, bad)?;
        let err = reload_file(&reloader, &path)
            .err()
            .ok_or("accepted a bad file")?;
        assert!(
            err.to_string().contains("group 7001 is not defined"),
            "{err}"
        );
        assert_eq!(
            answered_group(&router).await?,
            Some(6521),
            "the running config stays"
        );

        let bad_cel = config_with_group(7000).replace(
            "name = \"g\"",
            "name = \"g\"\n[[apps.rules]]\nname = \"r\"\nwhen = 'bad syntax ('\n",
        );
        std::fs::write(&path, bad_cel)?;
        let err = reload_file(&reloader, &path)
            .err()
            .ok_or("accepted bad CEL")?;
        assert_eq!(err.key, "apps[0].rules[0].when");

        std::fs::write(&path, config_with_group(7000))?;
        reload_file(&reloader, &path)?;
        assert_eq!(answered_group(&router).await?, Some(7000));
        Ok(())
    }

    #[tokio::test]
    async fn a_gateway_alone_refuses_what_the_router_would_not_compile() -> TestResult {
        let scratch = Scratch::new("gateway-reload")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let app = build(&path, false, true).await?;
        assert!(app.router().is_none() && app.gateway_addr().is_some());
        std::fs::write(
            &path,
            config_with_group(6521).replace("\ngroups", "\ncapacity = 0\ngroups"),
        )?;
        let reloader = app.reloader();
        let err = reload_file(&reloader, &path)
            .err()
            .ok_or("a gateway took an agent of capacity 0")?;
        assert_eq!(err.key, "apps[0].agents[0].capacity");
        let refused = build(&path, false, true)
            .await
            .err()
            .ok_or("built over a bad file")?;
        assert!(
            refused.to_string().contains("apps[0].agents[0].capacity"),
            "{refused}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_watcher_reloads_when_the_file_is_replaced() -> TestResult {
        let scratch = Scratch::new("watch")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let app = build(&path, true, false)
            .await?
            .reload_on_change(path.clone(), Vec::new());
        let router = app.router().ok_or("no router")?.clone();
        let stop = Stop::new();
        let running = tokio::spawn(app.run(stop.stopped()));
        // Give the watcher a moment to register before changing the file.
        tokio::time::sleep(Duration::from_millis(100)).await;

        // A bad replacement is ignored ...
        std::fs::write(scratch.0.join("next.toml"), "not = [valid")?;
        std::fs::rename(scratch.0.join("next.toml"), &path)?;
        tokio::time::sleep(reload::SETTLE * 3).await;
        assert_eq!(answered_group(&router).await?, Some(6521));

        // ... and a good one, written the way editors do (write aside, rename over), lands.
        std::fs::write(scratch.0.join("next.toml"), config_with_group(7000))?;
        std::fs::rename(scratch.0.join("next.toml"), &path)?;
        let mut group = None;
        for _ in 0..100 {
            group = answered_group(&router).await?;
            if group == Some(7000) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(group, Some(7000), "the watcher never reloaded");
        // Both are counted where operators alert: the refusal with its time.
        let metrics = router.metrics();
        let count = |outcome| {
            metrics
                .config_reloads
                .get_or_create(&handoff_router::metrics::OutcomeLabels { outcome })
                .get()
        };
        assert!(count("refused") >= 1 && count("applied") >= 1);
        assert!(metrics.config_last_refused.get() > 0);
        assert!(
            metrics
                .encode()
                .contains("handoff_router_config_reloads_total{outcome=\"refused\"}")
        );
        stop.stop();
        running.await??;
        Ok(())
    }

    #[tokio::test]
    async fn the_all_in_one_gateway_calls_its_router_in_process() -> TestResult {
        let scratch = Scratch::new("in-process")?;
        let path = scratch.0.join("handoff.toml");
        // A router_url nothing listens on: the all-in-one must not dial it.
        let config = config_with_group(6521).replace(
            "[router.store]",
            "[gateway]\nrouter_url = \"http://127.0.0.1:1\"\n[router.store]",
        );
        std::fs::write(&path, config)?;
        let both = build(&path, true, true).await?;
        let client = both.gateway().ok_or("no gateway")?.router().clone();
        assert!(client.is_in_process());
        client.ready().await?;
        let separate = build(&path, false, true).await?;
        let client = separate.gateway().ok_or("no gateway")?.router().clone();
        assert!(!client.is_in_process());
        assert!(
            client.ready().await.is_err(),
            "a gateway alone reached a router at port 1"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_stop_ends_both_parts_and_the_run_returns() -> TestResult {
        let scratch = Scratch::new("stop")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let app = build(&path, true, true).await?;
        let (router, gateway) = (app.router_addr(), app.gateway_addr());
        let stop = Stop::new();
        let running = tokio::spawn(app.run(stop.stopped()));
        for addr in [router, gateway].into_iter().flatten() {
            tokio::net::TcpStream::connect(addr).await?;
        }
        stop.stop();
        tokio::time::timeout(Duration::from_secs(5), running).await???;
        for addr in [router, gateway].into_iter().flatten() {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{addr} still accepts after the stop"
            );
        }
        Ok(())
    }
}
