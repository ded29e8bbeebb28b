//! The HTTP(S) server on a listener the caller has already bound: one hyper HTTP/1.1
//! connection per client (over TLS with `[gateway.tls]`, its certificate reloaded when its
//! files change), under limits that keep slow, idle or crowding clients from holding the
//! gateway, and a shutdown that lets kept-alive clients finish.
//!
//! - **Headers**: a request's line and headers must arrive within `header_timeout`, and a
//!   kept-alive connection is closed after that long without a next request; they may
//!   take `max_header_bytes` (more is answered 431, Tencent-shaped; past twice that hyper
//!   refuses on its own, so a connection never buffers more, and `JsonErrors` makes its
//!   answer, like its 400 for bytes that are not HTTP, Tencent-shaped too).
//! - **Sources**: with `allow_from`, a connection from an address outside it (and not a
//!   trusted proxy) is closed on arrival, before a byte is read (counted as a refusal,
//!   `source_not_allowed`); what a trusted proxy forwards is checked per request.
//! - **Connections**: at most `max_connections` at once. When all are taken, the connection
//!   idle longest (no request in flight: between keep-alive requests, or still waiting for
//!   its first one) is closed to make room (counted as `idle_evicted`), so one client
//!   holding idle sockets can never keep others out; only when every connection is busy is
//!   the newcomer closed on arrival (counted as a refusal, `max_connections`; logged at most
//!   once a second). Sockets and memory stay bounded whatever clients do.
//! - **Shutdown**: the listener closes, every response from then on carries
//!   `Connection: close` so kept-alive clients move elsewhere after their answer, and after
//!   a short drain window (or once no connection is left) the rest are closed when idle;
//!   in-flight callbacks get up to `shutdown_grace`.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::Request,
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use handoff_core::{
    net::Cidr,
    shutdown::{Stop, drain},
    throttle::Throttle,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinSet,
};
pub use tokio_rustls::TlsAcceptor;

use crate::{callback::Gateway, error::GatewayError, http::routes};

/// How long kept-alive clients get, after a shutdown begins, to send what they were
/// sending before idle connections are closed.
const DRAIN_WINDOW: Duration = Duration::from_millis(500);

/// The longest request target accepted (Tencent's query is a few hundred bytes).
const MAX_URI_BYTES: usize = 8 * 1024;

/// Where callbacks may come from: `[gateway] allow_from`, and the proxies whose
/// `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    allow: Vec<Cidr>,
    proxies: Vec<Cidr>,
}

impl Sources {
    /// The sources `[gateway]` sets (validated with the config).
    pub fn of(config: &handoff_core::config::GatewayConfig) -> Self {
        let parse = |list: &[String]| list.iter().filter_map(|n| n.parse().ok()).collect();
        Self {
            allow: parse(&config.allow_from),
            proxies: parse(&config.trusted_proxies),
        }
    }

    /// The client of a request from `peer` with `headers`: `peer`, unless it is a trusted
    /// proxy, then the rightmost `X-Forwarded-For` address that is not one; `None` when
    /// that header cannot be read.
    fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> Option<IpAddr> {
        let trusted = |ip: IpAddr| self.proxies.iter().any(|proxy| proxy.contains(ip));
        if !trusted(peer) {
            return Some(peer);
        }
        let mut forwarded = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            for hop in value.to_str().ok()?.split(',') {
                forwarded.push(hop.trim().parse::<IpAddr>().ok()?);
            }
        }
        Some(
            forwarded
                .iter()
                .rev()
                .copied()
                .find(|ip| !trusted(*ip))
                .or(forwarded.first().copied())
                .unwrap_or(peer),
        )
    }

    /// Whether a connection from `peer` is refused on arrival: it is neither in
    /// `allow_from` nor a trusted proxy (whose clients are checked per request).
    fn refuses(&self, peer: IpAddr) -> bool {
        !self.allow.is_empty()
            && !self.allow.iter().any(|net| net.contains(peer))
            && !self.proxies.iter().any(|proxy| proxy.contains(peer))
    }

    /// Whether a request from `peer` with `headers` may be served.
    fn admits(&self, peer: IpAddr, headers: &http::HeaderMap) -> Result<(), GatewayError> {
        if self.allow.is_empty() {
            return Ok(());
        }
        match self.client(peer, headers) {
            Some(client) if self.allow.iter().any(|net| net.contains(client)) => Ok(()),
            Some(client) => Err(GatewayError::SourceNotAllowed(client.to_string())),
            None => Err(GatewayError::SourceNotAllowed(format!(
                "{peer} (an unreadable X-Forwarded-For)"
            ))),
        }
    }
}

