//! A fake Tencent Desk REST API (`POST /v4/desk_http_svc/<command>`), for tests of the
//! Desk sync: it speaks the documented envelope (every answer HTTP 200 with `ActionStatus`,
//! `ErrorCode`, `ErrorInfo`), checks the query and verifies the UserSig with a verifier of
//! its own (nothing shared with handoff's minter, so the two cannot agree on a mistake),
//! and answers the sync's commands from a state the test changes while the system runs.
//!
//! It pages as Desk documents, and strictly: each listing's own paging field
//! (`PageNumber` for groups and conversation settings, `PageNum` for members,
//! `Limit`/`Offset` for live statistics), any other field refused with 141004. It gives
//! at most `min(asked, max_page)` rows a page with the right total, so a small
//! [`FakeDesk::set_max_page`] forces many pages out of a few members.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::now_secs;

/// A Desk app on 127.0.0.1, stopped when dropped.
pub struct FakeDesk {
    addr: SocketAddr,
    state: Arc<Mutex<Desk>>,
    server: JoinHandle<()>,
}

impl Drop for FakeDesk {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Everything the fake knows and has seen.
struct Desk {
    sdk_app_id: u64,
    admin: String,
    key: String,
    /// (id, name, reception limit).
    groups: Vec<(u64, String, u32)>,
    /// In creation order, which `Order: 0` lists first.
    members: Vec<Member>,
    /// (mail, `MemberStatus`, `CurrentAcceptCnt`): the rows of the live statistics.
    live: Vec<(String, i64, u32)>,
    queued: u32,
    queued_by_group: Vec<(u64, u32)>,
    /// The default conversation setting's name and hours, once set.
    work_time: Option<(String, Hours)>,
    /// Command -> (code, how many more calls answer it).
    failing: HashMap<String, (i64, usize)>,
    max_page: usize,
    calls: HashMap<String, usize>,
    statuses: Vec<(String, String)>,
    refused: Vec<i64>,
}

/// Days (`"Monday"`) and their periods (`("09:00", "11:30")`).
type Hours = Vec<(String, Vec<(String, String)>)>;

struct Member {
    mail: String,
    nick: String,
    groups: Vec<u64>,
    limit: u32,
}

impl FakeDesk {
    /// Desk app `sdk_app_id`, administered by `admin`, whose secret key is `key`.
    pub async fn start(sdk_app_id: u64, admin: &str, key: &str) -> FakeDesk {
        let state = Arc::new(Mutex::new(Desk {
            sdk_app_id,
            admin: admin.to_owned(),
            key: key.to_owned(),
            groups: Vec::new(),
            members: Vec::new(),
            live: Vec::new(),
            queued: 0,
            queued_by_group: Vec::new(),
            work_time: None,
            failing: HashMap::new(),
            max_page: 100,
            calls: HashMap::new(),
            statuses: Vec::new(),
            refused: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("no port for the fake Desk: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("no address for the fake Desk: {err}"));
        let app = Router::new()
            .route("/v4/desk_http_svc/{command}", post(handle))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDesk {
            addr,
            state,
            server,
        }
    }

    /// Where it listens, as `[apps.desk] api` takes it: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address, for sending it hand-made requests.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with<T>(&self, change: impl FnOnce(&mut Desk) -> T) -> T {
        change(&mut lock(&self.state))
    }

    /// The member groups: (id, name, reception limit).
    pub fn set_groups(&self, groups: Vec<(u64, &str, u32)>) {
        self.with(|desk| {
            desk.groups = groups
                .into_iter()
                .map(|(id, name, limit)| (id, name.to_owned(), limit))
                .collect();
        });
    }

    /// Adds member `mail`, or changes it in place (keeping its creation order): its nick
    /// name, groups and effective reception limit.
    pub fn set_member(&self, mail: &str, nick: &str, groups: &[u64], limit: u32) {
        let member = Member {
            mail: mail.to_owned(),
            nick: nick.to_owned(),
            groups: groups.to_vec(),
            limit,
        };
        self.with(
            |desk| match desk.members.iter_mut().find(|m| m.mail == mail) {
                Some(known) => *known = member,
                None => desk.members.push(member),
            },
        );
    }

    /// Deletes member `mail`, and its row of live statistics with it.
    pub fn remove_member(&self, mail: &str) {
        self.with(|desk| {
            desk.members.retain(|m| m.mail != mail);
            desk.live.retain(|(live, ..)| live != mail);
        });
    }

    /// Member `mail`'s row of `describe_member_realtime_statistics`: its `MemberStatus`
    /// and `CurrentAcceptCnt`. Only members given a row are listed there.
    pub fn set_live(&self, mail: &str, status: i64, serving: u32) {
        self.with(
            |desk| match desk.live.iter_mut().find(|(m, ..)| m == mail) {
                Some(row) => *row = (mail.to_owned(), status, serving),
                None => desk.live.push((mail.to_owned(), status, serving)),
            },
        );
    }

    /// The sessions queued in all (`CurrentQueueCnt`) and per group.
    pub fn set_queue(&self, total: u32, by_group: &[(u64, u32)]) {
        self.with(|desk| {
            desk.queued = total;
            desk.queued_by_group = by_group.to_vec();
        });
    }

    /// The default conversation setting's name and working hours: days (`"Monday"`) with
    /// their periods (`("09:00", "11:30")`).
    pub fn set_work_time(&self, name: &str, days: &[(&str, &[(&str, &str)])]) {
        let days = days
            .iter()
            .map(|(day, periods)| {
                let periods = periods
                    .iter()
                    .map(|(start, end)| ((*start).to_owned(), (*end).to_owned()))
                    .collect();
                ((*day).to_owned(), periods)
            })
            .collect();
        self.with(|desk| desk.work_time = Some((name.to_owned(), days)));
    }

    /// The next `times` calls of `command` (past the envelope checks) answer `code`.
    pub fn fail_next(&self, command: &str, code: i64, times: usize) {
        self.with(|desk| desk.failing.insert(command.to_owned(), (code, times)));
    }

    /// The secret key UserSigs are checked against: another than the client's is a
    /// rotated or mistyped key.
    pub fn set_key(&self, key: &str) {
        self.with(|desk| desk.key = key.to_owned());
    }

    /// The most rows a page holds, whatever the client asks (100 at first).
    pub fn set_max_page(&self, rows: usize) {
        self.with(|desk| desk.max_page = rows.max(1));
    }

    /// How many requests came for `command`, whatever they were answered.
    pub fn calls(&self, command: &str) -> usize {
        self.with(|desk| desk.calls.get(command).copied().unwrap_or_default())
    }

    /// What `set_member_status` set, in order: (mail, status).
    pub fn set_statuses(&self) -> Vec<(String, String)> {
        self.with(|desk| desk.statuses.clone())
    }

    /// The non-zero `ErrorCode`s answered, in order.
    pub fn refused(&self) -> Vec<i64> {
        self.with(|desk| desk.refused.clone())
    }
}

async fn handle(
    State(state): State<Arc<Mutex<Desk>>>,
    Path(command): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], String) {
    let mut desk = lock(&state);
    *desk.calls.entry(command.clone()).or_default() += 1;
    let answer = desk.answer(&command, &query, &body).unwrap_or_else(|e| e);
    if let Some(code) = answer["ErrorCode"].as_i64().filter(|code| *code != 0) {
        desk.refused.push(code);
    }
    ([("content-type", "application/json")], answer.to_string())
}

/// The state, even after a test panicked holding it: what it says is still what was set.
fn lock(state: &Mutex<Desk>) -> MutexGuard<'_, Desk> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A failed answer, as Desk writes one.
fn fail(code: i64, info: &str) -> Value {
    json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
}

/// A successful answer holding `fields`.
fn ok(fields: Value) -> Value {
    let mut answer = json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""});
    if let (Some(answer), Value::Object(fields)) = (answer.as_object_mut(), fields) {
        answer.extend(fields);
    }
    answer
}

fn bad_params() -> Value {
    fail(141004, "bad params")
}

impl Desk {
    /// The answer to `command`, or the refusal standing in for it.
    fn answer(
        &mut self,
        command: &str,
        query: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<Value, Value> {
        self.envelope(query)?;
        let body: Value =
            serde_json::from_slice(body).map_err(|_| fail(60003, "JSON parse error"))?;
        if let Some((code, left)) = self.failing.get_mut(command)
            && *left > 0
        {
            *left -= 1;
            return Err(fail(*code, "failing as the test asked"));
        }
        match command {
            "get_member_group_list" => self.groups(&body),
            "get_member_list" => self.members(&body),
            "describe_member_realtime_statistics" => self.live(&body),
            "describe_reception_realtime_statistics" => Ok(self.reception()),
            "get_channel_specific_conversation_settings" => self.settings(&body),
            "set_member_status" => self.set_status(&body),
            _ => Err(fail(60009, "no such command")),
        }
    }

    /// Checks the query every command carries, the UserSig verified against the key.
    fn envelope(&self, query: &HashMap<String, String>) -> Result<(), Value> {
        let get = |name: &str| query.get(name).map(String::as_str);
        if get("contenttype") != Some("json") {
            return Err(fail(60002, "contenttype must be json"));
        }
        get("random")
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or_else(|| fail(60002, "random must be a 32-bit unsigned integer"))?;
        let app: u64 = get("sdkappid")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| fail(60012, "no SDKAppID"))?;
        if app != self.sdk_app_id {
            return Err(fail(70020, "SDKAppID not found"));
        }
        let identifier = get("identifier").ok_or_else(|| fail(60004, "no identifier"))?;
        if identifier != self.admin {
            return Err(fail(60010, "identifier must be an App admin"));
        }
        let usersig = get("usersig").ok_or_else(|| fail(60004, "no usersig"))?;
        verify(usersig, &self.key, app, identifier, now_secs())
            .map_err(|code| fail(code, "UserSig refused"))
    }

