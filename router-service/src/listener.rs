//! The router's listener: the connections its gRPC server is handed, each under limits that
//! keep strangers from holding the router's sockets, plaintext and TLS alike.
//!
//! - **Slots**: at most `[router] max_connections` at once; one more is closed on arrival
//!   (counted, logged at most once a second).
//! - **Preface**: within `preface_timeout` of its arrival a connection must finish its TLS
//!   handshake (with `[router.tls]`) and send the HTTP/2 preface, or it is closed before
//!   the server sees it.
//! - **Idle**: a connection is closed once no call has been in flight on it for
//!   `idle_timeout`, and one that never made a call past the access check (no token, a
//!   wrong one) once `preface_timeout` has passed since it arrived: calls refused by
//!   `[router.auth]` never count as activity, so a stranger holds a slot for
//!   `preface_timeout` at most, whatever it sends.
//! - **Keep-alive**: the server pings every `keepalive` and drops a peer that does not
//!   answer (a vanished client), so dead connections give their slot back.
//!
//! [`ActivityLayer`] is what tells a connection of its calls: it sits inside the access
//! check, and reads the connection's [`Activity`] from the request's extensions (tonic puts
//! the [`Connected`] info of the connection there).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use handoff_core::{config::RouterConfig, throttle::Throttle};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tonic::transport::server::Connected;

use crate::metrics::ReasonLabels;

/// What every HTTP/2 connection begins with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits a connection lives under, from `[router]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How long a connection may take to be ready (TLS, the HTTP/2 preface), and to make
    /// its first call past the access check.
    pub preface_timeout: Duration,
    /// How long a connection may go without a call in flight.
    pub idle_timeout: Duration,
    /// How often the server pings each connection.
    pub keepalive: Duration,
}

impl ConnectionLimits {
    /// The limits `[router]` sets.
    pub fn of(config: &RouterConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            preface_timeout: config.preface_timeout.get(),
            idle_timeout: config.idle_timeout.get(),
            keepalive: config.keepalive.get(),
        }
    }
}

/// What one connection has done: the calls in flight on it, and when the last one began
/// or ended.
#[derive(Debug)]
pub struct Activity {
    arrived: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `arrived` of the last call's start or end; `u64::MAX` before the
    /// first call.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            arrived: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.arrived.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is closed if nothing happens before, and why; `None` while a
    /// call is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => (self.arrived + limits.preface_timeout, "preface_timeout"),
            ms => (
                self.arrived + Duration::from_millis(ms) + limits.idle_timeout,
                "idle_timeout",
            ),
        })
    }
}

/// A call in flight on a connection, until it is dropped.
struct Call(Arc<Activity>);

impl Call {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Self(activity)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells each call's connection that it is busy until the call's answer is ready.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService { inner }
    }
}

