//! The operator console: the live floor, every decision with its reason, explanations and
//! actions, in a browser, served by the router (where the state is) on
//! `[router.console] listen`.
//!
//! Pages are rendered here ([`views`], maud templates compiled into the binary) and read
//! without JavaScript; htmx (vendored in `assets/`, no CDN) refreshes the floor and tails
//! the decisions over Server-Sent Events when the browser runs it.
//!
//! Access: a sign-in with a router token (`[router.auth]`) opens a session, an HttpOnly,
//! SameSite=Strict cookie naming it (the token stays on the server); every POST carries the
//! session's CSRF token. What a session may do is asked of the access policy at every
//! request, so a reload that removes a token or a grant takes it away at once: pages need
//! `ListAgents`, explanations `ExplainAssignment`, actions `SetAgentStatus`. With no tokens
//! configured the console listens on loopback only (the config refuses anything else) and
//! everyone who reaches it is the operator `local`.

mod views;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Form, Router as Routes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{
        Html, IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use handoff_core::{
    config::{AgentStatus, RouterConfig},
    id::{AgentId, SdkAppId},
    shutdown::Stop,
};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::{
    Router, ServeError,
    grpc::auth::Policy,
    service::{Fed, Report},
    store::Store,
};

/// The cookie that names a console session.
const COOKIE: &str = "handoff_console";
/// The most sessions kept at once; past it the oldest is signed out.
const MAX_SESSIONS: usize = 1_000;
/// How many agents a page of the agents table lists.
pub(crate) const PAGE: usize = 100;

/// Serves the console on `listener` until `stop`.
/// `config` is the router's: the console's own section, where the decision log is (what
/// search and what-if read) and the lifetimes a replay runs with.
/// With `tls` (`[router.tls]`, offering http/1.1), it serves HTTPS and its cookies are
/// `Secure`.
pub async fn serve_console<S: Store>(
    listener: TcpListener,
    router: Arc<Router<S>>,
    access: Policy,
    config: RouterConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Stop,
) -> Result<(), ServeError> {
    let console = Arc::new(Console {
        secure: tls.is_some(),
        router,
        access,
        sessions: Mutex::new(HashMap::new()),
        ttl: config.console.session_ttl.get(),
        drafts: config.console.drafts.clone(),
        log: config
            .decision_log
            .path
            .clone()
            .map(|path| (path, config.decision_log.keep)),
        lifetimes: crate::store::Lifetimes::of(&config),
        stop: stop.clone(),
    });
    let app = routes(console);
    match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.stopped().await })
            .await
            .map_err(|err| ServeError(err.to_string())),
        Some(tls) => serve_tls(listener, app, tls, stop).await,
    }
}

/// The console over TLS: each connection's handshake bounded in time, then HTTP/1.1 until
/// the stop, when connections finish what they answer and close.
async fn serve_tls(
    listener: TcpListener,
    app: Routes,
    tls: Arc<rustls::ServerConfig>,
    stop: Stop,
) -> Result<(), ServeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut stopped => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(error = %err, "console: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(Ok(io)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(served);
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "console: connection ended with an error");
                    }
                }
                () = stop.stopped() => {
                    served.as_mut().graceful_shutdown();
                    let _ = served.await;
                }
            }
        });
    }
}

/// What every page shares: the router, who may sign in, and who has.
struct Console<S> {
    /// Whether it is served over TLS (its cookies are then `Secure`).
    secure: bool,
    router: Arc<Router<S>>,
    access: Policy,
    sessions: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    /// Where what-if's draft configs are.
    drafts: Option<std::path::PathBuf>,
    /// The decision log and how many rotated files it keeps, when the router writes one.
    log: Option<(std::path::PathBuf, usize)>,
    /// What a what-if replays with.
    lifetimes: crate::store::Lifetimes,
    /// The console's stop: live tails end with it, so that the server can drain.
    stop: Stop,
}

/// A signed-in browser: the token it signed in with (kept here, never sent back), the
/// CSRF token its forms carry, and when it expires.
struct Session {
    token: Vec<u8>,
    csrf: String,
    expires: Instant,
}