    fn groups(&self, body: &Value) -> Result<Value, Value> {
        let (page, size) =
            self.page_number(body, "PageNumber", &["PageSize", "PageNumber"], (100, 100))?;
        let rows: Vec<Value> = rows_from(&self.groups, page * size, size)
            .iter()
            .map(|(id, name, limit)| {
                let members = self.members.iter().filter(|m| m.groups.contains(id)).count();
                json!({"MemberGroupID": id, "MemberGroupName": name, "ReceptionLimit": limit, "GroupMemberCount": members})
            })
            .collect();
        Ok(ok(
            json!({"MemberGroupList": rows, "Total": self.groups.len()}),
        ))
    }

    fn members(&self, body: &Value) -> Result<Value, Value> {
        let (page, size) = self.page_number(
            body,
            "PageNum",
            &["PageSize", "PageNum", "Order"],
            (15, 100),
        )?;
        if body.get("PageSize").is_none() {
            return Err(bad_params());
        }
        let mut members: Vec<&Member> = self.members.iter().collect();
        match body.get("Order").map(Value::as_u64) {
            None | Some(Some(0)) => {}
            Some(Some(1)) => members.reverse(),
            Some(_) => return Err(bad_params()),
        }
        let rows: Vec<Value> = rows_from(&members, page * size, size)
            .iter()
            .map(|m| {
                json!({
                    "NickName": m.nick,
                    "MemberMail": m.mail,
                    "RoleIDList": [5],
                    "MemberGroupIDList": m.groups,
                    "EffectiveReceptionLimit": m.limit,
                    "MemberReceptionLimit": m.limit,
                    "MemberReceptionLimitEnabled": 1,
                    "Avatar": ""
                })
            })
            .collect();
        Ok(ok(json!({"MemberList": rows, "Total": self.members.len()})))
    }

