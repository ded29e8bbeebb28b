//! A Desk REST client: each command one HTTP/1.1 POST (hyper over rustls, trusting the
//! webpki roots; `http://` only where config allows it, for loopback), signed with the
//! admin's cached UserSig, and the typed listings a sync loop reads, paged to their end.
//!
//! Every call is bounded: connecting, the TLS handshake and the exchange share one
//! deadline of the client's `timeout`, and an answer may be at most [`MAX_ANSWER`] bytes.
//! The secret key and the UserSig never reach `Debug`, a log or an error; URLs are logged
//! only [`api::redacted`]. Calls come a few a minute, so each opens its own connection and
//! nothing is pooled. What the answers hold, read leniently, is in the `answers` submodule.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use handoff_core::{config::Secret, tls};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    Request, StatusCode,
    body::Bytes,
    client::conn::http1,
    header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    task::JoinHandle,
    time::{Instant, timeout_at},
};
use tokio_rustls::TlsConnector;

use super::{
    api::{self, DeskError, Endpoint},
    usersig::{self, Claims},
};

mod answers;

pub use answers::{DeskGroup, DeskMember, MemberLive, Reception, WorkTime};
use answers::{Setting, count, default_work_time, nullable};

/// The largest answer read, in bytes: a roster page of 100 members is a few tens of KiB,
/// so anything near this is not Desk.
pub const MAX_ANSWER: usize = 8 << 20;

/// How long a minted UserSig holds, seconds: Tencent advises at least 24 hours.
const USERSIG_LIFETIME: u64 = 24 * 3600;

/// A UserSig with less than this left (seconds) is minted again, so that no call carries
/// one about to expire, even with a clock a few hours off Tencent's.
const USERSIG_MARGIN: u64 = 12 * 3600;

/// Rows asked per page: the most every listing command allows.
const PAGE_SIZE: u64 = 100;

/// Rows asked per page of conversation settings: that command allows at most 10.
const SETTINGS_PAGE_SIZE: u64 = 10;

/// Pages read at most from one listing, against a server that never reaches its end.
const MAX_PAGES: u64 = 1000;

/// A Desk REST client for one app, as its admin.
pub struct DeskClient {
    endpoint: Endpoint,
    secret_key: Secret,
    timeout: Duration,
    tls: TlsConnector,
    usersig: Mutex<Option<Minted>>,
    /// The wall clock UserSigs are minted by; a plain function so tests can move it.
    clock: fn() -> SystemTime,
}

/// The UserSig in use and when it was made (Unix seconds).
struct Minted {
    token: String,
    time: u64,
}

