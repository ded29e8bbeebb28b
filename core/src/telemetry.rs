//! Logs and traces for the binaries. Wiring only; nothing here changes what a service does.
//!
//! Logs: structured `tracing` events to stderr, as text or JSON lines (`--log-format`,
//! `HANDOFF_LOG_FORMAT`), filtered by `RUST_LOG` (default `info`).
//!
//! Traces: OpenTelemetry, configured by the standard `OTEL_*` variables and nothing else.
//! Spans are exported over OTLP only when an endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), with
//! `OTEL_EXPORTER_OTLP_PROTOCOL` `grpc` or `http/protobuf` (the default), unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; `OTEL_SERVICE_NAME` (default:
//! the binary's name), `OTEL_TRACES_SAMPLER` and the `OTEL_BSP_*` batch settings are read
//! by the SDK itself. Without an exporter no span is even created: the services' spans are
//! seen by no layer, so they cost a disabled callsite check.
//!
//! A trace crosses services as W3C trace context (`traceparent`, `tracestate`) in request
//! headers: [`outgoing`] gives the current span's for a request being sent, [`adopt`] makes
//! a server span the child of what a request carried.
//!
//! Metrics: every service keeps its Prometheus metrics as it does anyway, and when the
//! `OTEL_*` variables ask (an endpoint set, `OTEL_METRICS_EXPORTER` not `none`) they are
//! also exported over OTLP every `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default): counters
//! and gauges by [`mirror`], which observes them from the service's own Prometheus text at
//! each export, and latency histograms recorded natively on the [`meter`]'s histograms.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use opentelemetry::{
    KeyValue,
    metrics::{Meter, MeterProvider as _},
    propagation::TextMapPropagator,
    trace::TracerProvider as _,
};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource,
    metrics::{SdkMeterProvider, periodic_reader_with_async_runtime::PeriodicReader},
    propagation::TraceContextPropagator,
    runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing::{Metadata, subscriber::Interest};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{self, FilterExt as _},
    layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, fields included.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format {other:?}: must be text or json")),
        }
    }
}

/// Whether spans are exported: nothing is propagated otherwise.
static TRACING: AtomicBool = AtomicBool::new(false);

/// The meter metrics are exported through, when they are.
static METER: std::sync::OnceLock<Meter> = std::sync::OnceLock::new();

/// The installed telemetry; flushes what is left of the traces and metrics when dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: flushing spans at exit: {err}");
        }
        if let Some(meters) = self.meters.take()
            && let Err(err) = meters.shutdown()
        {
            eprintln!("telemetry: exporting metrics at exit: {err}");
        }
    }
}

/// Which kind of telemetry an exporter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
}

impl Signal {
    /// The signal's part of its `OTEL_*` variables' names.
    fn key(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
}

/// Where a signal goes, as the `OTEL_*` variables in `env` say: `None` to export nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP, protobuf bodies.
    HttpProtobuf,
}

/// Reads `signal`'s export settings from `env` (the process environment, or a test's).
pub fn export(
    signal: Signal,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Export>, String> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let key = signal.key();
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set(&format!("OTEL_{key}_EXPORTER")).is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set(&format!("OTEL_EXPORTER_OTLP_{key}_ENDPOINT")).is_none()
    {
        return Ok(None);
    }
    let protocol = set(&format!("OTEL_EXPORTER_OTLP_{key}_PROTOCOL"))
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    match protocol.as_str() {
        "grpc" => Ok(Some(Export::Grpc)),
        "http/protobuf" => Ok(Some(Export::HttpProtobuf)),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL {other:?}: handoff exports grpc or http/protobuf"
        )),
    }
}