    fn live(&self, body: &Value) -> Result<Value, Value> {
        only(
            body,
            &["Limit", "Offset", "MemberIds", "ConversationSources"],
        )?;
        let offset = field(body, "Offset")?.ok_or_else(bad_params)?;
        let limit = field(body, "Limit")?.unwrap_or(100);
        if limit > 100 {
            return Err(bad_params());
        }
        let size = limit.min(self.max_page as u64);
        let rows: Vec<Value> = rows_from(&self.live, offset, size)
            .iter()
            .map(|(mail, status, serving)| {
                let nick = self
                    .members
                    .iter()
                    .find(|m| &m.mail == mail)
                    .map(|m| m.nick.as_str());
                json!({
                    "MemberId": mail,
                    "MemberNickName": nick.unwrap_or_default(),
                    "MemberStatus": status,
                    "CurrentAcceptCnt": serving,
                    "TotalSessionCnt": serving,
                    "AvgFirstRespTime": 0,
                    "AvgRespTime": 0,
                    "AvgAcceptTime": 0
                })
            })
            .collect();
        Ok(ok(json!({"TotalCount": self.live.len(), "Data": rows})))
    }

    /// The floor's load: the queue as set, those serving summed from the live rows; the
    /// status head counts stay 0, since what each `MemberStatus` means is not documented.
    fn reception(&self) -> Value {
        let by_group: Vec<Value> = self
            .queued_by_group
            .iter()
            .map(|(group, queued)| {
                let name = self
                    .groups
                    .iter()
                    .find(|(id, ..)| id == group)
                    .map(|(_, name, _)| name.as_str());
                json!({"GroupId": group, "GroupName": name.unwrap_or_default(), "QueueCnt": queued})
            })
            .collect();
        let serving: u32 = self.live.iter().map(|(_, _, serving)| serving).sum();
        ok(json!({"Data": {
            "CurrentTransferAgentCnt": 0,
            "CurrentAgentAcceptCnt": serving,
            "CurrentQueueCnt": self.queued,
            "FreeAgentCnt": 0,
            "RestAgentCnt": 0,
            "BusyAgentCnt": 0,
            "CurrentGroupQueueCnt": by_group
        }}))
    }

