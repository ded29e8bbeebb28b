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

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource,
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

/// The installed telemetry; flushes what is left of the traces when dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
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
    }
}

/// Where spans go, as the `OTEL_*` variables in `env` say: `None` to export nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP, protobuf bodies.
    HttpProtobuf,
}

/// Reads the export settings from `env` (the process environment, or a test's).
pub fn export(env: impl Fn(&str) -> Option<String>) -> Result<Option<Export>, String> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
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
    let (provider, problem) = match export(|name| std::env::var(name).ok()) {
        Ok(None) => (None, None),
        Ok(Some(export)) => match provider(program, &export) {
            Ok(provider) => (Some(provider), None),
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
    Telemetry {
        provider: provider.filter(|_| installed),
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
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(program);
    }
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_span_processor(processor)
        .build())
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