/// Who is looking, as the access policy has them now.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// The router token's name (`local` on a console without tokens).
    pub name: String,
    /// Whether they may change agents' statuses.
    pub manage: bool,
    /// Whether they may ask for explanations.
    pub explain: bool,
    /// What their forms carry.
    pub csrf: String,
}

fn routes<S: Store>(console: Arc<Console<S>>) -> Routes {
    Routes::new()
        .route("/", get(floor::<S>))
        .route("/floor", get(floor::<S>))
        .route("/floor/live", get(floor_live::<S>))
        .route("/agents", get(agents::<S>))
        .route("/agents/status", post(set_status::<S>))
        .route("/decisions", get(decisions::<S>))
        .route("/decisions/stream", get(stream::<S>))
        .route("/decisions/search", get(search::<S>))
        .route("/sessions", get(sessions::<S>))
        .route("/sessions/release", post(release::<S>))
        .route("/whatif", get(whatif_page::<S>).post(whatif::<S>))
        .route("/explain", get(explain::<S>))
        .route("/health", get(health::<S>))
        .route("/wallboard", get(wallboard::<S>))
        .route("/signin", get(signin_page::<S>).post(signin::<S>))
        .route("/signout", post(signout::<S>))
        .route("/assets/{name}", get(asset))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .with_state(console)
}

/// Why a page is not served: a status and what to say, or where to go instead (with the
/// cookie of a session opened there and then).
enum Refusal {
    Status(StatusCode, String),
    Redirect(String, Option<HeaderValue>),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Status(status, why) => (status, why).into_response(),
            Refusal::Redirect(to, cookie) => {
                let mut response = Redirect::to(&to).into_response();
                if let Some(cookie) = cookie {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                response
            }
        }
    }
}

fn refusal(status: StatusCode, why: &str) -> Refusal {
    Refusal::Status(status, why.to_owned())
}

/// 32 random bytes as hex: a session id or a CSRF token.
fn random_token() -> Result<String, Refusal> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| {
        refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness to sign in with",
        )
    })?;
    Ok(hex::encode(bytes))
}

fn cookie_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

impl<S: Store> Console<S> {
    /// The viewer `headers` sign in as, if the session is live and its token still valid.
    fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let id = cookie_of(headers)?;
        let mut sessions = self.sessions.lock();
        let session = sessions.get(id)?;
        if session.expires <= Instant::now() {
            sessions.remove(id);
            return None;
        }
        let access = self.access.load();
        if access.is_open() {
            return Some(Viewer {
                name: "local".to_owned(),
                manage: true,
                explain: true,
                csrf: session.csrf.clone(),
            });
        }
        let (name, [list, manage, explain]) = access.caller(
            &session.token,
            ["ListAgents", "SetAgentStatus", "ExplainAssignment"],
        )?;
        // A token that may not even list agents sees nothing of the floor.
        list.then(|| Viewer {
            name: name.0.to_string(),
            manage,
            explain,
            csrf: session.csrf.clone(),
        })
    }

    /// Opens a session for `token`, returning the cookie that names it.
    fn open_session(&self, token: Vec<u8>) -> Result<HeaderValue, Refusal> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                token,
                csrf,
                expires: now + self.ttl,
            },
        );
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure { "; Secure" } else { "" }
        ))
        .map_err(|_| refusal(StatusCode::INTERNAL_SERVER_ERROR, "cookie"))
    }

    /// The viewer, or the way to the sign-in (on a console without tokens, a session of
    /// its own opened there and then).
    fn require(&self, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Refusal> {
        if let Some(viewer) = self.viewer(headers) {
            return Ok(viewer);
        }
        if self.access.load().is_open() {
            let cookie = self.open_session(Vec::new())?;
            let back = uri
                .path_and_query()
                .map_or("/floor", |path| path.as_str())
                .to_owned();
            return Err(Refusal::Redirect(back, Some(cookie)));
        }
        Err(Refusal::Redirect("/signin".to_owned(), None))
    }

    /// The app a page is about: the one asked for, else the first.
    fn app(&self, asked: Option<u64>) -> Option<Arc<crate::engine::App>> {
        let apps = self.router.apps();
        match asked.and_then(|id| SdkAppId::new(id).ok()) {
            Some(id) => apps.into_iter().find(|app| app.id == id),
            None => apps.into_iter().next(),
        }
    }
}