    /// The one, default, conversation setting: with `WorkTimeConfig` once hours are set.
    fn settings(&self, body: &Value) -> Result<Value, Value> {
        let allowed = ["PageNumber", "PageSize", "ConversationSettingIdList"];
        let (page, size) = self.page_number(body, "PageNumber", &allowed, (10, 10))?;
        let mut language =
            json!({"WelcomeMessage": "您好,请问有什么可以帮您?", "UserTimeout": 300});
        let name = match &self.work_time {
            None => "默认会话配置".to_owned(),
            Some((name, days)) => {
                let periods: Vec<Value> = days
                    .iter()
                    .map(|(day, periods)| {
                        let within: Vec<Value> = periods
                            .iter()
                            .map(|(start, end)| json!({"Start": start, "End": end}))
                            .collect();
                        json!({"Day": day, "PeriodsWithinOneDay": within})
                    })
                    .collect();
                language["WorkTimeConfig"] = json!({"Type": 1, "Periods": periods});
                name.clone()
            }
        };
        let all = [json!({
            "ConversationSettingId": 10001,
            "Name": name,
            "IsDefault": 1,
            "MultilingualSettings": {"zh": language}
        })];
        let rows = rows_from(&all, page * size, size);
        Ok(ok(json!({"TotalCount": all.len(), "Data": rows})))
    }

    fn set_status(&mut self, body: &Value) -> Result<Value, Value> {
        only(body, &["MemberMail", "Status", "RestReason"])?;
        let (Some(mail), Some(status)) = (body["MemberMail"].as_str(), body["Status"].as_str())
        else {
            return Err(bad_params());
        };
        if !["STATUS_FREE", "STATUS_NOT_READY", "STATUS_REST"].contains(&status) {
            return Err(bad_params());
        }
        if !self.members.iter().any(|m| m.mail == mail) {
            return Err(fail(141010, "no such member"));
        }
        self.statuses.push((mail.to_owned(), status.to_owned()));
        Ok(ok(json!({})))
    }

