//! The gateway under slow, idle, crowding and oversized clients, and through a shutdown
//! under keep-alive load: the `handoff` binary, spoken to over raw TCP.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    support::{Error, TestResult, body, now_secs, request, signed_uri},
    traces::{Process, field, memory_config, own_ports, spawn},
};

/// The all-in-one on the tests' config with `extra` settings; its gateway's address.
fn start(name: &str, extra: &[(&'static str, String)]) -> Result<(Process, SocketAddr), Error> {
    let config = std::env::temp_dir().join(format!(
        "handoff-connections-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&config, memory_config())?;
    let started = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &own_ports(extra));
    let _ = std::fs::remove_file(&config);
    let (process, line) = started?;
    let gateway = field(&line, "gateway")?.parse()?;
    Ok((process, gateway))
}

/// A signed callback as raw HTTP/1.1.
pub(crate) fn callback(session: &str, close: bool) -> Vec<u8> {
    let body = body(session);
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "POST {} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{body}",
        signed_uri(now_secs()),
        body.len()
    )
    .into_bytes()
}

/// One response read off `stream`: its head and body; `None` if the connection closed first.
pub(crate) async fn response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<(String, Vec<u8>)>, Error> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(Some((head, body)))
}

/// Whether the server closed `stream` within `within` (EOF or reset), reading whatever it
/// sent first.
pub(crate) async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// A callback through the gateway answered 200 with `ActionStatus` OK.
async fn answered(gateway: SocketAddr, session: &str) -> TestResult {
    let reply = request(gateway, "POST", &signed_uri(now_secs()), body(session)).await?;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["ActionStatus"], "OK", "{:?}", reply.json);
    Ok(())
}

#[tokio::test]
async fn slow_and_idle_connections_are_cut_off_while_valid_callbacks_keep_answering() -> TestResult
{
    let (_gateway, addr) = start(
        "slow",
        &[("HANDOFF__GATEWAY__HEADER_TIMEOUT", "1s".to_owned())],
    )?;
    // 500 clients that never finish their headers, and 20 that never send anything.
    let mut slow = Vec::new();
    for n in 0..520 {
        let mut stream = TcpStream::connect(addr).await?;
        if n < 500 {
            stream
                .write_all(b"POST /tencent/callback HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
                .await?;
        }
        slow.push(stream);
    }
    for n in 0..20 {
        answered(addr, &format!("slow-{n}")).await?;
    }
    let mut waits = tokio::task::JoinSet::new();
    for mut stream in slow {
        waits.spawn(async move { closed_within(&mut stream, Duration::from_secs(3)).await });
    }
    let mut still_open = 0;
    while let Some(closed) = waits.join_next().await {
        still_open += usize::from(!closed.unwrap_or(false));
    }
    assert_eq!(still_open, 0, "connections outlived the header timeout");
    answered(addr, "after").await
}

/// The gateway's counter of refusals for `reason`, read off `/metrics`.
async fn refusals(gateway: SocketAddr, reason: &str) -> Result<u64, Error> {
    let mut stream = TcpStream::connect(gateway).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        .await?;
    let (_, metrics) = response(&mut stream).await?.ok_or("no metrics")?;
    let metrics = String::from_utf8(metrics)?;
    let prefix = format!("handoff_gateway_refusals_total{{reason=\"{reason}\"}} ");
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|count| count.parse().ok())
        .unwrap_or_default())
}