/// Installs the process-wide subscriber for `program` (a second call installs nothing).
/// Must run inside the tokio runtime, which exports the spans.
pub fn init(program: &'static str, format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Log lines are events; the services' spans are for traces only. Decided per callsite,
    // once: without an exporter no layer wants a span, so none is ever created.
    let events = only(|meta| meta.is_event());
    let ansi = std::io::stderr().is_terminal();
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter.and(events))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter.and(events))
            .boxed(),
    };
    let env = |name: &str| std::env::var(name).ok();
    let (provider, problem) = match export(Signal::Traces, env) {
        Ok(None) => (None, None),
        Ok(Some(export)) => match provider(program, &export) {
            Ok(provider) => (Some(provider), None),
            Err(err) => (None, Some(err)),
        },
        Err(err) => (None, Some(err)),
    };
    let (meters, metrics_problem) = match export(Signal::Metrics, env) {
        Ok(None) => (None, None),
        Ok(Some(export)) => match meter_provider(program, &export) {
            Ok(meters) => (Some(meters), None),
            Err(err) => (None, Some(err)),
        },
        Err(err) => (None, Some(err)),
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(program))
            .with_filter(only(|meta| {
                meta.is_span() && meta.target().starts_with("handoff")
            }))
    });
    // Not `Option<Layer>`: an absent layer counts as wanting everything, and every span
    // would then be built for nobody.
    let logged = tracing_subscriber::registry().with(logs);
    let installed = match traces {
        Some(traces) => logged.with(traces).try_init(),
        None => logged.try_init(),
    }
    .is_ok();
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACING.store(true, Ordering::Relaxed);
    }
    if let Some(problem) = problem {
        tracing::warn!(error = %problem, "not exporting traces");
    }
    if let Some(problem) = metrics_problem {
        tracing::warn!(error = %problem, "not exporting metrics");
    }
    let meters = meters.filter(|meters| installed && METER.set(meters.meter(program)).is_ok());
    Telemetry {
        provider: provider.filter(|_| installed),
        meters,
    }
}

/// The meter metrics are exported through: `None` unless the `OTEL_*` variables asked
/// for OTLP metrics, so that a service builds no measurement for nobody.
pub fn meter() -> Option<&'static Meter> {
    METER.get()
}

/// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds; 60 s by
/// default, as the SDK reads it).
pub fn export_interval() -> std::time::Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|ms| ms.trim().parse().ok())
        .filter(|ms| *ms > 0)
        .map_or(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis,
        )
}

/// A Prometheus family [`mirror`] observes.
#[derive(Debug, Clone, Copy)]
pub struct Mirrored {
    /// The samples' name in the Prometheus text (`handoff_router_decisions_total`); the
    /// OTLP metric is named without `_total`.
    pub name: &'static str,
    /// A gauge (else a counter).
    pub gauge: bool,
    /// What it counts.
    pub help: &'static str,
}

/// Observes `families` on `meter` from the Prometheus text `text` renders, read once per
/// export (the text of the moment, shared by the families observed together).
pub fn mirror(
    meter: &Meter,
    families: &[Mirrored],
    text: impl Fn() -> Option<String> + Send + Sync + 'static,
) {
    let scrape = Arc::new(Scraped {
        text: Box::new(text),
        last: std::sync::Mutex::new(None),
    });
    for family in families {
        let (scrape, name) = (Arc::clone(&scrape), family.name);
        let otel_name = name.strip_suffix("_total").unwrap_or(name);
        if family.gauge {
            meter
                .f64_observable_gauge(otel_name)
                .with_description(family.help)
                .with_callback(move |observer| {
                    scrape.each(name, |value, labels| observer.observe(value, labels));
                })
                .build();
        } else {
            meter
                .f64_observable_counter(otel_name)
                .with_description(family.help)
                .with_callback(move |observer| {
                    scrape.each(name, |value, labels| observer.observe(value, labels));
                })
                .build();
        }
    }
}

/// A service's Prometheus text, parsed at most once per export.
struct Scraped {
    text: Box<dyn Fn() -> Option<String> + Send + Sync>,
    last: std::sync::Mutex<Option<(std::time::Instant, Arc<prometheus_parse::Scrape>)>>,
}

impl Scraped {
    /// Calls `observe` with each sample of `name` and its labels.
    fn each(&self, name: &str, mut observe: impl FnMut(f64, &[KeyValue])) {
        let Some(scrape) = self.scrape() else {
            return;
        };
        for sample in scrape.samples.iter().filter(|s| s.metric == name) {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            let mut labels: Vec<KeyValue> = sample
                .labels
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
                .collect();
            labels.sort_by(|a, b| a.key.cmp(&b.key));
            observe(value, &labels);
        }
    }

    fn scrape(&self) -> Option<Arc<prometheus_parse::Scrape>> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, scrape)) = last.as_ref()
            && at.elapsed() < std::time::Duration::from_millis(100)
        {
            return Some(Arc::clone(scrape));
        }
        let text = (self.text)()?;
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let scrape = Arc::new(prometheus_parse::Scrape::parse(lines).ok()?);
        *last = Some((std::time::Instant::now(), Arc::clone(&scrape)));
        Some(scrape)
    }
}