    /// The page (from 0, read from `param`) of a page-numbered listing and the rows a page
    /// holds: as asked in `PageSize` (`default` when absent or 0, refused above `max`),
    /// but never more than `max_page`; any field but `allowed` refused.
    fn page_number(
        &self,
        body: &Value,
        param: &str,
        allowed: &[&str],
        (default, max): (u64, u64),
    ) -> Result<(u64, u64), Value> {
        only(body, allowed)?;
        let page = field(body, param)?.ok_or_else(bad_params)?;
        let size = match field(body, "PageSize")? {
            None | Some(0) => default,
            Some(size) if size > max => return Err(bad_params()),
            Some(size) => size,
        };
        Ok((page, size.min(self.max_page as u64)))
    }
}

/// `size` rows of `all` from `offset`, fewer at the end.
fn rows_from<T: Clone>(all: &[T], offset: u64, size: u64) -> Vec<T> {
    all.iter()
        .skip(offset as usize)
        .take(size as usize)
        .cloned()
        .collect()
}

/// Refuses a body that is not an object of `allowed` fields: a misspelt paging field
/// must not pass as "use the default".
fn only(body: &Value, allowed: &[&str]) -> Result<(), Value> {
    let fields = body.as_object().ok_or_else(bad_params)?;
    match fields.keys().all(|k| allowed.contains(&k.as_str())) {
        true => Ok(()),
        false => Err(bad_params()),
    }
}

/// Unsigned integer field `name`, if present.
fn field(body: &Value, name: &str) -> Result<Option<u64>, Value> {
    match body.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(bad_params),
    }
}

// The UserSig verifier: Tencent's TLSSigAPIv2 read back, written apart from handoff's own.