impl fmt::Debug for DeskClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeskClient")
            .field("endpoint", &self.endpoint)
            .field("secret_key", &self.secret_key)
            .field("usersig", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DeskClient {
    /// A client of `endpoint` signing with the app's `secret_key`, each call bounded by
    /// `timeout`. Fails only if rustls cannot offer its default protocol versions.
    pub fn new(
        endpoint: Endpoint,
        secret_key: Secret,
        timeout: Duration,
    ) -> Result<Self, DeskError> {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(endpoint, secret_key, timeout, roots)
    }

    /// [`DeskClient::new`] trusting `roots` instead of the webpki ones.
    fn with_roots(
        endpoint: Endpoint,
        secret_key: Secret,
        timeout: Duration,
        roots: RootCertStore,
    ) -> Result<Self, DeskError> {
        let mut config = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| DeskError::Unreachable(format!("no TLS client: {err}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            endpoint,
            secret_key,
            timeout,
            tls: TlsConnector::from(Arc::new(config)),
            usersig: Mutex::new(None),
            clock: SystemTime::now,
        })
    }

    /// Sends `command` with `body` and returns Desk's answer when it worked.
    pub async fn call(&self, command: &str, body: &Value) -> Result<Value, DeskError> {
        let url = self.endpoint.url(command, &self.usersig(), random_u32());
        let started = Instant::now();
        let answered = self.post(&url, body.to_string()).await;
        tracing::debug!(
            url = %api::redacted(&url),
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = answered.as_ref().err().map(tracing::field::display),
            "desk call"
        );
        api::answer(self.endpoint.sdk_app_id, &answered?)
    }

    /// Every member group (`get_member_group_list`, paged by `PageNumber` from 0).
    pub async fn groups(&self) -> Result<Vec<DeskGroup>, DeskError> {
        let listing = Listing {
            command: "get_member_group_list",
            rows: "MemberGroupList",
            total: "Total",
            request: |page, _| json!({"PageSize": PAGE_SIZE, "PageNumber": page}),
        };
        self.list(listing, |group: &DeskGroup| group.id).await
    }

    /// Every member (`get_member_list`, paged by `PageNum` from 0, oldest first).
    pub async fn members(&self) -> Result<Vec<DeskMember>, DeskError> {
        let listing = Listing {
            command: "get_member_list",
            rows: "MemberList",
            total: "Total",
            request: |page, _| json!({"PageSize": PAGE_SIZE, "PageNum": page, "Order": 0}),
        };
        self.list(listing, |member: &DeskMember| member.mail.clone())
            .await
    }

    /// Every member's live status and load today (`describe_member_realtime_statistics`,
    /// paged by `Limit`/`Offset`, the offset advanced by the rows actually received).
    pub async fn realtime(&self) -> Result<Vec<MemberLive>, DeskError> {
        let listing = Listing {
            command: "describe_member_realtime_statistics",
            rows: "Data",
            total: "TotalCount",
            request: |_, offset| json!({"Limit": PAGE_SIZE, "Offset": offset}),
        };
        self.list(listing, |live: &MemberLive| live.mail.clone())
            .await
    }

    /// The sessions queued and served now (`describe_reception_realtime_statistics`).
    pub async fn reception(&self) -> Result<Reception, DeskError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Data", default, deserialize_with = "nullable")]
            data: Reception,
        }
        let answer = self
            .call("describe_reception_realtime_statistics", &json!({}))
            .await?;
        parse::<Answer>("describe_reception_realtime_statistics", answer).map(|a| a.data)
    }

    /// The working hours of the default conversation setting
    /// (`get_channel_specific_conversation_settings`, paged by `PageNumber` from 0, 10 a
    /// page): the setting whose `IsDefault` is set (Tencent's example sends `1`), else the
    /// first; of its languages, the first in alphabetical order that has a
    /// `WorkTimeConfig`. `None` when that setting has none in any language.
    pub async fn work_time(&self) -> Result<Option<WorkTime>, DeskError> {
        let listing = Listing {
            command: "get_channel_specific_conversation_settings",
            rows: "Data",
            total: "TotalCount",
            request: |page, _| json!({"PageNumber": page, "PageSize": SETTINGS_PAGE_SIZE}),
        };
        let settings = self.list(listing, |s: &Setting| s.id).await?;
        Ok(default_work_time(settings))
    }

    /// Sets member `mail`'s workbench status (`STATUS_FREE`, `STATUS_NOT_READY` or
    /// `STATUS_REST`), as `{"MemberMail", "Status"}` (Tencent's page 269/124943). No
    /// `RestReason` is sent: for `STATUS_REST`, Desk then takes the member's last one.
    pub async fn set_member_status(&self, mail: &str, status: &str) -> Result<(), DeskError> {
        self.call(
            "set_member_status",
            &json!({"MemberMail": mail, "Status": status}),
        )
        .await
        .map(drop)
    }

    /// The UserSig to sign with now, minted again once less than [`USERSIG_MARGIN`] is left.
    fn usersig(&self) -> String {
        let now = unix_secs((self.clock)());
        let mut minted = self.usersig.lock();
        if let Some(current) = &*minted
            && now < current.time + (USERSIG_LIFETIME - USERSIG_MARGIN)
        {
            return current.token.clone();
        }
        let claims = Claims {
            sdk_app_id: self.endpoint.sdk_app_id,
            identifier: self.endpoint.admin.clone(),
            time: now,
            expire: USERSIG_LIFETIME,
        };
        let token = usersig::mint(self.secret_key.expose(), &claims);
        *minted = Some(Minted {
            token: token.clone(),
            time: now,
        });
        token
    }

    /// Pages `listing` to its end: until Desk has given as many distinct rows (by `key`)
    /// as its total says, or an empty page. Counting rows rather than pages keeps working
    /// when Desk sends fewer rows than asked, and distinct keys keep a repeated page (a
    /// 1-based `PageNumber` read from 0, say) from counting twice. A listing that repeats
    /// itself twice running, or runs past [`MAX_PAGES`], is refused rather than cut short:
    /// a partial roster would read as agents removed.
    async fn list<T, K>(&self, listing: Listing, key: impl Fn(&T) -> K) -> Result<Vec<T>, DeskError>
    where
        T: DeserializeOwned,
        K: Eq + Hash,
    {
        let (mut rows, mut seen, mut received, mut stalled) = (Vec::new(), HashSet::new(), 0u64, 0);
        for page in 0..MAX_PAGES {
            let body = (listing.request)(page, received);
            let answer = self.call(listing.command, &body).await?;
            let total = count(&answer[listing.total]);
            let batch: Vec<T> = parse_field(listing.command, answer, listing.rows)?;
            if batch.is_empty() {
                return Ok(rows);
            }
            received += batch.len() as u64;
            let before = rows.len();
            rows.extend(batch.into_iter().filter(|row| seen.insert(key(row))));
            stalled = if rows.len() == before { stalled + 1 } else { 0 };
            if stalled == 2 {
                return Err(DeskError::Malformed(format!(
                    "{} gave no new rows on pages {} and {page}",
                    listing.command,
                    page - 1
                )));
            }
            if total.is_some_and(|total| rows.len() as u64 >= total) {
                return Ok(rows);
            }
        }
        Err(DeskError::Malformed(format!(
            "{} did not reach its end in {MAX_PAGES} pages",
            listing.command
        )))
    }

    /// POSTs `body` to `url` and returns the answer's bytes, if it came with HTTP 200.
    async fn post(&self, url: &str, body: String) -> Result<Bytes, DeskError> {
        let target = Target::parse(url)?;
        let deadline = Instant::now() + self.timeout;
        let phase = Phase {
            deadline,
            timeout: self.timeout,
            authority: &target.authority,
        };
        let tcp = phase
            .bound(
                "connecting",
                TcpStream::connect((target.host.as_str(), target.port)),
            )
            .await?;
        if !target.tls {
            return phase.exchange(tcp, &target, body).await;
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|err| {
            DeskError::Unreachable(format!("{} is not a TLS server name: {err}", target.host))
        })?;
        let tls = phase
            .bound("in the TLS handshake", self.tls.connect(name, tcp))
            .await?;
        phase.exchange(tls, &target, body).await
    }
}