/// The floor page and the first page of the agents table of `app`, as the console renders
/// them for an operator who may act: what `benches/console.rs` measures.
#[doc(hidden)]
pub async fn render_floor_and_agents<S: Store>(
    router: Arc<Router<S>>,
    app: SdkAppId,
) -> Result<(String, String), String> {
    let console = Console {
        secure: false,
        router,
        access: Policy::from_config(&handoff_core::config::RouterAuth::default()),
        sessions: Mutex::new(HashMap::new()),
        ttl: Duration::from_secs(60),
        drafts: None,
        log: None,
        lifetimes: crate::store::Lifetimes::of(&RouterConfig::default()),
        stop: Stop::new(),
    };
    let floor = floor_of(&console, Some(app.get()))
        .await
        .map_err(|_| "no floor".to_owned())?;
    let viewer = Viewer {
        name: "bench".to_owned(),
        manage: true,
        explain: true,
        csrf: "0".repeat(64),
    };
    let apps = console.router.apps();
    let page = views::floor(&viewer, &apps, &floor).into_string();
    let agents = views::agents(&viewer, &apps, &floor, &AgentsQuery::default()).into_string();
    Ok((page, agents))
}

/// What a POST needs granted besides a session: changing state (`SetAgentStatus`) or
/// reading decisions (`ExplainAssignment`).
#[derive(Debug, Clone, Copy)]
enum Grant {
    Manage,
    Explain,
}

impl<S: Store> Console<S> {
    /// The viewer a POST acts as: signed in, carrying its session's CSRF token, and granted
    /// `grant`; else the refusal, with what was missing.
    fn acting(&self, headers: &HeaderMap, csrf: &str, grant: Grant) -> Result<Viewer, Refusal> {
        let viewer = self
            .viewer(headers)
            .ok_or_else(|| refusal(StatusCode::UNAUTHORIZED, "sign in to act"))?;
        if !csrf_holds(&viewer, csrf) {
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's",
            ));
        }
        match grant {
            Grant::Manage if !viewer.manage => Err(refusal(
                StatusCode::FORBIDDEN,
                "this token does not grant SetAgentStatus",
            )),
            Grant::Explain if !viewer.explain => Err(refusal(
                StatusCode::FORBIDDEN,
                "this token does not grant ExplainAssignment",
            )),
            _ => Ok(viewer),
        }
    }
}

/// A POST's CSRF token must be its session's, compared in constant time.
fn csrf_holds(viewer: &Viewer, sent: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    !sent.is_empty() && bool::from(viewer.csrf.as_bytes().ct_eq(sent.as_bytes()))
}

fn html(markup: maud::Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, why.to_owned()).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct AppQuery {
    app: Option<u64>,
}

async fn floor<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AppQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    match floor_of(&console, query.app).await {
        Ok(floor) => html(views::floor(&viewer, &console.router.apps(), &floor)),
        Err(refusal) => refusal.into_response(),
    }
}

/// The floor's body alone, what the page refreshes itself with.
async fn floor_live<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Query(query): Query<AppQuery>,
) -> Response {
    if console.viewer(&headers).is_none() {
        return refused(StatusCode::UNAUTHORIZED, "sign in again");
    }
    match floor_of(&console, query.app).await {
        Ok(floor) => html(views::floor_body(&floor)),
        Err(refusal) => refusal.into_response(),
    }
}

/// An app's floor as the store holds it now.
pub(crate) struct Floor {
    pub app: Arc<crate::engine::App>,
    pub agents: Vec<crate::service::AgentListing>,
    pub groups: Vec<crate::service::GroupListing>,
    pub now: std::time::SystemTime,
    /// Answers that reserved an agent, and fallbacks, in the last minutes.
    pub recent: (u32, u32),
    /// The app's Desk sync here, when it syncs.
    pub desk: Option<crate::service::desk_sync::DeskHealth>,
}