/// The address a connection comes from, as a request extension.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

/// What the guard in front of the routes knows.
#[derive(Clone)]
struct Guard {
    draining: Arc<AtomicBool>,
    max_header_bytes: usize,
    sources: Arc<Sources>,
    gateway: Arc<Gateway>,
}

/// The limits a connection lives under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a request's headers may take, and how long a connection may sit idle.
    pub header_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How many bytes a request's line and headers may take.
    pub max_header_bytes: usize,
}

impl Limits {
    /// The limits `[gateway]` sets.
    pub fn of(config: &handoff_core::config::GatewayConfig) -> Self {
        Self {
            header_timeout: config.header_timeout.get(),
            max_connections: config.max_connections,
            max_header_bytes: config.max_header_bytes,
        }
    }
}

/// Serves `gateway` on `listener` under `limits` until `stop` is requested, then drains:
/// in-flight callbacks get at most `grace`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: Limits,
    sources: Sources,
    tls: Option<TlsAcceptor>,
    stop: Stop,
    grace: Duration,
) -> Result<(), GatewayError> {
    let draining = Arc::new(AtomicBool::new(false));
    let counters = Arc::clone(&gateway);
    let state = Guard {
        draining: Arc::clone(&draining),
        max_header_bytes: limits.max_header_bytes,
        sources: Arc::new(sources),
        gateway: Arc::clone(&gateway),
    };
    let screening = !state.sources.allow.is_empty();
    let sources = Arc::clone(&state.sources);
    let app = routes(gateway).layer(middleware::from_fn_with_state(state, guard));
    let (closing, close) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Open::default());
    let mut connections = JoinSet::new();
    let refused = Refused::default();
    loop {
        tokio::select! {
            biased;
            () = stop.stopped() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors, usually: wait for some to be given back.
                        tracing::warn!(error = %err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if sources.refuses(peer.ip()) {
                    counters.counters().refused("source_not_allowed");
                    static OUTSIDE: Throttle = Throttle::new(1);
                    if let Some(left_out) = OUTSIDE.admit() {
                        tracing::info!(%peer, left_out, "connection from outside allow_from closed on arrival");
                    }
                    continue;
                }
                // No slot: the connection idle longest makes room, if there is one.
                let permit = match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) if open.evict_oldest_idle() => {
                        counters.counters().refused("idle_evicted");
                        None
                    }
                    Err(_) => {
                        counters.counters().refused("max_connections");
                        refused.note(peer, limits.max_connections);
                        continue;
                    }
                };
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set tcp_nodelay");
                }
                let (app, close, tls) = (app.clone(), close.clone(), tls.clone());
                let (permits, open, counted) =
                    (Arc::clone(&permits), Arc::clone(&open), Arc::clone(&counters));
                // Requests learn their peer only when the allowlist asks who it is.
                let peer_ip = screening.then_some(peer.ip());
                connections.spawn(async move {
                    let permit = match permit {
                        Some(permit) => permit,
                        // The evicted connection gives its slot back as soon as it closes.
                        None => match tokio::time::timeout(EVICTION_WAIT, permits.acquire_owned()).await {
                            Ok(Ok(permit)) => permit,
                            _ => {
                                counted.counters().refused("max_connections");
                                return;
                            }
                        },
                    };
                    let slot = open.enter();
                    match tls {
                        None => {
                            let io = JsonErrors { io: tcp, pending: None };
                            connection(TokioIo::new(io), app, peer_ip, limits, close, &slot).await;
                        }
                        // The handshake counts against the header timeout too.
                        Some(tls) => match tokio::time::timeout(limits.header_timeout, tls.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let io = JsonErrors { io: stream, pending: None };
                                connection(TokioIo::new(io), app, peer_ip, limits, close, &slot).await;
                            }
                            Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                    }
                    open.leave(&slot);
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    draining.store(true, Ordering::Release);
    let drained = async {
        // Kept-alive clients get their next answer with `Connection: close`; then whatever
        // is still open is closed once idle.
        let window = tokio::time::sleep(DRAIN_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                () = &mut window => break,
                next = connections.join_next() => if next.is_none() { break },
            }
        }
        let _ = closing.send(true);
        while connections.join_next().await.is_some() {}
        Ok::<_, GatewayError>(())
    };
    drain("gateway", drained, &stop, grace).await
}