/// `base` plus 0 to 50% more, at random: a backoff's wait, so that clients backing off
/// together do not come back together.
pub fn jittered(base: Duration) -> Duration {
    let fraction = f64::from(random_u32()) / f64::from(u32::MAX);
    base + base.mul_f64(fraction / 2.0)
}

/// How one listing command pages.
struct Listing {
    command: &'static str,
    /// The answer's field holding the rows.
    rows: &'static str,
    /// The answer's field holding how many rows there are in all.
    total: &'static str,
    /// The body asking for page `page` (from 0), `offset` rows having come before it.
    request: fn(u64, u64) -> Value,
}

/// Where a URL points, split for connecting.
struct Target {
    tls: bool,
    /// The host without IPv6 brackets: what is connected to, and the TLS server name.
    host: String,
    port: u16,
    /// `host[:port]` as written: the `Host` header, and errors' "where".
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, DeskError> {
        let bad = |why: &str| DeskError::Unreachable(format!("{}: {why}", api::redacted(url)));
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let (tls, default_port) = match uri.scheme_str() {
            Some("https") => (true, 443),
            Some("http") => (false, 80),
            _ => return Err(bad("neither https nor http")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        Ok(Self {
            tls,
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(default_port),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// One call's deadline, for bounding each of its phases and saying which one failed.
struct Phase<'a> {
    deadline: Instant,
    timeout: Duration,
    authority: &'a str,
}

impl Phase<'_> {
    /// `work` (`what` it is, for errors) if it ends by the deadline.
    async fn bound<T, E: fmt::Display>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, DeskError> {
        match timeout_at(self.deadline, work).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(DeskError::Unreachable(format!(
                "{} failed {what}: {err}",
                self.authority
            ))),
            Err(_) => Err(DeskError::Unreachable(format!(
                "{} timed out {what} (the call may take {:?})",
                self.authority, self.timeout
            ))),
        }
    }

    /// The HTTP/1.1 request of `body` to `target` over `io`, and the answer's bytes.
    async fn exchange<S>(&self, io: S, target: &Target, body: String) -> Result<Bytes, DeskError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = self
            .bound("starting HTTP", http1::handshake(TokioIo::new(io)))
            .await?;
        let _connection = AbortOnDrop(tokio::spawn(connection));
        let request = Request::post(target.path_and_query.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(CONNECTION, "close")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| DeskError::Unreachable(format!("no request: {err}")))?;
        let response = self
            .bound("waiting for the answer", sender.send_request(request))
            .await?;
        if response.status() != StatusCode::OK {
            return Err(DeskError::Unreachable(format!(
                "{} answered HTTP {}",
                self.authority,
                response.status()
            )));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_ANSWER as u64) {
            return Err(too_large());
        }
        let limited = Limited::new(response.into_body(), MAX_ANSWER);
        match timeout_at(self.deadline, limited.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.is::<LengthLimitError>() => Err(too_large()),
            Ok(Err(err)) => Err(DeskError::Unreachable(format!(
                "{} failed reading the answer: {err}",
                self.authority
            ))),
            Err(_) => Err(DeskError::Unreachable(format!(
                "{} timed out reading the answer (the call may take {:?})",
                self.authority, self.timeout
            ))),
        }
    }
}

fn too_large() -> DeskError {
    DeskError::Malformed(format!("an answer larger than {MAX_ANSWER} bytes"))
}

/// The connection's task, stopped with the call whichever way the call ends.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A random `u32` (the `random` of every URL, and jitter): std's per-process random keys,
/// fresh for each call, over a counter and the time.
fn random_u32() -> u32 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 32) as u32
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `answer` read as `T`.
fn parse<T: DeserializeOwned>(command: &str, answer: Value) -> Result<T, DeskError> {
    serde_json::from_value(answer).map_err(|err| DeskError::Malformed(format!("{command}: {err}")))
}

/// Field `field` of `answer` read as `T`, its default when missing or `null`.
fn parse_field<T: DeserializeOwned + Default>(
    command: &str,
    mut answer: Value,
    field: &str,
) -> Result<T, DeskError> {
    match answer.get_mut(field).map(Value::take) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => parse(command, value).map_err(|err| match err {
            DeskError::Malformed(why) => DeskError::Malformed(format!("{why} (in {field})")),
            other => other,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        net::SocketAddr,
        sync::{
            Arc,
            atomic::{AtomicI64, AtomicU64},
        },
    };

    use axum::{
        Router,
        extract::{Path, Query, State},
        response::{IntoResponse, Response},
        routing::post,
    };
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::{
        ServerConfig,
        pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };
    use tokio_rustls::TlsAcceptor;

    use super::*;

    /// Tencent's demo key, as its signing libraries' tests use it.
    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    const APP: u64 = 1_400_000_001;
    const ADMIN: &str = "administrator";

    // Tencent's documentation examples, recorded (comment-free JSON, one file each):
    // - get_member_group_list: https://cloud.tencent.com/document/product/269/124502
    // - get_member_list: https://cloud.tencent.com/document/product/269/124319 (the page's
    //   example carries `//` comments and lacks two commas; recorded without the comments
    //   and with the commas, nothing else changed)
    // - describe_member_realtime_statistics: https://cloud.tencent.com/document/product/269/117848
    // - describe_reception_realtime_statistics: https://cloud.tencent.com/document/product/269/117849
    // - get_channel_specific_conversation_settings: the envelope, `TotalCount` and the
    //   setting's head up to `TimeoutEndPromptDisabled` from
    //   https://cloud.tencent.com/document/product/269/141346, whose stored copy is cut off
    //   there; the rest of the language object (`NotWorkTimePrompt`, `WorkTimeConfig`,
    //   `ChooseSkillGroupPrompt`, ...) from the same setting's fields in the update
    //   command's example, https://cloud.tencent.com/document/product/269/141348
    // - set_member_status: https://cloud.tencent.com/document/product/269/124943
    fn example(command: &str) -> Value {
        let text = match command {
            "get_member_group_list" => include_str!("examples/get_member_group_list.json"),
            "get_member_list" => include_str!("examples/get_member_list.json"),
            "describe_member_realtime_statistics" => {
                include_str!("examples/describe_member_realtime_statistics.json")
            }
            "describe_reception_realtime_statistics" => {
                include_str!("examples/describe_reception_realtime_statistics.json")
            }
            "get_channel_specific_conversation_settings" => {
                include_str!("examples/get_channel_specific_conversation_settings.json")
            }
            "set_member_status" => include_str!("examples/set_member_status.json"),
            other => panic!("no recorded example of {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn fail(code: i64, info: &str) -> Value {
        json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
    }

    /// What the test Desk does with a call that passed its envelope checks.
    enum Reply {
        Json(Value),
        Status(u16),
        Never,
    }

    /// A call the test Desk accepted.
    #[derive(Debug, Clone)]
    struct Call {
        command: String,
        body: Value,
        usersig: String,
        random: u32,
    }

    /// How the test Desk answers a command's body.
    type Answer = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

    #[derive(Clone)]
    struct Shared {
        answer: Answer,
        calls: Arc<Mutex<Vec<Call>>>,
    }

    struct Desk {
        url: String,
        calls: Arc<Mutex<Vec<Call>>>,
    }

    impl Desk {
        fn calls(&self, command: &str) -> Vec<Call> {
            let calls = self.calls.lock();
            calls
                .iter()
                .filter(|c| c.command == command)
                .cloned()
                .collect()
        }
    }

    /// A Desk on 127.0.0.1:0 that checks every call's query as Tencent documents it (the
    /// UserSig recomputed from its decoded claims under [`KEY`]) and answers the rest with
    /// `answer`.
    async fn desk(answer: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> Desk {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            answer: Arc::new(answer),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/v4/desk_http_svc/{command}", post(handle))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Desk {
            url,
            calls: shared.calls,
        }
    }

    async fn handle(
        State(shared): State<Shared>,
        Path(command): Path<String>,
        Query(query): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> Response {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reply = match envelope(&query) {
            Err(refused) => Reply::Json(refused),
            Ok((usersig, random)) => {
                shared.calls.lock().push(Call {
                    command: command.clone(),
                    body: body.clone(),
                    usersig,
                    random,
                });
                (shared.answer)(&command, &body)
            }
        };
        match reply {
            Reply::Json(answer) => {
                ([(CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
            }
            Reply::Status(status) => (
                axum::http::StatusCode::from_u16(status).unwrap(),
                "<html>bad gateway</html>",
            )
                .into_response(),
            Reply::Never => std::future::pending().await,
        }
    }

    /// The UserSig and `random` of a well-formed query, or Desk's refusal.
    fn envelope(query: &HashMap<String, String>) -> Result<(String, u32), Value> {
        let get = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
        if get("contenttype") != "json" {
            return Err(fail(60002, "contenttype"));
        }
        let random = get("random").parse().map_err(|_| fail(60002, "random"))?;
        let (claims, signature) =
            usersig::decode(get("usersig")).ok_or_else(|| fail(70003, "unreadable usersig"))?;
        if get("sdkappid") != APP.to_string() || claims.sdk_app_id != APP {
            return Err(fail(70014, "sdkappid"));
        }
        if get("identifier") != ADMIN || claims.identifier != ADMIN {
            return Err(fail(70013, "identifier"));
        }
        if claims.time + claims.expire < unix_secs(SystemTime::now()) {
            return Err(fail(70001, "expired"));
        }
        if signature != usersig::sig(KEY, &claims) {
            return Err(fail(70009, "bad signature"));
        }
        Ok((get("usersig").to_owned(), random))
    }

    fn client(url: &str) -> DeskClient {
        client_with(url, KEY, Duration::from_secs(5))
    }

    fn client_with(url: &str, key: &str, timeout: Duration) -> DeskClient {
        let endpoint = Endpoint {
            api: url.to_owned(),
            sdk_app_id: APP,
            admin: ADMIN.to_owned(),
        };
        DeskClient::new(endpoint, Secret::new(key), timeout).unwrap()
    }

    /// A listing served from its recorded page: `pages` pages of it, each page's rows
    /// renamed by `rename`, the total `pages × rows`. The page is read from `param` (a row
    /// offset when `by_offset`), and a body without it, or without `size` rows asked,
    /// is refused with 141004 ("bad params") as Desk does.
    struct Pages {
        command: &'static str,
        rows: &'static str,
        total: &'static str,
        param: &'static str,
        size: (&'static str, u64),
        by_offset: bool,
        pages: u64,
        rename: fn(&mut Value, u64),
    }

    impl Pages {
        fn answer(&self, body: &Value) -> Value {
            let recorded = example(self.command);
            let per_page = recorded[self.rows].as_array().map_or(0, Vec::len) as u64;
            let (Some(at), Some(size)) = (body[self.param].as_u64(), body[self.size.0].as_u64())
            else {
                return fail(141004, "bad params");
            };
            if size != self.size.1 {
                return fail(141004, "bad params");
            }
            let page = if self.by_offset { at / per_page } else { at };
            let mut answer = recorded.clone();
            let rows = answer[self.rows].as_array_mut().unwrap();
            if page >= self.pages {
                rows.clear();
            }
            for row in rows {
                (self.rename)(row, page);
            }
            answer[self.total] = json!(per_page * self.pages);
            answer
        }
    }

    #[tokio::test]
    async fn groups_are_paged_by_page_number_to_the_total() {
        let pages = Pages {
            command: "get_member_group_list",
            rows: "MemberGroupList",
            total: "Total",
            param: "PageNumber",
            size: ("PageSize", 100),
            by_offset: false,
            pages: 3,
            rename: |row, page| {
                row["MemberGroupID"] = json!(row["MemberGroupID"].as_u64().unwrap() + 10_000 * page)
            },
        };
        let desk = desk(move |_, body| Reply::Json(pages.answer(body))).await;
        let groups = client(&desk.url).groups().await.unwrap();
        let ids: Vec<u64> = groups.iter().map(|g| g.id).collect();
        assert_eq!(ids, [1001, 1002, 11001, 11002, 21001, 21002]);
        assert_eq!(
            groups[0],
            DeskGroup {
                id: 1001,
                name: "售前咨询组".into(),
                reception_limit: 50
            }
        );
        assert_eq!(groups[5].reception_limit, 30);
        // Three pages and no fourth: the total (6) is reached, although a page of 100
        // asked for would have held them all.
        let asked: Vec<Value> = desk
            .calls("get_member_group_list")
            .iter()
            .map(|c| c.body["PageNumber"].clone())
            .collect();
        assert_eq!(asked, [json!(0), json!(1), json!(2)]);
    }

    #[tokio::test]
    async fn a_listing_that_never_ends_is_refused_not_cut_short() {
        // A Desk ignoring PageNumber: one repeat is allowed (a 1-based reading), a second
        // is not.
        let repeating = desk(|command, _| {
            let mut answer = example(command);
            answer["Total"] = json!(6);
            Reply::Json(answer)
        })
        .await;
        let err = client(&repeating.url).groups().await.unwrap_err();
        assert!(
            matches!(&err, DeskError::Malformed(why) if why.contains("no new rows")),
            "{err:?}"
        );
        assert_eq!(repeating.calls("get_member_group_list").len(), 3);

        // A Desk inventing new rows forever stops at the page guard.
        let endless = desk(|command, body| {
            let page = body["PageNum"].as_u64().unwrap();
            let mut answer = example(command);
            answer["Total"] = json!(u64::MAX);
            answer["MemberList"][0]["MemberMail"] = json!(format!("{page}@example.com"));
            answer["MemberList"][1]["MemberMail"] = json!(format!("{page}b@example.com"));
            Reply::Json(answer)
        })
        .await;
        let err = client(&endless.url).members().await.unwrap_err();
        assert!(
            matches!(&err, DeskError::Malformed(why) if why.contains("1000 pages")),
            "{err:?}"
        );
        assert_eq!(endless.calls("get_member_list").len(), 1000);
    }

    #[tokio::test]
    async fn members_are_paged_by_page_num_oldest_first() {
        let pages = Pages {
            command: "get_member_list",
            rows: "MemberList",
            total: "Total",
            param: "PageNum",
            size: ("PageSize", 100),
            by_offset: false,
            pages: 3,
            rename: |row, page| {
                if page > 0 {
                    let mail = row["MemberMail"].as_str().unwrap().to_owned();
                    row["MemberMail"] = json!(format!("p{page}.{mail}"));
                }
            },
        };
        let desk = desk(move |_, body| {
            if body["Order"] != 0 {
                return Reply::Json(fail(141004, "bad params"));
            }
            Reply::Json(pages.answer(body))
        })
        .await;
        let members = client(&desk.url).members().await.unwrap();
        let mails: Vec<&str> = members.iter().map(|m| m.mail.as_str()).collect();
        assert_eq!(
            mails,
            [
                "kefu1@tencent.com",
                "kefu2@tencent.com",
                "p1.kefu1@tencent.com",
                "p1.kefu2@tencent.com",
                "p2.kefu1@tencent.com",
                "p2.kefu2@tencent.com"
            ]
        );
        assert_eq!(
            members[0],
            DeskMember {
                mail: "kefu1@tencent.com".into(),
                nick_name: "客服1".into(),
                groups: vec![101, 102],
                effective_limit: 10,
                roles: vec![5],
            }
        );
        assert_eq!(desk.calls("get_member_list").len(), 3);
    }

    #[tokio::test]
    async fn live_states_are_paged_by_the_rows_received() {
        // The recorded answer says TotalCount 5 and holds one row: a Desk that gives fewer
        // rows than the Limit asked, so the offset must follow what came.
        let pages = Pages {
            command: "describe_member_realtime_statistics",
            rows: "Data",
            total: "TotalCount",
            param: "Offset",
            size: ("Limit", 100),
            by_offset: true,
            pages: 5,
            rename: |row, page| {
                if page > 0 {
                    row["MemberId"] = json!(format!("p{page}.1289316652@qq.com"));
                    row["CurrentAcceptCnt"] = json!(page);
                }
            },
        };
        let desk = desk(move |_, body| Reply::Json(pages.answer(body))).await;
        let live = client(&desk.url).realtime().await.unwrap();
        assert_eq!(
            live[0],
            MemberLive {
                mail: "1289316652@qq.com".into(),
                status: 1,
                serving: 2
            }
        );
        assert_eq!(live.len(), 5);
        assert_eq!(live[4].mail, "p4.1289316652@qq.com");
        assert_eq!(live[4].serving, 4);
        let offsets: Vec<Value> = desk
            .calls("describe_member_realtime_statistics")
            .iter()
            .map(|c| c.body["Offset"].clone())
            .collect();
        assert_eq!(offsets, [json!(0), json!(1), json!(2), json!(3), json!(4)]);
    }

    #[tokio::test]
    async fn the_reception_is_read_from_data() {
        let desk = desk(|command, body| {
            assert_eq!(body, &json!({}));
            Reply::Json(example(command))
        })
        .await;
        let reception = client(&desk.url).reception().await.unwrap();
        assert_eq!(
            reception,
            Reception {
                queued: 2,
                transferring: 15,
                serving: 13,
                free_agents: 10,
                rest_agents: 2,
                busy_agents: 3,
                queued_by_group: vec![(6103, 0)],
            }
        );
    }

    #[tokio::test]
    async fn work_time_is_the_default_settings_first_language_with_hours() {
        // Two settings, one a page (10 asked, a Desk giving fewer): first a distractor
        // that is not the default and has other hours, then the recorded default one,
        // given a language without hours that sorts before its "zh".
        let desk = desk(|command, body| {
            if body["PageSize"] != 10 {
                return Reply::Json(fail(141004, "bad params"));
            }
            let Some(page) = body["PageNumber"].as_u64() else {
                return Reply::Json(fail(141004, "bad params"));
            };
            let mut answer = example(command);
            let mut default = answer["Data"][0].take();
            default["MultilingualSettings"]["en"] = json!({"WelcomeMessage": "Hello"});
            let mut other = default.clone();
            other["ConversationSettingId"] = json!(10002);
            other["Name"] = json!("售前会话配置");
            other["IsDefault"] = json!(0);
            other["MultilingualSettings"]["en"]["WorkTimeConfig"] =
                json!({"Type": 2, "Periods": [{"Day": "Tuesday", "PeriodsWithinOneDay": [{"Start": "08:00", "End": "20:00"}]}]});
            answer["Data"] = match page {
                0 => json!([other]),
                1 => json!([default]),
                _ => json!([]),
            };
            answer["TotalCount"] = json!(2);
            Reply::Json(answer)
        })
        .await;
        let hours = client(&desk.url).work_time().await.unwrap();
        let period = |start: &str, end: &str| (start.to_owned(), end.to_owned());
        assert_eq!(
            hours,
            Some(WorkTime {
                setting: "默认会话配置".into(),
                kind: 1,
                days: vec![
                    (
                        "Monday".into(),
                        vec![period("09:00", "11:30"), period("14:00", "18:00")]
                    ),
                    ("Friday".into(), vec![period("09:00", "12:00")]),
                ],
            })
        );
        assert_eq!(
            desk.calls("get_channel_specific_conversation_settings")
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_status_is_set_for_a_members_mail() {
        let desk = desk(|command, body| {
            if body == &json!({"MemberMail": "kefu1@tencent.com", "Status": "STATUS_REST"}) {
                Reply::Json(example(command))
            } else {
                Reply::Json(fail(141004, "bad params"))
            }
        })
        .await;
        let client = client(&desk.url);
        client
            .set_member_status("kefu1@tencent.com", "STATUS_REST")
            .await
            .unwrap();
        assert!(matches!(
            client.set_member_status("kefu1@tencent.com", "rest").await,
            Err(DeskError::Failed { code: 141004, .. })
        ));
    }

    #[tokio::test]
    async fn every_call_carries_a_verifiable_usersig_and_a_fresh_random() {
        let desk = desk(|command, _| Reply::Json(example(command))).await;
        let client = client(&desk.url);
        for _ in 0..3 {
            client.reception().await.unwrap();
        }
        let calls = desk.calls("describe_reception_realtime_statistics");
        assert_eq!(calls.len(), 3);
        // The server checked each signature; here, that one token is reused for a day.
        let (claims, _) = usersig::decode(&calls[0].usersig).unwrap();
        assert_eq!(claims.expire, 24 * 3600);
        assert!(calls.iter().all(|c| c.usersig == calls[0].usersig));
        assert!(
            calls.iter().any(|c| c.random != calls[0].random),
            "{calls:?}"
        );
        // Signed with another key, the same calls are refused.
        let wrong = client_with(&desk.url, "another app's key", Duration::from_secs(5));
        assert!(matches!(
            wrong.reception().await,
            Err(DeskError::BadCredentials { code: 70009, .. })
        ));
    }

    static FAKE_NOW: AtomicU64 = AtomicU64::new(1_700_000_000);

    fn fake_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(FAKE_NOW.load(Ordering::Relaxed))
    }

    #[test]
    fn a_usersig_is_minted_again_when_less_than_half_a_day_is_left() {
        let mut client = client("http://127.0.0.1:9");
        client.clock = fake_clock;
        let start = FAKE_NOW.load(Ordering::Relaxed);
        let first = client.usersig();
        FAKE_NOW.store(start + 11 * 3600 + 3599, Ordering::Relaxed);
        assert_eq!(client.usersig(), first);
        FAKE_NOW.store(start + 12 * 3600, Ordering::Relaxed);
        let second = client.usersig();
        assert_ne!(second, first);
        let (claims, signature) = usersig::decode(&second).unwrap();
        assert_eq!(claims.time, start + 12 * 3600);
        assert_eq!(signature, usersig::sig(KEY, &claims));
    }

    #[tokio::test]
    async fn desks_codes_mean_what_tencent_documents() {
        let code = Arc::new(AtomicI64::new(0));
        let answered = code.clone();
        let desk = desk(move |_, _| Reply::Json(fail(answered.load(Ordering::Relaxed), "x"))).await;
        let client = client(&desk.url);
        let after = |value: i64| {
            code.store(value, Ordering::Relaxed);
            client.members()
        };
        assert!(matches!(
            after(141009).await,
            Err(DeskError::RateLimited { code: 141009, .. })
        ));
        assert!(matches!(
            after(70009).await,
            Err(DeskError::BadCredentials { code: 70009, .. })
        ));
        assert_eq!(after(141000).await, Err(DeskError::NotDesk(APP)));
        assert!(matches!(
            after(141010).await,
            Err(DeskError::Failed { code: 141010, .. })
        ));
    }

    #[tokio::test]
    async fn a_desk_that_never_answers_is_unreachable_after_the_timeout() {
        let desk = desk(|_, _| Reply::Never).await;
        let client = client_with(&desk.url, KEY, Duration::from_millis(300));
        let err = client.reception().await.unwrap_err();
        let DeskError::Unreachable(why) = &err else {
            panic!("{err:?}");
        };
        assert!(why.contains("timed out waiting for the answer"), "{why}");
        assert!(!why.contains(&client.usersig()), "{why}");
    }

    #[tokio::test]
    async fn no_listener_and_other_http_statuses_are_unreachable() {
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let err = client(&format!("http://{gone}"))
            .reception()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeskError::Unreachable(why) if why.contains("failed connecting")),
            "{err:?}"
        );

        let desk = desk(|_, _| Reply::Status(502)).await;
        let client = client(&desk.url);
        let err = client.reception().await.unwrap_err();
        assert!(
            matches!(&err, DeskError::Unreachable(why) if why.contains("HTTP 502")),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&client.usersig()), "{err}");
    }

    /// Answers one request on `io` with `reply`, once its head and body have come.
    async fn answer_once<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, reply: Vec<u8>) {
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = io.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            if let Some(head) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|l| l.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= head + 4 + length {
                    break;
                }
            }
        }
        let _ = io.write_all(&reply).await;
        let _ = io.shutdown().await;
    }

    /// A server answering each connection with `reply`, over TLS when `tls` is given; the
    /// server name each client asked for goes to the returned list.
    async fn raw(
        reply: Vec<u8>,
        tls: Option<TlsAcceptor>,
    ) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let seen = names.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (reply, tls, seen) = (reply.clone(), tls.clone(), seen.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer_once(tcp, reply).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                seen.lock()
                                    .push(stream.get_ref().1.server_name().map(str::to_owned));
                                answer_once(stream, reply).await;
                            }
                        }
                    }
                });
            }
        });
        (addr, names)
    }

    fn ok_with(pad: usize) -> String {
        format!(
            r#"{{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","Pad":"{}"}}"#,
            "x".repeat(pad)
        )
    }

    #[tokio::test]
    async fn answers_larger_than_the_limit_are_refused_declared_or_not() {
        let overhead = ok_with(0).len();
        let fits = ok_with(MAX_ANSWER - overhead);
        let over = ok_with(MAX_ANSWER - overhead + 1);
        let declared = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let chunked = |body: &str| {
            let half = body.len() / 2;
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                half,
                &body[..half],
                body.len() - half,
                &body[half..]
            )
        };
        for framed in [declared, chunked] {
            let (fits_at, _) = raw(framed(&fits).into_bytes(), None).await;
            let answer = client(&format!("http://{fits_at}"))
                .call("x", &json!({}))
                .await
                .unwrap();
            assert_eq!(
                answer["Pad"].as_str().map(str::len),
                Some(MAX_ANSWER - overhead)
            );
            let (over_at, _) = raw(framed(&over).into_bytes(), None).await;
            let err = client(&format!("http://{over_at}"))
                .call("x", &json!({}))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, DeskError::Malformed(why) if why.contains("larger than")),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn https_checks_the_certificate_for_the_urls_host() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let server = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let ok = example("set_member_status").to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{ok}",
            ok.len()
        );
        let (addr, names) = raw(
            reply.into_bytes(),
            Some(TlsAcceptor::from(Arc::new(server))),
        )
        .await;
        let endpoint = Endpoint {
            api: format!("https://localhost:{}", addr.port()),
            sdk_app_id: APP,
            admin: ADMIN.to_owned(),
        };

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let trusting = DeskClient::with_roots(
            endpoint.clone(),
            Secret::new(KEY),
            Duration::from_secs(5),
            roots,
        )
        .unwrap();
        trusting
            .call("set_member_status", &json!({}))
            .await
            .unwrap();
        assert_eq!(names.lock().as_slice(), [Some("localhost".to_owned())]);

        // The webpki roots do not know this CA: the handshake fails, nothing is sent.
        let public = DeskClient::new(endpoint, Secret::new(KEY), Duration::from_secs(5)).unwrap();
        let err = public
            .call("set_member_status", &json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DeskError::Unreachable(why) if why.contains("TLS handshake")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn debug_output_shows_neither_the_key_nor_the_usersig() {
        let desk = desk(|command, _| Reply::Json(example(command))).await;
        let client = client(&desk.url);
        client.reception().await.unwrap();
        let printed = format!("{client:?}");
        assert!(!printed.contains(KEY), "{printed}");
        assert!(!printed.contains(&client.usersig()), "{printed}");
        assert!(printed.contains("administrator"), "{printed}");
    }

    #[test]
    fn jitter_adds_up_to_half_at_random() {
        let base = Duration::from_secs(10);
        let gaps: Vec<Duration> = (0..50).map(|_| jittered(base)).collect();
        assert!(
            gaps.iter().all(|gap| *gap >= base && *gap <= base * 3 / 2),
            "{gaps:?}"
        );
        assert!(gaps.iter().any(|gap| *gap != gaps[0]), "{gaps:?}");
    }
}
