//! Metrics: the all-in-one's gateway `/metrics` and the router's `[router] metrics_listen`
//! parse as Prometheus text, and their counters move with callbacks and events.

use std::path::PathBuf;

use prometheus_parse::{Scrape, Value};

use crate::{
    support::{Error, TestResult, body, now_secs, request, signed_uri},
    traces::{field, memory_config, own_ports, spawn},
};

/// GETs `/metrics` of `addr` with `accept` (none when empty): its content type and text.
async fn get_metrics(addr: &str, accept: &str) -> Result<(String, String), Error> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut request = http::Request::get(format!("http://{addr}/metrics"));
    if !accept.is_empty() {
        request = request.header(http::header::ACCEPT, accept);
    }
    let response = client.request(request.body(Default::default())?).await?;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    Ok((content_type, String::from_utf8(body.to_vec())?))
}

/// GETs `/metrics` of `addr` and parses it as Prometheus text.
pub async fn scrape(addr: &str) -> Result<Scrape, Error> {
    let (_, text) = get_metrics(addr, "").await?;
    Ok(Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))?)
}

/// What `promtool check metrics` (Prometheus' own linter) says of `addr`'s `/metrics`:
/// `None` when it finds nothing wrong, or when promtool is not installed outside CI.
async fn promtool_finds(addr: &str) -> Result<Option<String>, Error> {
    if !crate::support::tool("promtool", "--version", "apt-get install prometheus")? {
        return Ok(None);
    }
    let (content_type, text) = get_metrics(addr, "").await?;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    Ok((!output.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }))
}

/// The value of `metric` with every label of `labels`: a counter's or gauge's value, a
/// histogram's count.
pub fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value))
        })
        .map(|sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_move_with_callbacks_and_events() -> TestResult {
    let config = std::env::temp_dir().join(format!("handoff-metrics-{}.toml", std::process::id()));
    std::fs::write(&config, memory_config())?;
    let result = observe(&config).await;
    let _ = std::fs::remove_file(&config);
    result
}

async fn observe(config: &PathBuf) -> TestResult {
    let env = own_ports(&[("HANDOFF__ROUTER__METRICS_LISTEN", "127.0.0.1:0".to_owned())]);
    let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), config, &env)?;
    let (gateway, router) = (field(&line, "gateway")?, field(&line, "metrics")?);
    let assigned = [("command", "assign_human"), ("outcome", "answered")];
    let decided = [
        ("app", "1400000001"),
        ("rule", "default"),
        ("outcome", "decided"),
    ];
    let group = [("app", "1400000001"), ("group", "6521")];

    let before = (scrape(&gateway).await?, scrape(&router).await?);
    let reply = request(
        gateway.parse()?,
        "POST",
        &signed_uri(now_secs()),
        body("m-1"),
    )
    .await?;
    assert_eq!(reply.json["ActionStatus"], "OK", "{:?}", reply.json);
    let reserved = reply.agents().first().cloned().unwrap_or_default();
    let unsigned = signed_uri(now_secs()).replace("Sign=", "Sign=0");
    let refused = request(gateway.parse()?, "POST", &unsigned, body("m-2")).await?;
    assert_eq!(refused.status, 401);
    let ended = format!(
        r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"m-1","Event":"SessionEnd","EventTime":{},"ChannelType":"SDK","ClientUserId":"user-m-1","AgentId":"{reserved}"}}"#,
        now_secs() * 1000
    );
    let event_uri =
        signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", "Desk.SessionEventNotify");
    let middle = scrape(&router).await?;
    let ack = request(gateway.parse()?, "POST", &event_uri, ended).await?;
    assert_eq!(ack.json["ActionStatus"], "OK", "{:?}", ack.json);
    let after = (scrape(&gateway).await?, scrape(&router).await?);

    let moved = |metric: &str, labels: &[(&str, &str)], (old, new): (&Scrape, &Scrape)| {
        value(new, metric, labels) - value(old, metric, labels)
    };
    let gateway_pair = (&before.0, &after.0);
    let router_pair = (&before.1, &after.1);
    assert_eq!(
        moved("handoff_gateway_callbacks_total", &assigned, gateway_pair),
        1.0
    );
    assert_eq!(
        moved(
            "handoff_gateway_callback_seconds",
            &[("command", "assign_human")],
            gateway_pair
        ),
        1.0,
        "the latency histogram counts the callback"
    );
    assert_eq!(
        moved(
            "handoff_gateway_refusals_total",
            &[("reason", "bad_signature")],
            gateway_pair
        ),
        1.0
    );
    assert_eq!(
        moved("handoff_router_decisions_total", &decided, router_pair),
        1.0
    );
    assert_eq!(
        moved(
            "handoff_router_session_events_total",
            &[("kind", "ended"), ("outcome", "recorded")],
            router_pair
        ),
        1.0
    );
    assert!(
        moved(
            "handoff_router_store_seconds",
            &[("operation", "assign")],
            router_pair
        ) >= 1.0
    );
    // The reservation held a seat of the group, and the session's end gave it back.
    assert_eq!(
        value(&middle, "handoff_router_group_seats_in_use", &group),
        1.0
    );
    assert_eq!(
        value(&after.1, "handoff_router_group_seats_in_use", &group),
        0.0
    );
    assert_eq!(
        value(&after.1, "handoff_router_group_agents_available", &group),
        2.0,
        "ann and bob are available, cy is offline"
    );
    assert_eq!(
        value(&after.1, "handoff_router_group_seats_free", &group),
        3.0
    );
    // Prometheus' own linter takes both, and every documented family is there from the
    // start, sampled or not.
    for addr in [&gateway, &router] {
        assert_eq!(promtool_finds(addr).await?, None, "{addr}");
    }
    let (_, text) = get_metrics(&router, "").await?;
    for family in [
        "handoff_router_connections_closed_total",
        "handoff_router_store_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family}: {text}"
        );
    }
    // Whoever asks for OpenMetrics gets it, as such.
    let (content_type, open) = get_metrics(
        &router,
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    )
    .await?;
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(
        open.contains("# TYPE handoff_router_decisions counter") && open.ends_with("# EOF\n"),
        "{open}"
    );
    Ok(())
}