/// A filter that decides by the callsite alone, once per callsite: what it refuses is never
/// built, not even as a span nobody records.
fn only<S>(
    wanted: fn(&Metadata<'_>) -> bool,
) -> filter::DynFilterFn<
    S,
    impl Fn(&Metadata<'_>, &tracing_subscriber::layer::Context<'_, S>) -> bool,
    impl Fn(&'static Metadata<'static>) -> Interest,
> {
    filter::dynamic_filter_fn(move |meta, _| wanted(meta)).with_callsite_filter(move |meta| {
        if wanted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    })
}

fn provider(program: &'static str, export: &Export) -> Result<SdkTracerProvider, String> {
    let exporter = match export {
        Export::Grpc => SpanExporter::builder().with_tonic().build(),
        Export::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    }
    .map_err(|err| format!("the OTLP exporter: {err}"))?;
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(program))
        .with_span_processor(processor)
        .build())
}

fn meter_provider(program: &'static str, export: &Export) -> Result<SdkMeterProvider, String> {
    let exporter = match export {
        Export::Grpc => MetricExporter::builder().with_tonic().build(),
        Export::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    }
    .map_err(|err| format!("the OTLP metric exporter: {err}"))?;
    let reader = PeriodicReader::builder(exporter, runtime::Tokio).build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource(program))
        .with_reader(reader)
        .build())
}

/// The service's resource: its name, unless `OTEL_SERVICE_NAME` gives one.
fn resource(program: &'static str) -> Resource {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(program);
    }
    resource.build()
}

/// The current span's trace context as headers for a request being sent (none when spans
/// are not exported).
pub fn outgoing() -> Vec<(String, String)> {
    if !TRACING.load(Ordering::Relaxed) {
        return Vec::new();
    }
    let mut headers = HashMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    headers.into_iter().collect()
}

/// Makes `span` the child of the trace context a received request carries, read through
/// `header` (a header's value by lower-case name).
pub fn adopt<'a>(span: &tracing::Span, header: impl Fn(&str) -> Option<&'a str>) {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    let carried: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| header(name).map(|value| (name.to_owned(), value.to_owned())))
        .collect();
    let parent = TraceContextPropagator::new().extract(&carried);
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn export(vars: impl Fn(&str) -> Option<String>) -> Result<Option<Export>, String> {
        super::export(Signal::Traces, vars)
    }

    #[test]
    fn metrics_are_exported_by_the_same_rules_with_their_own_variables() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let grpc = ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc");
        let metrics = |vars: &[(&str, &str)]| super::export(Signal::Metrics, env(vars));
        assert_eq!(metrics(&[]), Ok(None));
        assert_eq!(metrics(&[endpoint, grpc]), Ok(Some(Export::Grpc)));
        assert_eq!(
            metrics(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4318")]),
            Ok(Some(Export::HttpProtobuf))
        );
        assert_eq!(
            metrics(&[endpoint, ("OTEL_METRICS_EXPORTER", "none")]),
            Ok(None)
        );
        // Turning traces off leaves metrics on, and the other way round.
        assert_eq!(
            metrics(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(Some(Export::HttpProtobuf))
        );
        assert_eq!(
            export(env(&[endpoint, ("OTEL_METRICS_EXPORTER", "none")])),
            Ok(Some(Export::HttpProtobuf))
        );
    }

    #[test]
    fn spans_are_exported_only_when_an_endpoint_is_set_and_nothing_turns_them_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(export(env(&[])), Ok(None), "nothing set: nothing exported");
        assert_eq!(export(env(&[endpoint])), Ok(Some(Export::HttpProtobuf)));
        assert_eq!(
            export(env(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])),
            Ok(Some(Export::Grpc))
        );
        assert_eq!(
            export(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:4317"
            )])),
            Ok(Some(Export::HttpProtobuf))
        );
        assert_eq!(
            export(env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])),
            Ok(None)
        );
        assert_eq!(
            export(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])),
            Ok(None)
        );
        assert!(
            export(env(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            ]))
            .is_err()
        );
    }

    #[test]
    fn log_formats_are_text_or_json() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