/// Checks `usersig` as Desk does, or says the code it refuses it with: 70003 unreadable,
/// 70014 another app, 70013 another account, 70001 expired, 70009 a signature not made
/// with `key`.
pub fn verify(usersig: &str, key: &str, app: u64, identifier: &str, now: u64) -> Result<(), i64> {
    let standard: String = usersig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let compressed = STANDARD.decode(standard).map_err(|_| 70003)?;
    let json = inflate_stored(&compressed).ok_or(70003)?;
    let token: Value = serde_json::from_slice(&json).map_err(|_| 70003)?;
    let (Some(token_app), Some(token_identifier), Some(time), Some(expire), Some(signature)) = (
        token["TLS.sdkappid"].as_u64(),
        token["TLS.identifier"].as_str(),
        token["TLS.time"].as_u64(),
        token["TLS.expire"].as_u64(),
        token["TLS.sig"].as_str(),
    ) else {
        return Err(70003);
    };
    if token_app != app {
        return Err(70014);
    }
    if token_identifier != identifier {
        return Err(70013);
    }
    if now > time + expire {
        return Err(70001);
    }
    let signed = format!(
        "TLS.identifier:{token_identifier}\nTLS.sdkappid:{token_app}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if STANDARD.encode(hmac_sha256(key.as_bytes(), signed.as_bytes())) != signature {
        return Err(70009);
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The data of a zlib stream (RFC 1950) made of stored deflate blocks (RFC 1951 §3.2.4),
/// its Adler-32 checked; `None` when it is not one. Tencent's Go library and handoff
/// write stored blocks; a compressed block is beyond this fake, and says so loudly.
pub fn inflate_stored(stream: &[u8]) -> Option<Vec<u8>> {
    let (&[cmf, flg], mut rest) = stream.split_first_chunk::<2>()?;
    if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 || flg & 0x20 != 0 {
        return None;
    }
    let mut data = Vec::new();
    loop {
        // A stored block's 3 header bits are followed by padding to the byte, so each
        // block starts on a byte of its own.
        let (&header, after) = rest.split_first()?;
        let btype = (header >> 1) & 0b11;
        assert!(
            btype == 0,
            "the fake Desk inflates only stored (BTYPE=00) zlib blocks, and this UserSig has a BTYPE={btype:02b} block"
        );
        let (&[len_lo, len_hi, nlen_lo, nlen_hi], after) = after.split_first_chunk::<4>()?;
        let len = u16::from_le_bytes([len_lo, len_hi]);
        if len != !u16::from_le_bytes([nlen_lo, nlen_hi]) {
            return None;
        }
        let (block, after) = after.split_at_checked(usize::from(len))?;
        data.extend_from_slice(block);
        rest = after;
        if header & 1 == 1 {
            break;
        }
    }
    let (a, b) = data.iter().fold((1u32, 0u32), |(a, b), &byte| {
        let a = (a + u32::from(byte)) % 65_521;
        (a, (b + a) % 65_521)
    });
    (rest == ((b << 16) | a).to_be_bytes()).then_some(data)
}

/// The fake against handoff's own client: both sides speak the same envelope.
mod tests {
    use std::time::Duration;

    use handoff_core::config::Secret;
    use handoff_router::desk::{
        api::{DeskError, Endpoint},
        client::{DeskClient, WorkTime},
        usersig::{self, Claims},
    };

    use super::*;
    use crate::support::{self, TestResult};

    const APP: u64 = 1_400_000_001;
    const ADMIN: &str = "administrator";
    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    fn client(desk: &FakeDesk) -> Result<DeskClient, DeskError> {
        let endpoint = Endpoint {
            api: desk.url(),
            sdk_app_id: APP,
            admin: ADMIN.to_owned(),
        };
        DeskClient::new(endpoint, Secret::new(KEY), Duration::from_secs(5))
    }

    #[tokio::test]
    async fn the_client_pages_every_listing_through_small_pages() -> TestResult {
        let desk = FakeDesk::start(APP, ADMIN, KEY).await;
        desk.set_max_page(2);
        desk.set_groups(vec![
            (6521, "general", 3),
            (6522, "vip", 1),
            (6523, "night", 2),
        ]);
        let mails = [
            "ann@example.com",
            "bob@example.com",
            "cy@example.com",
            "dee@example.com",
            "eve@example.com",
        ];
        for (n, mail) in mails.iter().enumerate() {
            desk.set_member(mail, &format!("agent {n}"), &[6521], n as u32);
        }
        desk.set_member("bob@example.com", "Bob", &[6521, 6522], 4);
        desk.remove_member("eve@example.com");
        for mail in &mails[..3] {
            desk.set_live(mail, 1, 2);
        }
        desk.set_queue(4, &[(6521, 3), (6522, 1)]);
        desk.set_work_time(
            "weekdays",
            &[("Monday", &[("09:00", "12:00"), ("13:00", "18:00")])],
        );
        let client = client(&desk)?;

        let groups = client.groups().await?;
        assert_eq!(
            groups.iter().map(|g| g.id).collect::<Vec<_>>(),
            [6521, 6522, 6523]
        );
        assert_eq!(desk.calls("get_member_group_list"), 2);

        let members = client.members().await?;
        let listed: Vec<&str> = members.iter().map(|m| m.mail.as_str()).collect();
        assert_eq!(listed, &mails[..4]);
        assert_eq!(
            (members[1].nick_name.as_str(), members[1].effective_limit),
            ("Bob", 4)
        );
        assert_eq!(members[1].groups, [6521, 6522]);
        assert_eq!(desk.calls("get_member_list"), 2);

        let live = client.realtime().await?;
        assert_eq!(live.len(), 3);
        assert_eq!(desk.calls("describe_member_realtime_statistics"), 2);

        let reception = client.reception().await?;
        assert_eq!((reception.queued, reception.serving), (4, 6));
        assert_eq!(reception.queued_by_group, [(6521, 3), (6522, 1)]);

        let hours = client.work_time().await?;
        let period = |start: &str, end: &str| (start.to_owned(), end.to_owned());
        assert_eq!(
            hours,
            Some(WorkTime {
                setting: "weekdays".into(),
                kind: 1,
                days: vec![(
                    "Monday".into(),
                    vec![period("09:00", "12:00"), period("13:00", "18:00")]
                )],
            })
        );

        client
            .set_member_status("bob@example.com", "STATUS_REST")
            .await?;
        let unknown = client
            .set_member_status("eve@example.com", "STATUS_FREE")
            .await;
        assert!(
            matches!(unknown, Err(DeskError::Failed { code: 141010, .. })),
            "{unknown:?}"
        );
        assert_eq!(
            desk.set_statuses(),
            [("bob@example.com".to_owned(), "STATUS_REST".to_owned())]
        );
        assert_eq!(desk.refused(), [141010]);
        Ok(())
    }

    #[tokio::test]
    async fn the_fake_refuses_a_paging_field_it_does_not_know() -> TestResult {
        let desk = FakeDesk::start(APP, ADMIN, KEY).await;
        desk.set_groups(vec![(6521, "general", 3)]);
        let client = client(&desk)?;
        // get_member_group_list pages by PageNumber; PageNum is get_member_list's.
        let wrong = client
            .call(
                "get_member_group_list",
                &json!({"PageSize": 100, "PageNum": 0}),
            )
            .await;
        assert!(
            matches!(wrong, Err(DeskError::Failed { code: 141004, .. })),
            "{wrong:?}"
        );
        let right = client
            .call(
                "get_member_group_list",
                &json!({"PageSize": 100, "PageNumber": 0}),
            )
            .await?;
        assert_eq!(right["Total"], 1);
        assert_eq!(desk.refused(), [141004]);
        Ok(())
    }

    #[tokio::test]
    async fn a_key_the_fake_does_not_hold_is_bad_credentials() -> TestResult {
        let desk = FakeDesk::start(APP, ADMIN, KEY).await;
        let client = client(&desk)?;
        client.groups().await?;
        desk.set_key("a rotated key");
        let refused = client.groups().await;
        assert!(
            matches!(refused, Err(DeskError::BadCredentials { code: 70009, .. })),
            "{refused:?}"
        );
        assert_eq!(desk.refused(), [70009]);
        Ok(())
    }

    #[tokio::test]
    async fn a_rate_limit_passes_once_the_fake_stops_failing() -> TestResult {
        let desk = FakeDesk::start(APP, ADMIN, KEY).await;
        desk.set_member("ann@example.com", "Ann", &[6521], 2);
        desk.fail_next("get_member_list", 141009, 1);
        let client = client(&desk)?;
        let limited = client.members().await;
        assert!(
            matches!(limited, Err(DeskError::RateLimited { code: 141009, .. })),
            "{limited:?}"
        );
        assert_eq!(client.members().await?.len(), 1);
        assert_eq!(desk.calls("get_member_list"), 2);
        assert_eq!(desk.refused(), [141009]);
        Ok(())
    }

    #[tokio::test]
    async fn forged_usersigs_get_tencents_codes() -> TestResult {
        let desk = FakeDesk::start(APP, ADMIN, KEY).await;
        let now = now_secs();
        let claims = |app: u64, identifier: &str, time: u64| Claims {
            sdk_app_id: app,
            identifier: identifier.to_owned(),
            time,
            expire: 86_400,
        };
        let cases = [
            (usersig::mint(KEY, &claims(APP, ADMIN, now)), 0),
            (
                usersig::mint("another key", &claims(APP, ADMIN, now)),
                70009,
            ),
            (
                usersig::mint(KEY, &claims(APP, ADMIN, now - 2 * 86_400)),
                70001,
            ),
            (usersig::mint(KEY, &claims(APP, "mallory", now)), 70013),
            (usersig::mint(KEY, &claims(APP + 1, ADMIN, now)), 70014),
            ("not-a-usersig".to_owned(), 70003),
        ];
        let endpoint = Endpoint {
            api: String::new(),
            sdk_app_id: APP,
            admin: ADMIN.to_owned(),
        };
        for (token, code) in cases {
            let url = endpoint.url("describe_reception_realtime_statistics", &token, 7);
            let reply = support::request(desk.addr(), "POST", &url, "{}".to_owned()).await?;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.json["ErrorCode"], code, "{token}: {:?}", reply.json);
        }
        Ok(())
    }

    #[test]
    fn the_verifier_reads_stored_zlib_and_refuses_a_broken_one() {
        // "abc" in one final stored block, then its Adler-32.
        let stream = [
            0x78, 0x01, 0x01, 0x03, 0x00, 0xfc, 0xff, b'a', b'b', b'c', 0x02, 0x4d, 0x01, 0x27,
        ];
        assert_eq!(inflate_stored(&stream), Some(b"abc".to_vec()));
        let mut corrupt = stream;
        corrupt[8] = b'x';
        assert_eq!(inflate_stored(&corrupt), None);
    }

    #[test]
    #[should_panic(expected = "only stored (BTYPE=00)")]
    fn the_verifier_says_it_cannot_read_compressed_blocks() {
        // zlib.compress(b"a"): one fixed-Huffman block.
        inflate_stored(&[0x78, 0x9c, 0x4b, 0x04, 0x00, 0x00, 0x62, 0x00, 0x62]);
    }
}