/// A connection's byte stream, with hyper's own error answers (to a request it could not
/// read at all: 400, a head past twice `max_header_bytes`: 431, ...) rewritten as
/// Tencent-shaped JSON. hyper sends those with `connection: close` and an empty body, which
/// no answer of the gateway's own has; everything else passes as written.
struct JsonErrors<I> {
    io: I,
    /// A rewritten answer, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<I: tokio::io::AsyncWrite + Unpin> JsonErrors<I> {
    fn poll_pending(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(
                std::pin::Pin::new(&mut self.io).poll_write(cx, &bytes[*written..])
            )?;
            if n == 0 {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// hyper's own error answer in `bytes`, as JSON; `None` for anything else.
fn rewritten(bytes: &[u8]) -> Option<Vec<u8>> {
    let head = bytes.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    let canned = status >= 400
        && headers.iter().any(|h| h == "content-length: 0")
        && headers.iter().any(|h| h == "connection: close");
    if !canned {
        return None;
    }
    let error = match status {
        414 => GatewayError::UriTooLong(MAX_URI_BYTES),
        431 => GatewayError::HeadersTooLarge(0),
        _ => GatewayError::BadRequest(format!("not a request the gateway can read ({status})")),
    };
    let message = match &error {
        GatewayError::HeadersTooLarge(_) => "request headers too large".to_owned(),
        other => other.to_string(),
    };
    let body = serde_json::to_vec(&crate::tencent::CallbackResponse::fail(
        error.error_code(),
        message,
    ))
    .ok()?;
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonErrors<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        // Only a whole canned answer in one write is rewritten: hyper writes them so.
        if buf.len() < 256
            && let Some(answer) = rewritten(buf)
        {
            this.pending = Some((answer, 0));
            // Written now if the socket takes it, else on the next write or flush.
            let _ = this.poll_pending(cx)?;
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        std::pin::Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        std::pin::Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonErrors<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// How long a connection that evicted an idle one waits for its slot.
const EVICTION_WAIT: Duration = Duration::from_millis(250);

/// One open connection: the requests in flight on it, and since when it has had none.
#[derive(Debug)]
struct Slot {
    id: u64,
    busy: AtomicU64,
    /// Milliseconds after the registry's epoch.
    idle_since_ms: AtomicU64,
    evict: tokio::sync::Notify,
}

/// A request in flight on its connection, until dropped.
struct Busy(Arc<Slot>, Instant);

impl Busy {
    fn begin(slot: Arc<Slot>, epoch: Instant) -> Self {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Self(slot, epoch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.1.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(ms, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, for finding the one idle longest when slots run out. Touched
/// when a connection opens and closes, and scanned only when every slot is taken; a
/// request costs two atomic operations on its own connection's slot.
#[derive(Debug)]
struct Open {
    epoch: Instant,
    next: AtomicU64,
    slots: std::sync::Mutex<std::collections::HashMap<u64, Arc<Slot>>>,
}

impl Default for Open {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            slots: std::sync::Mutex::default(),
        }
    }
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Slot>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a connection opening now (idle since now).
    fn enter(self: &Arc<Self>) -> (Arc<Slot>, Instant) {
        let slot = Arc::new(Slot {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            busy: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(
                u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
            ),
            evict: tokio::sync::Notify::new(),
        });
        self.lock().insert(slot.id, Arc::clone(&slot));
        (slot, self.epoch)
    }

    fn leave(&self, (slot, _): &(Arc<Slot>, Instant)) {
        self.lock().remove(&slot.id);
    }

    /// Tells the connection idle longest to close; false when every connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let oldest = self
            .lock()
            .values()
            .filter(|slot| slot.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|slot| slot.idle_since_ms.load(Ordering::Relaxed))
            .cloned();
        match oldest {
            Some(slot) => {
                // Not idle any more (nor again, until it closes): not chosen twice.
                slot.idle_since_ms.store(u64::MAX, Ordering::Relaxed);
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves one connection until it closes, or closes it once idle when `close` says so, or
/// at once when it is evicted to make room (after its response, if a request came in
/// meanwhile).
async fn connection<I>(
    io: TokioIo<I>,
    app: axum::Router,
    peer: Option<IpAddr>,
    limits: Limits,
    mut close: watch::Receiver<bool>,
    (slot, epoch): &(Arc<Slot>, Instant),
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size((limits.max_header_bytes * 2).max(8 * 1024));
    let (busy, epoch) = (Arc::clone(slot), *epoch);
    let service = tower::ServiceExt::map_request(
        app,
        move |mut request: http::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                request.extensions_mut().insert(Peer(peer));
            }
            request
        },
    );
    let service = TowerToHyperService::new(tower::ServiceExt::map_future(service, move |answer| {
        let busy = Busy::begin(Arc::clone(&busy), epoch);
        async move {
            let answer = answer.await;
            drop(busy);
            answer
        }
    }));
    let served = http.serve_connection(io, service);
    tokio::pin!(served);
    let mut closing = *close.borrow();
    if closing {
        served.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            changed = close.changed(), if !closing => {
                if changed.is_err() || *close.borrow() {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
            }
            () = slot.evict.notified(), if !closing => {
                if slot.busy.load(Ordering::Acquire) == 0 {
                    // Nothing in flight: closed at once, wherever its next request stands.
                    return;
                }
                closing = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Refuses heads over the limit, Tencent-shaped; marks answers `Connection: close` while
/// the gateway drains.
async fn guard(
    axum::extract::State(guard): axum::extract::State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let Guard {
        draining,
        max_header_bytes,
        sources,
        gateway,
    } = guard;
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    let head = uri
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    let source = request
        .extensions()
        .get::<Peer>()
        .map_or(Ok(()), |peer| sources.admits(peer.0, request.headers()));
    let mut response = if uri > MAX_URI_BYTES {
        GatewayError::UriTooLong(MAX_URI_BYTES).into_response()
    } else if head > max_header_bytes {
        GatewayError::HeadersTooLarge(max_header_bytes).into_response()
    } else if let Err(refused) = source {
        gateway.counters().refused(refused.reason());
        refused.into_response()
    } else {
        next.run(request).await
    };
    if draining.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Connections closed on arrival because the gateway held `max_connections`: counted here
/// for the log (and as refusals, reason `max_connections`), logged at most once a second.
#[derive(Default)]
struct Refused {
    count: AtomicU64,
    logged: std::sync::Mutex<Option<Instant>>,
}

impl Refused {
    fn note(&self, peer: SocketAddr, max: usize) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self
            .logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *logged = Some(Instant::now());
            tracing::warn!(
                %peer,
                max_connections = max,
                refused_so_far = count,
                "connection closed on arrival: the gateway holds as many as it may"
            );
        }
    }
}