/// The service [`ActivityLayer`] makes.
#[derive(Debug, Clone)]
pub struct ActivityService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for ActivityService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = request
            .extensions()
            .get::<Arc<Activity>>()
            .cloned()
            .map(Call::begin);
        Tracked {
            inner: self.inner.call(request),
            _call: call,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer, and its connection's note that it is in flight.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        _call: Option<Call>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// A connection's bytes, plaintext or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection under its limits: the preface read off it is served first, and
/// reads end (the server then closes it) once it has been idle too long.
pub struct Watched {
    stream: Stream,
    preface_left: usize,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    timer: Pin<Box<Sleep>>,
    closed: Option<&'static str>,
    counted: Family<ReasonLabels, Counter>,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Watched {
    type ConnectInfo = Arc<Activity>;

    fn connect_info(&self) -> Self::ConnectInfo {
        Arc::clone(&self.activity)
    }
}

impl Watched {
    /// Ends the connection's reads (the server then closes it), counted under `why`.
    fn close(&mut self, why: &'static str) -> Poll<io::Result<()>> {
        self.closed = Some(why);
        self.counted
            .get_or_create(&ReasonLabels { reason: why })
            .inc();
        tracing::debug!(reason = why, "closing an idle connection");
        Poll::Ready(Ok(()))
    }

    /// Whether the connection has been idle past its deadline: then it is closed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            match self.activity.deadline(&self.limits) {
                None => {
                    let next = Instant::now() + self.limits.idle_timeout;
                    self.timer.as_mut().reset(next.into());
                }
                Some((at, why)) if at <= Instant::now() => return Poll::Ready(why),
                Some((at, _)) => self.timer.as_mut().reset(at.into()),
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        // Checked on every read too, so that a peer that keeps sending (pings, say) without
        // ever making a call does not keep its slot.
        if let Some((at, why)) = this.activity.deadline(&this.limits)
            && at <= Instant::now()
        {
            return this.close(why);
        }
        if this.preface_left > 0 {
            let start = PREFACE.len() - this.preface_left;
            let n = this.preface_left.min(buf.remaining());
            buf.put_slice(&PREFACE[start..start + n]);
            this.preface_left -= n;
            return Poll::Ready(Ok(()));
        }
        let read = match &mut this.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        };
        if read.is_ready() {
            return read;
        }
        match this.poll_idle(cx) {
            Poll::Ready(why) => this.close(why),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections `listener` accepts under `limits`, each handed on once its TLS
/// handshake (with `tls`) and HTTP/2 preface are done; what is refused or closed is counted
/// in `counted` by reason (`max_connections`, `preface_timeout`, `bad_preface`,
/// `idle_timeout`). Handshakes run side by side, so a slow client holds up nobody.
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    counted: Family<ReasonLabels, Counter>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Watched, io::Error>> {
    let (ready, incoming) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        static FULL: Throttle = Throttle::new(1);
        loop {
            // Once the server lets go of its connections, the listener closes with this task.
            let accepted = tokio::select! {
                () = ready.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, usually: wait for some to be given back.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                counted
                    .get_or_create(&ReasonLabels {
                        reason: "max_connections",
                    })
                    .inc();
                if let Some(left_out) = FULL.admit() {
                    tracing::warn!(%peer, max_connections = limits.max_connections, left_out, "connection closed on arrival: the router holds as many as it may");
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (tls, handed, counted) = (tls.clone(), ready.clone(), counted.clone());
            tokio::spawn(async move {
                let activity = Arc::new(Activity::new());
                let opened = tokio::time::timeout(limits.preface_timeout, open(tcp, tls)).await;
                let stream = match opened {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "connection refused before HTTP/2");
                        let reason = ReasonLabels {
                            reason: "bad_preface",
                        };
                        counted.get_or_create(&reason).inc();
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "no HTTP/2 preface in time");
                        let reason = ReasonLabels {
                            reason: "preface_timeout",
                        };
                        counted.get_or_create(&reason).inc();
                        return;
                    }
                };
                let deadline = activity.arrived + limits.preface_timeout;
                let watched = Watched {
                    stream,
                    preface_left: PREFACE.len(),
                    activity,
                    limits,
                    timer: Box::pin(tokio::time::sleep_until(deadline.into())),
                    closed: None,
                    counted,
                    _slot: slot,
                };
                let _ = handed.send(Ok(watched)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(incoming)
}

/// The connection's stream once its TLS handshake (with `tls`) is done and it has sent the
/// HTTP/2 preface (read off it: [`Watched`] serves it again).
async fn open(tcp: TcpStream, tls: Option<TlsAcceptor>) -> io::Result<Stream> {
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => Stream::Tls(Box::new(tls.accept(tcp).await?)),
    };
    let mut preface = [0u8; PREFACE.len()];
    match &mut stream {
        Stream::Plain(tcp) => tcp.read_exact(&mut preface).await?,
        Stream::Tls(tls) => tls.read_exact(&mut preface).await?,
    };
    if &preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection",
        ));
    }
    Ok(stream)
}