#[tokio::test]
async fn idle_sockets_holding_every_slot_make_room_oldest_first_busy_ones_do_not() -> TestResult {
    let (_gateway, addr) = start(
        "cap",
        &[
            ("HANDOFF__GATEWAY__MAX_CONNECTIONS", "8".to_owned()),
            ("HANDOFF__GATEWAY__HEADER_TIMEOUT", "30s".to_owned()),
        ],
    )?;
    // One client holds every slot with sockets that never send a byte.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Valid callbacks still get in, each on a connection it keeps: each closes the socket
    // idle longest.
    let mut kept = Vec::new();
    for n in 0..3 {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&callback(&format!("room-{n}"), false))
            .await?;
        let (head, _) = response(&mut stream).await?.ok_or("closed unanswered")?;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        kept.push(stream);
    }
    for (n, stream) in held.iter_mut().enumerate() {
        let closed = closed_within(stream, Duration::from_millis(300)).await;
        assert_eq!(closed, n < 3, "held socket {n}");
    }
    assert!(refusals(addr, "idle_evicted").await? >= 3);
    drop((held, kept));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Eight requests whose bodies are still coming: busy, so none makes room, and a ninth
    // connection is closed on arrival.
    let mut busy = Vec::new();
    for n in 0..8 {
        let mut stream = TcpStream::connect(addr).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{",
            signed_uri(now_secs())
        );
        stream.write_all(head.as_bytes()).await?;
        busy.push(stream);
        if n == 7 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let refused = refused_on_arrival(addr, &mut busy).await?;
    assert!(
        refused,
        "a ninth connection was served while every slot was busy"
    );
    drop(busy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(refusals(addr, "max_connections").await? >= 1);
    Ok(())
}

/// Whether a ninth connection is closed unanswered while `busy` hold every slot.
async fn refused_on_arrival(addr: SocketAddr, busy: &mut [TcpStream]) -> Result<bool, Error> {
    let mut ninth = TcpStream::connect(addr).await?;
    // Closed before its request was read, the write may fail too.
    let _ = ninth.write_all(&callback("ninth", true)).await;
    let answer = tokio::time::timeout(Duration::from_millis(800), response(&mut ninth)).await;
    let closed = matches!(answer, Ok(Ok(None)));
    // The busy ones are still being read (their bodies are due by the deadline).
    for stream in busy.iter_mut() {
        let _ = stream.write_all(b" ").await;
    }
    Ok(closed)
}

/// The gateway's resident memory, bytes.
fn resident(process: &Process) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.id()))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kib * 1024)
}

#[tokio::test]
async fn endless_headers_are_cut_off_and_memory_stays_bounded() -> TestResult {
    let (gateway, addr) = start(
        "endless",
        &[("HANDOFF__GATEWAY__HEADER_TIMEOUT", "5s".to_owned())],
    )?;
    answered(addr, "warm-up").await?;
    let before = resident(&gateway)?;
    // 1,000 clients each try to send 256 KiB of one header, never ending it.
    let header = format!("X-Endless: {}", "a".repeat(256 * 1024));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let header = header.clone();
        writers.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return false;
            };
            let _ = stream
                .write_all(b"POST /tencent/callback HTTP/1.1\r\nHost: gateway\r\n")
                .await;
            // The gateway stops reading and closes at its limit: the write fails.
            let cut = stream.write_all(header.as_bytes()).await.is_err();
            cut || closed_within(&mut stream, Duration::from_secs(3)).await
        });
    }
    let mut cut = 0;
    while let Some(result) = writers.join_next().await {
        cut += usize::from(result.unwrap_or(false));
    }
    let after = resident(&gateway)?;
    answered(addr, "after-endless").await?;
    assert_eq!(cut, 1_000, "every endless header was cut off");
    // 256 MiB was sent; what may be held is a bounded buffer per connection.
    let grown = after.saturating_sub(before);
    assert!(grown < 64 << 20, "the gateway grew by {} MiB", grown >> 20);
    Ok(())
}

#[tokio::test]
async fn oversized_heads_get_tencent_shaped_errors() -> TestResult {
    let (_gateway, addr) = start("oversized", &[])?;
    let send = |head: String| async move {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(head.as_bytes()).await?;
        let (head, body) = response(&mut stream).await?.ok_or("closed unanswered")?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        Ok::<_, Error>((head, json))
    };
    let big_header = format!(
        "POST /tencent/callback HTTP/1.1\r\nHost: gateway\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "b".repeat(20 * 1024)
    );
    let (head, json) = send(big_header).await?;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(json["ActionStatus"], "FAIL");
    assert_eq!(json["ErrorCode"], 1009);
    let long_uri = format!(
        "POST /tencent/callback?{} HTTP/1.1\r\nHost: gateway\r\nContent-Length: 0\r\n\r\n",
        "q=1&".repeat(2_500)
    );
    let (head, json) = send(long_uri).await?;
    assert!(head.starts_with("HTTP/1.1 414"), "{head}");
    assert_eq!(json["ErrorCode"], 1008);
    // Past what the gateway reads at all, and bytes that are not HTTP: hyper refuses them
    // itself, and the answer is still Tencent-shaped.
    let endless = format!(
        "POST /tencent/callback HTTP/1.1\r\nHost: gateway\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70 * 1024)
    );
    let (head, json) = send(endless).await?;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(json["ErrorCode"], 1009, "{json}");
    let (head, json) = send("GARBAGE\r\n\r\n".to_owned()).await?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(json["ActionStatus"], "FAIL");
    assert_eq!(json["ErrorCode"], 1001, "{json}");
    Ok(())
}