async fn floor_of<S: Store>(console: &Console<S>, app: Option<u64>) -> Result<Floor, Refusal> {
    let app = console
        .app(app)
        .ok_or_else(|| refusal(StatusCode::NOT_FOUND, "no such app"))?;
    let agents = console
        .router
        .list_agents(app.id, None)
        .await
        .map_err(|err| refusal(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()))?;
    let groups = console
        .router
        .list_groups(app.id, None)
        .await
        .map_err(|err| refusal(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()))?;
    Ok(Floor {
        recent: console.router.recent(app.id),
        desk: console.router.desk_sync(&app),
        app,
        agents,
        groups,
        now: console.router.now(),
    })
}

/// The agents table's query: filter, sort, page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentsQuery {
    pub app: Option<u64>,
    /// Text the agent's id, name or group must contain.
    #[serde(default)]
    pub q: String,
    /// `available`, `away`, `offline` or `parked`.
    #[serde(default)]
    pub status: String,
    /// `id` (default), `load`, `status`, `idle`.
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub page: usize,
    /// What the last action did, to say so.
    #[serde(default)]
    pub done: String,
}

async fn agents<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AgentsQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    match floor_of(&console, query.app).await {
        Ok(floor) => html(views::agents(
            &viewer,
            &console.router.apps(),
            &floor,
            &query,
        )),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct StatusForm {
    app: u64,
    agent: String,
    status: String,
    #[serde(default)]
    csrf: String,
}

/// Sets an agent's status, as SetAgentStatus does, audited with the viewer's token name.
async fn set_status<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Form(form): Form<StatusForm>,
) -> Response {
    let viewer = match console.acting(&headers, &form.csrf, Grant::Manage) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let status = match form.status.as_str() {
        "available" => AgentStatus::Available,
        "away" => AgentStatus::Away,
        "offline" => AgentStatus::Offline,
        _ => {
            return refused(
                StatusCode::BAD_REQUEST,
                "status must be available, away or offline",
            );
        }
    };
    let (Ok(app), Ok(agent)) = (SdkAppId::new(form.app), AgentId::parse(form.agent.trim())) else {
        return refused(StatusCode::BAD_REQUEST, "no such app or agent");
    };
    // With Desk sync, Desk first: its status comes back at every poll.
    if let Some(known) = console.app(Some(app.get()))
        && let Err(why) = console
            .router
            .push_status_to_desk(&known, &agent, status)
            .await
    {
        return refused(StatusCode::BAD_GATEWAY, &why);
    }
    let report = Report {
        at: None,
        id: None,
        by: Some(format!("console:{}", viewer.name)),
    };
    match console.router.set_status(app, &agent, status, report).await {
        Ok(applied) => {
            tracing::info!(%app, %agent, ?status, by = %viewer.name, ?applied, "status set from the console");
            let done = format!("{agent} set {}", status.as_str());
            let to = format!(
                "/agents?app={}&done={}",
                app,
                form_urlencoded::byte_serialize(done.as_bytes()).collect::<String>()
            );
            Redirect::to(&to).into_response()
        }
        Err(err) => refused(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

async fn decisions<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AppQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(app) = console.app(query.app) else {
        return refused(StatusCode::NOT_FOUND, "no such app");
    };
    html(views::decisions(&viewer, &console.router.apps(), &app))
}

/// The live tail: each decision and change of the app as an HTML row (`event: entry`), and
/// `event: floor` after each so that the floor refreshes.
async fn stream<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Query(query): Query<AppQuery>,
) -> Response {
    if console.viewer(&headers).is_none() {
        return refused(StatusCode::UNAUTHORIZED, "sign in again");
    }
    let Some(app) = console.app(query.app) else {
        return refused(StatusCode::NOT_FOUND, "no such app");
    };
    let receiver = console.router.follow();
    let stream = tail(receiver, app.id, console.stop.stopped());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The feed as SSE events for `app` until `stopped`: a row per entry, and a note when the
/// follower fell behind.
fn tail(
    mut receiver: tokio::sync::broadcast::Receiver<Arc<Fed>>,
    app: SdkAppId,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl tokio_stream::Stream<Item = Result<Event, Infallible>> {
    let (sender, events) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(stopped);
        loop {
            let row = tokio::select! {
                () = &mut stopped => break,
                // The browser went away: nobody reads the tail.
                () = sender.closed() => break,
                fed = receiver.recv() => match fed {
                    Ok(fed) => match views::feed_row(&fed, app) {
                        Some(row) => row,
                        None => continue,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        views::lagged_row(missed)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            // A browser that went away ends the tail.
            if sender
                .send(Ok(Event::default().event("entry").data(row)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(events)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    pub app: Option<u64>,
    /// A session id or a customer id.
    #[serde(default)]
    pub q: String,
}

/// The most entries a search shows, newest first.
const FOUND: usize = 100;

/// The decision log's entries of a session or customer, newest first.
async fn search<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<SearchQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    if !viewer.explain {
        return refused(
            StatusCode::FORBIDDEN,
            "this token does not grant ExplainAssignment",
        );
    }
    let Some(app) = console.app(query.app) else {
        return refused(StatusCode::NOT_FOUND, "no such app");
    };
    let needle = query.q.trim().to_owned();
    let found = match (&console.log, needle.is_empty()) {
        (_, true) => Ok(Vec::new()),
        (None, false) => {
            Err("the router writes no decision log ([router.decision_log] path)".to_owned())
        }
        (Some((path, keep)), false) => {
            let (path, keep, id) = (path.clone(), *keep, app.id);
            tokio::task::spawn_blocking(move || {
                let mut warnings = Vec::new();
                let lines = crate::decision_log::read::read_log(&path, keep, &mut warnings)?;
                let mut found: Vec<String> = lines
                    .into_iter()
                    .rev()
                    .filter(|(_, entry)| mentions(entry, &needle))
                    .filter_map(|(_, entry)| {
                        views::feed_row(
                            &Fed {
                                entry,
                                micros: None,
                            },
                            id,
                        )
                    })
                    .take(FOUND)
                    .collect();
                found.shrink_to_fit();
                Ok(found)
            })
            .await
            .unwrap_or_else(|err| Err(err.to_string()))
        }
    };
    html(views::search(
        &viewer,
        &console.router.apps(),
        app.id,
        &query.q,
        found,
    ))
}

/// Whether `entry` is about the session or customer `needle`.
fn mentions(entry: &crate::decision_log::Entry, needle: &str) -> bool {
    match entry {
        crate::decision_log::Entry::Decision(decided) => {
            decided.session.as_str() == needle || decided.customer.as_str() == needle
        }
        crate::decision_log::Entry::SessionEvent {
            session, customer, ..
        } => session.as_str() == needle || customer.as_ref().is_some_and(|c| c.as_str() == needle),
        _ => false,
    }
}

/// The sessions holding seats, with a release for each.
async fn sessions<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AgentsQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(app) = console.app(query.app) else {
        return refused(StatusCode::NOT_FOUND, "no such app");
    };
    let page = crate::service::Page {
        after: None,
        size: crate::service::MAX_PAGE,
    };
    match console.router.list_sessions(app.id, None, page).await {
        Ok((sessions, _)) => html(views::sessions(
            &viewer,
            &console.router.apps(),
            app.id,
            &sessions,
            &query.done,
            console.router.now(),
        )),
        Err(err) => refused(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ReleaseForm {
    app: u64,
    session: String,
    #[serde(default)]
    csrf: String,
}

/// Releases a stuck seat: the session is taken as over (as when Desk no longer counts it:
/// no wrap-up follows), recorded as `console:<token name>`.
async fn release<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Form(form): Form<ReleaseForm>,
) -> Response {
    let viewer = match console.acting(&headers, &form.csrf, Grant::Manage) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let (Ok(app), Ok(session)) = (
        SdkAppId::new(form.app),
        handoff_core::id::SessionId::parse(form.session.trim()),
    ) else {
        return refused(StatusCode::BAD_REQUEST, "no such app or session");
    };
    let by = format!("console:{}", viewer.name);
    match console.router.release_seat(app, &session, &by).await {
        Ok(applied) => {
            tracing::info!(%app, %session, by, ?applied, "seat released from the console");
            let done = format!("{session} released ({})", applied.as_str());
            Redirect::to(&format!(
                "/sessions?app={app}&done={}",
                form_urlencoded::byte_serialize(done.as_bytes()).collect::<String>()
            ))
            .into_response()
        }
        Err(err) => refused(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

/// What-if's form: a draft from the drafts folder, or pasted, and how far back.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WhatIfForm {
    pub app: Option<u64>,
    #[serde(default)]
    pub draft: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub hours: Option<u64>,
    #[serde(default)]
    pub csrf: String,
}

impl<S: Store> Console<S> {
    /// The drafts offered: the `*.toml` files of `[router.console] drafts`, by name.
    fn drafts(&self) -> Vec<String> {
        let Some(dir) = &self.drafts else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.ends_with(".toml") && !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }
}

async fn whatif_page<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AppQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let form = WhatIfForm {
        app: query.app,
        hours: Some(24),
        ..WhatIfForm::default()
    };
    html(views::whatif(
        &viewer,
        &console.router.apps(),
        &console.drafts(),
        console.log.is_some(),
        &form,
        None,
    ))
}

/// Replays the decision log of the last `hours` under the draft, and shows replay's report.
async fn whatif<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Form(form): Form<WhatIfForm>,
) -> Response {
    let viewer = match console.acting(&headers, &form.csrf, Grant::Explain) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let outcome = replayed(&console, &form).await;
    html(views::whatif(
        &viewer,
        &console.router.apps(),
        &console.drafts(),
        console.log.is_some(),
        &form,
        Some(outcome),
    ))
}

async fn replayed<S: Store>(
    console: &Console<S>,
    form: &WhatIfForm,
) -> Result<crate::replay::Report, String> {
    let (path, keep) = console.log.clone().ok_or(
        "the router writes no decision log ([router.decision_log] path): nothing to replay",
    )?;
    let (name, text) = match (form.draft.trim(), form.text.trim()) {
        ("", "") => return Err("choose a draft or paste a config".to_owned()),
        ("", pasted) => ("pasted.toml".to_owned(), pasted.to_owned()),
        (draft, _) => {
            // Only a file the folder lists: no path of the caller's choosing.
            if !console.drafts().iter().any(|known| known == draft) {
                return Err(format!("{draft:?} is not one of the drafts"));
            }
            let dir = console.drafts.clone().ok_or("no drafts folder")?;
            let text = std::fs::read_to_string(dir.join(draft))
                .map_err(|err| format!("{draft}: {err}"))?;
            (draft.to_owned(), text)
        }
    };
    let origin = std::path::PathBuf::from(&name);
    let config =
        handoff_core::config::parse(&text, &origin, Vec::new()).map_err(|err| err.to_string())?;
    let catalog =
        crate::engine::Catalog::from_config(&config, &origin).map_err(|err| err.to_string())?;
    let hours = form.hours.unwrap_or(24).clamp(1, 24 * 14);
    let since = console
        .router
        .now()
        .checked_sub(Duration::from_secs(hours * 3600))
        .map_or(0, crate::engine::unix_ms);
    let lines = tokio::task::spawn_blocking(move || {
        let mut warnings = Vec::new();
        crate::decision_log::read::read_log(&path, keep, &mut warnings)
            .map(|lines| crate::decision_log::read::since(lines, since))
    })
    .await
    .map_err(|err| err.to_string())??;
    crate::replay::replay(&catalog, console.lifetimes, lines).await
}

/// The explain form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExplainQuery {
    pub app: Option<u64>,
    #[serde(default)]
    pub customer: String,
    #[serde(default)]
    pub platform: String,
    /// `key=value` lines.
    #[serde(default)]
    pub attributes: String,
    /// RFC 3339; now when empty.
    #[serde(default)]
    pub at: String,
}

async fn explain<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<ExplainQuery>,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let apps = console.router.apps();
    if query.customer.trim().is_empty() {
        return html(views::explain(&viewer, &apps, &query, None));
    }
    if !viewer.explain {
        return refused(
            StatusCode::FORBIDDEN,
            "this token does not grant ExplainAssignment",
        );
    }
    let outcome = explained(&console, &query).await;
    html(views::explain(&viewer, &apps, &query, Some(outcome)))
}

async fn explained<S: Store>(
    console: &Console<S>,
    query: &ExplainQuery,
) -> Result<crate::service::Explanation, String> {
    let app = console.app(query.app).ok_or("no such app")?;
    let client_user = handoff_core::id::ClientUserId::parse(query.customer.trim())
        .map_err(|err| format!("customer: {err}"))?;
    let session =
        handoff_core::id::SessionId::parse("console-explain").map_err(|e| e.to_string())?;
    let mut attributes = std::collections::BTreeMap::new();
    for line in query
        .attributes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("attribute {line:?}: write key=value"))?;
        attributes.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    let at = match query.at.trim() {
        "" => None,
        text => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|err| format!("at: {err} (write 2026-12-03T10:00:00Z)"))?
                .into(),
        ),
    };
    let now = console.router.now();
    let handoff = crate::engine::Handoff {
        app: app.id,
        session,
        client_user,
        event_time: now,
        platform: query.platform.trim().to_lowercase(),
        channel: "chat".to_owned(),
        attributes,
    };
    console
        .router
        .explain(&handoff, at)
        .await
        .map_err(|err| err.to_string())
}

async fn health<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let viewer = match console.require(&headers, &uri) {
        Ok(viewer) => viewer,
        Err(refusal) => return refusal.into_response(),
    };
    let status = console.router.status().await;
    html(views::health(&viewer, &console.router.apps(), &status))
}

async fn wallboard<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<AppQuery>,
) -> Response {
    if let Err(refusal) = console.require(&headers, &uri) {
        return refusal.into_response();
    }
    match floor_of(&console, query.app).await {
        Ok(floor) => html(views::wallboard(&floor)),
        Err(refusal) => refusal.into_response(),
    }
}

async fn signin_page<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
) -> Response {
    if console.viewer(&headers).is_some() {
        return Redirect::to("/floor").into_response();
    }
    if console.access.load().is_open() {
        let floor = Uri::from_static("/floor");
        return match console.require(&headers, &floor) {
            Ok(_) => Redirect::to("/floor").into_response(),
            Err(refusal) => refusal.into_response(),
        };
    }
    html(views::signin(None))
}

#[derive(Debug, Deserialize)]
struct SigninForm {
    #[serde(default)]
    token: String,
}

async fn signin<S: Store>(
    State(console): State<Arc<Console<S>>>,
    Form(form): Form<SigninForm>,
) -> Response {
    let token = form.token.trim().as_bytes().to_vec();
    let known = console.access.load().caller(&token, ["ListAgents"]);
    match known {
        Some((name, [true])) => {
            let cookie = match console.open_session(token) {
                Ok(cookie) => cookie,
                Err(refusal) => return refusal.into_response(),
            };
            tracing::info!(by = %name.0, "signed in to the console");
            let mut response = Redirect::to("/floor").into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Some((_, [false])) => {
            let mut response = html(views::signin(Some(
                "This token does not grant ListAgents: it cannot see the floor.",
            )));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }
        None => {
            let mut response = html(views::signin(Some("That is not a router token.")));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn signout<S: Store>(
    State(console): State<Arc<Console<S>>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(viewer) = console.viewer(&headers)
        && csrf_holds(&viewer, &form.csrf)
        && let Some(id) = cookie_of(&headers)
    {
        console.sessions.lock().remove(id);
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("handoff_console=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

/// The vendored scripts and the style sheet, compiled in.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "htmx.min.js" => (include_str!("assets/htmx-2.0.11.min.js"), "text/javascript"),
        "sse.min.js" => (
            include_str!("assets/htmx-ext-sse-2.2.4.min.js"),
            "text/javascript",
        ),
        "console.js" => (include_str!("assets/console.js"), "text/javascript"),
        "console.css" => (include_str!("assets/console.css"), "text/css"),
        _ => return refused(StatusCode::NOT_FOUND, "no such asset"),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
