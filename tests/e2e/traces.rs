//! Traces and OTLP metrics: the gateway and the router, run apart as their own binaries,
//! export one trace per callback over OTLP (gRPC and HTTP) to a receiver running in this
//! test, the router's span a child of the gateway's call, and their metrics; with the SDK
//! disabled nothing is sent.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{KeyValue, any_value::Value},
    metrics::v1::{Metric, metric::Data, number_data_point},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::{CONFIG, Error, TestResult, body, now_secs, request, signed_uri};

/// Every span and metric received, with the service that sent it.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    metrics: Arc<Mutex<Vec<(String, Metric)>>>,
}

/// The `service.name` of a resource's attributes.
fn service(attributes: &[KeyValue]) -> String {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
        .unwrap_or_default()
}

impl Received {
    fn add(&self, export: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for resource in export.resource_spans {
            let service = service(resource.resource.as_ref().map_or(&[], |r| &r.attributes));
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    fn add_metrics(&self, export: ExportMetricsServiceRequest) {
        let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        for resource in export.resource_metrics {
            let service = service(resource.resource.as_ref().map_or(&[], |r| &r.attributes));
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((service.clone(), metric));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn metrics(&self) -> Vec<(String, Metric)> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest value `service` exported for `name` with (at least) `labels`: a sum's or
    /// gauge's value, a histogram's count.
    fn latest(&self, service: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches = |attributes: &[KeyValue]| {
            labels.iter().all(|(key, value)| {
                attributes.iter().any(|kv| {
                    kv.key == *key
                        && kv
                            .value
                            .as_ref()
                            .and_then(|v| text(v.value.as_ref()?))
                            .as_deref()
                            == Some(*value)
                })
            })
        };
        let number =
            |point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match point.value? {
                number_data_point::Value::AsDouble(v) => Some(v),
                number_data_point::Value::AsInt(v) => Some(v as f64),
            };
        self.metrics()
            .iter()
            .rev()
            .filter(|(s, metric)| s == service && metric.name == name)
            .find_map(|(_, metric)| match metric.data.as_ref()? {
                Data::Sum(sum) => sum
                    .data_points
                    .iter()
                    .find(|p| matches(&p.attributes))
                    .and_then(number),
                Data::Gauge(gauge) => gauge
                    .data_points
                    .iter()
                    .find(|p| matches(&p.attributes))
                    .and_then(number),
                Data::Histogram(histogram) => histogram
                    .data_points
                    .iter()
                    .find(|p| matches(&p.attributes))
                    .map(|p| p.count as f64),
                _ => None,
            })
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.add_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP receiver on a port of its own: gRPC, or HTTP with protobuf bodies.
async fn receiver(grpc: bool) -> Result<(SocketAddr, Received), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Received::default();
    if grpc {
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(received.clone()))
                .add_service(MetricsServiceServer::new(received.clone()))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
    } else {
        let (traces, metrics) = (received.clone(), received.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(export) => {
                            traces.add(export);
                            (
                                http::StatusCode::OK,
                                ExportTraceServiceResponse::default().encode_to_vec(),
                            )
                        }
                        Err(_) => (http::StatusCode::BAD_REQUEST, Vec::new()),
                    }
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    match ExportMetricsServiceRequest::decode(body) {
                        Ok(export) => {
                            metrics.add_metrics(export);
                            (
                                http::StatusCode::OK,
                                ExportMetricsServiceResponse::default().encode_to_vec(),
                            )
                        }
                        Err(_) => (http::StatusCode::BAD_REQUEST, Vec::new()),
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Ok((addr, received))
}

/// A binary serving the test config, killed on drop.
pub(crate) struct Process(Child);

impl Process {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with `env`, and returns it with the line it logged when it started
/// listening.
pub(crate) fn spawn(
    binary: &str,
    config: &PathBuf,
    env: &[(&str, String)],
) -> Result<(Process, String), Error> {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("OTEL_SERVICE_NAME")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = Process(command.spawn()?);
    let stderr = child.0.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let listening = loop {
        let line = lines.next().ok_or("exited before listening")??;
        if line.contains(" listening") {
            break line;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, listening))
}

/// The tests' config on the memory store, for a binary that reads it from a file.
pub(crate) fn memory_config() -> String {
    format!("[router.store]\nkind = \"memory\"\n{CONFIG}")
}

/// A binary's listeners on ports of their own, and `extra`.
pub(crate) fn own_ports(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("HANDOFF__ROUTER__LISTEN", "127.0.0.1:0".to_owned()),
        ("HANDOFF__GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
        ("HANDOFF__ROUTER__CONSOLE__LISTEN", "127.0.0.1:0".to_owned()),
    ];
    env.extend_from_slice(extra);
    env
}

/// The value of `name=` in a text log line.
pub(crate) fn field(line: &str, name: &str) -> Result<String, Error> {
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|value| value.trim_matches('"').to_owned())
        .ok_or_else(|| format!("no {name}= in {line}").into())
}

/// Router and gateway apart, both exporting to `otlp` with `protocol`, plus `extra`.
async fn callback_through(
    otlp: SocketAddr,
    protocol: &str,
    extra: &[(&str, String)],
    name: &str,
) -> Result<(), Error> {
    let config =
        std::env::temp_dir().join(format!("handoff-traces-{name}-{}.toml", std::process::id()));
    std::fs::write(&config, memory_config())?;
    let mut env = own_ports(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_owned()),
    ]);
    env.extend(extra.iter().cloned());
    let result = async {
        let (_router, line) = spawn(env!("CARGO_BIN_EXE_handoff-router"), &config, &env)?;
        let router = field(&line, "router")?;
        env.push(("HANDOFF__GATEWAY__ROUTER_URL", format!("http://{router}")));
        let (_gateway, line) = spawn(env!("CARGO_BIN_EXE_handoff-gateway"), &config, &env)?;
        let gateway = field(&line, "gateway")?;
        let reply = request(
            gateway.parse()?,
            "POST",
            &signed_uri(now_secs()),
            body("traced-1"),
        )
        .await?;
        assert_eq!(reply.status, 200, "{:?}", reply.json);
        assert_eq!(reply.json["ActionStatus"], "OK");
        // Long enough for a batch (50 ms here) to be sent; the processes stay up meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_file(&config);
    result
}

/// Waits until `received` holds the three spans of one callback, or a few seconds.
async fn one_trace(received: &Received) -> Vec<(String, Span)> {
    for _ in 0..50 {
        let spans = received.spans();
        if spans.len() >= 3 {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    received.spans()
}

fn find<'a>(
    spans: &'a [(String, Span)],
    service: &str,
    name: &str,
    kind: SpanKind,
) -> Result<&'a Span, Error> {
    spans
        .iter()
        .find(|(s, span)| s == service && span.name == name && span.kind == kind as i32)
        .map(|(_, span)| span)
        .ok_or_else(|| {
            let seen: Vec<_> = spans
                .iter()
                .map(|(s, span)| (s.as_str(), span.name.as_str(), span.kind))
                .collect();
            format!("no {kind:?} span {name:?} from {service}; got {seen:?}").into()
        })
}

async fn a_callback_is_one_trace_across_gateway_and_router(protocol: &str) -> TestResult {
    let (otlp, received) = receiver(protocol == "grpc").await?;
    callback_through(otlp, protocol, &[], protocol.replace('/', "-").as_str()).await?;
    let spans = one_trace(&received).await;
    let callback = find(
        &spans,
        "handoff-gateway",
        "Tencent callback",
        SpanKind::Server,
    )?;
    let call = find(&spans, "handoff-gateway", "AssignHuman", SpanKind::Client)?;
    let served = find(&spans, "handoff-router", "AssignHuman", SpanKind::Server)?;
    assert_eq!(call.trace_id, callback.trace_id, "one trace");
    assert_eq!(
        served.trace_id, callback.trace_id,
        "the router's span is in the same trace"
    );
    assert_eq!(call.parent_span_id, callback.span_id);
    assert_eq!(
        served.parent_span_id, call.span_id,
        "the router's span is the call's child"
    );
    assert_eq!(attribute(callback, "app").as_deref(), Some("1400000001"));
    assert_eq!(attribute(callback, "session").as_deref(), Some("traced-1"));
    assert_eq!(attribute(callback, "outcome").as_deref(), Some("answered"));
    assert_eq!(attribute(served, "session").as_deref(), Some("traced-1"));
    assert_eq!(attribute(served, "rule").as_deref(), Some("default"));
    assert_eq!(
        attribute(served, "reserved").as_deref(),
        Some("ann@example.com")
    );
    assert_eq!(attribute(served, "fallback").as_deref(), Some("false"));
    // Nothing secret travels: not the token, not the signature.
    let everything = format!("{spans:?}");
    assert!(
        !everything.contains("xxxxyyyy"),
        "the app's token was exported"
    );
    assert!(!everything.contains("Sign="), "the signed URL was exported");
    Ok(())
}

#[tokio::test]
async fn a_callback_is_one_trace_across_gateway_and_router_over_otlp_grpc() -> TestResult {
    a_callback_is_one_trace_across_gateway_and_router("grpc").await
}

#[tokio::test]
async fn a_callback_is_one_trace_across_gateway_and_router_over_otlp_http() -> TestResult {
    a_callback_is_one_trace_across_gateway_and_router("http/protobuf").await
}

#[tokio::test]
async fn with_the_sdk_disabled_nothing_is_sent() -> TestResult {
    let (otlp, received) = receiver(true).await?;
    callback_through(
        otlp,
        "grpc",
        &[("OTEL_SDK_DISABLED", "true".to_owned())],
        "disabled",
    )
    .await?;
    assert!(
        received.spans().is_empty(),
        "spans were sent: {:?}",
        received.spans().len()
    );
    assert!(
        received.metrics().is_empty(),
        "metrics were sent: {:?}",
        received.metrics().len()
    );
    Ok(())
}

async fn both_services_export_their_metrics(protocol: &str) -> TestResult {
    let (otlp, received) = receiver(protocol == "grpc").await?;
    let every = [("OTEL_METRIC_EXPORT_INTERVAL", "200".to_owned())];
    let name = format!("metrics-{}", protocol.replace('/', "-"));
    callback_through(otlp, protocol, &every, &name).await?;
    let (gateway, router) = ("handoff-gateway", "handoff-router");
    let answered = [("command", "assign_human"), ("outcome", "answered")];
    assert_eq!(
        received.latest(gateway, "handoff_gateway_callbacks", &answered),
        Some(1.0),
        "{:?}",
        received
            .metrics()
            .iter()
            .map(|(s, m)| (s.clone(), m.name.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        received.latest(
            gateway,
            "handoff_gateway_callback_seconds",
            &[("command", "assign_human")]
        ),
        Some(1.0),
        "one callback's latency, as a histogram"
    );
    let decided = [
        ("app", "1400000001"),
        ("rule", "default"),
        ("outcome", "decided"),
    ];
    assert_eq!(
        received.latest(router, "handoff_router_decisions", &decided),
        Some(1.0)
    );
    assert!(
        received
            .latest(
                router,
                "handoff_router_store_seconds",
                &[("operation", "assign")]
            )
            .is_some_and(|count| count >= 1.0)
    );
    // Read from the store once per interval: the callback's reservation holds a seat.
    let group = [("app", "1400000001"), ("group", "6521")];
    assert_eq!(
        received.latest(router, "handoff_router_group_seats_in_use", &group),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test]
async fn both_services_export_their_metrics_over_otlp_grpc() -> TestResult {
    both_services_export_their_metrics("grpc").await
}

#[tokio::test]
async fn both_services_export_their_metrics_over_otlp_http() -> TestResult {
    both_services_export_their_metrics("http/protobuf").await
}