#[tokio::test]
async fn sigterm_under_keep_alive_load_drops_no_request() -> TestResult {
    let (gateway, addr) = start("sigterm", &[])?;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        clients.spawn(async move {
            // (requests written, answered, answers that closed their connection)
            let (mut sent, mut answered, mut closes) = (0u32, 0u32, 0u32);
            'connections: while let Ok(mut stream) = TcpStream::connect(addr).await {
                loop {
                    let session = format!("ka-{client}-{sent}");
                    if stream.write_all(&callback(&session, false)).await.is_err() {
                        continue 'connections;
                    }
                    sent += 1;
                    match response(&mut stream).await {
                        Ok(Some((head, _))) => {
                            answered += 1;
                            if head.to_ascii_lowercase().contains("connection: close") {
                                closes += 1;
                                continue 'connections;
                            }
                        }
                        _ => break 'connections,
                    }
                }
            }
            (sent, answered, closes)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()?;
    assert!(status.success());
    let (mut sent, mut answered, mut closes) = (0, 0, 0);
    while let Some(result) = clients.join_next().await {
        let (s, a, c) = result?;
        (sent, answered, closes) = (sent + s, answered + a, closes + c);
    }
    assert!(sent > 8, "the clients sent {sent}");
    assert_eq!(answered, sent, "requests written but never answered");
    assert!(closes >= 8, "each client was told to close: {closes}");
    Ok(())
}

/// A router that takes connections and never answers.
async fn hung_router() -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(addr)
}

/// The gateway alone, asking `router`, with `extra` settings.
fn gateway_asking(
    name: &str,
    router: SocketAddr,
    extra: &[(&'static str, String)],
) -> Result<(Process, SocketAddr), Error> {
    let config = std::env::temp_dir().join(format!(
        "handoff-connections-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&config, memory_config())?;
    let mut env = own_ports(extra);
    env.push(("HANDOFF__GATEWAY__ROUTER_URL", format!("http://{router}")));
    let started = spawn(env!("CARGO_BIN_EXE_handoff-gateway"), &config, &env);
    let _ = std::fs::remove_file(&config);
    let (process, line) = started?;
    Ok((process, field(&line, "gateway")?.parse()?))
}

#[tokio::test]
async fn a_slow_upload_and_a_hung_router_are_answered_within_the_deadline() -> TestResult {
    let router = hung_router().await?;
    let (_gateway, addr) = gateway_asking(
        "deadline",
        router,
        &[
            ("HANDOFF__GATEWAY__DEADLINE", "1500ms".to_owned()),
            ("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "1s".to_owned()),
        ],
    )?;
    let request = callback("uploaded-slowly", true);
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?
        + 4;
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request[..split]).await?;
    let arrived = std::time::Instant::now();
    // The body trickles in over 1.2 s; the router then has 0.3 s of the 1.5 s left, not
    // its own full second.
    let body = &request[split..];
    for chunk in body.chunks(body.len().div_ceil(12)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(chunk).await?;
    }
    let (head, body) = response(&mut stream).await?.ok_or("closed unanswered")?;
    let took = arrived.elapsed();
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(json["AgentGroupId"], 9000, "the fallback group: {json}");
    assert!(
        took < Duration::from_millis(1900),
        "answered {took:?} after arriving: past the deadline"
    );
    Ok(())
}

#[tokio::test]
async fn once_the_router_is_known_down_callbacks_get_the_fallback_at_once() -> TestResult {
    let router = hung_router().await?;
    let (_gateway, addr) = gateway_asking(
        "breaker",
        router,
        &[("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "400ms".to_owned())],
    )?;
    // Five callbacks each wait out the router's timeout...
    let mut waiting = tokio::task::JoinSet::new();
    for n in 0..5 {
        waiting.spawn(request(
            addr,
            "POST",
            signed_uri(now_secs()).leak(),
            body(&format!("hung-{n}")),
        ));
    }
    while let Some(reply) = waiting.join_next().await {
        assert_eq!(reply??.json["AgentGroupId"], 9000);
    }
    // ...then the next is answered without asking.
    let started = std::time::Instant::now();
    let reply = request(addr, "POST", &signed_uri(now_secs()), body("after-five")).await?;
    let took = started.elapsed();
    assert_eq!(reply.json["AgentGroupId"], 9000, "{:?}", reply.json);
    assert!(
        took < Duration::from_millis(200),
        "waited {took:?}: the router was asked again"
    );
    Ok(())
}

#[tokio::test]
async fn callbacks_beyond_max_in_flight_are_shed_to_the_fallback_at_once() -> TestResult {
    let router = hung_router().await?;
    let (_gateway, addr) = gateway_asking(
        "shed",
        router,
        &[
            ("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "1s".to_owned()),
            ("HANDOFF__GATEWAY__MAX_IN_FLIGHT", "1".to_owned()),
        ],
    )?;
    // One callback takes the only room and waits for the hung router...
    let waiting = tokio::spawn(request(
        addr,
        "POST",
        signed_uri(now_secs()).leak(),
        body("holds-the-room"),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...the next is answered with the fallback group without waiting for anything.
    let started = std::time::Instant::now();
    let reply = request(addr, "POST", &signed_uri(now_secs()), body("shed")).await?;
    let took = started.elapsed();
    assert_eq!(reply.json["AgentGroupId"], 9000, "{:?}", reply.json);
    assert!(took < Duration::from_millis(500), "waited {took:?}");
    assert_eq!(waiting.await??.json["AgentGroupId"], 9000);
    Ok(())
}

/// A callback over raw TCP carrying `X-Forwarded-For: forwarded` when given; the status
/// line and the answer.
async fn from(
    gateway: SocketAddr,
    forwarded: Option<&str>,
) -> Result<(String, serde_json::Value), Error> {
    let mut request = String::from_utf8(callback("forwarded", true))?;
    if let Some(forwarded) = forwarded {
        request = request.replacen(
            "Host: gateway\r\n",
            &format!("Host: gateway\r\nX-Forwarded-For: {forwarded}\r\n"),
            1,
        );
    }
    let mut stream = TcpStream::connect(gateway).await?;
    stream.write_all(request.as_bytes()).await?;
    let (head, body) = response(&mut stream).await?.ok_or("closed unanswered")?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, serde_json::from_slice(&body)?))
}

#[tokio::test]
async fn callbacks_come_only_from_allowed_networks_forwarded_only_by_trusted_proxies() -> TestResult
{
    let allow = (
        "HANDOFF__GATEWAY__ALLOW_FROM",
        r#"["10.0.0.0/8"]"#.to_owned(),
    );
    let (_alone, direct) = start("allow", std::slice::from_ref(&allow))?;
    // From 127.0.0.1 directly: not allowed, whatever it claims to forward; the connection
    // is closed on arrival, before a byte of it is read.
    for forwarded in [None, Some("10.1.2.3")] {
        let refused = from(direct, forwarded).await;
        assert!(refused.is_err(), "answered: {refused:?}");
    }
    let mut idle = TcpStream::connect(direct).await?;
    assert!(closed_within(&mut idle, Duration::from_millis(500)).await);
    let proxy = (
        "HANDOFF__GATEWAY__TRUSTED_PROXIES",
        r#"["127.0.0.1/32"]"#.to_owned(),
    );
    let (_proxied, behind) = start("proxied", &[allow, proxy])?;
    let cases = [
        (Some("10.1.2.3"), true),
        (Some("8.8.8.8"), false),
        // The proxy appends the client it saw: what the client wrote before it counts not.
        (Some("10.9.9.9, 8.8.8.8"), false),
        (Some("8.8.8.8, 10.1.2.3"), true),
        (Some("not-an-address"), false),
        (None, false),
    ];
    for (forwarded, allowed) in cases {
        let (status, json) = from(behind, forwarded).await?;
        assert_eq!(
            status.contains(" 200 "),
            allowed,
            "{forwarded:?}: {status} {json}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn readiness_asks_the_router_at_most_once_a_second() -> TestResult {
    let router = hung_router().await?;
    let (_gateway, addr) = gateway_asking(
        "ready",
        router,
        &[("HANDOFF__GATEWAY__ROUTER_TIMEOUT", "400ms".to_owned())],
    )?;
    let ready = || async move {
        let started = std::time::Instant::now();
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
            .await?;
        let (head, _) = response(&mut stream).await?.ok_or("closed unanswered")?;
        Ok::<_, Error>((
            head.lines().next().unwrap_or_default().to_owned(),
            started.elapsed(),
        ))
    };
    let (first, asked) = ready().await?;
    let (second, cached) = ready().await?;
    assert!(
        first.contains(" 50"),
        "the hung router is not ready: {first}"
    );
    assert_eq!(second, first);
    assert!(
        asked >= Duration::from_millis(350),
        "the first asked the router: {asked:?}"
    );
    assert!(
        cached < Duration::from_millis(200),
        "the second waited {cached:?}"
    );
    Ok(())
}
