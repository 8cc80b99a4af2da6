//! Logs and traces: one `tracing` subscriber for the process, writing JSON lines in production
//! and readable lines in development, and, when `[telemetry] otlp_endpoint` is set, exporting
//! every span over OTLP too. Request spans carry the request id, so every line of a request
//! has it. A request's W3C `traceparent` continues the caller's trace, and work the request
//! leaves behind (a job, the calls it makes) carries the trace on. With no endpoint there is
//! no exporter, no propagator and no layer, and each helper below returns at once: traces
//! cost nothing. Trace context is W3C Trace Context (`traceparent`), the one format spoken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Environment, LogConfig, LogFormat, TelemetryConfig};

/// Whether spans are exported. Every helper checks it first, so that without an endpoint no
/// request pays for trace context.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the export running; dropped at the end of `main`, it sends the spans still buffered.
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("the last traces could not be exported: {err}");
        }
    }
}

/// Installs the global subscriber, and the trace export when configured; call once, before
/// anything logs.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig, environment: Environment) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(log.filter.as_deref().unwrap_or("info"))
        .map_err(|err| anyhow::anyhow!("invalid configuration: APP_LOG__FILTER: {err}"))?;
    let format = log.format.unwrap_or(match environment {
        Environment::Production => LogFormat::Json,
        Environment::Development => LogFormat::Pretty,
    });
    let lines = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stdout);
    let lines = match format {
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => lines.compact().boxed(),
    };
    let provider = telemetry
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| provider(endpoint, telemetry))
        .transpose()?;
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(env!("CARGO_PKG_NAME"))));
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(traces)
        .try_init()
        .map_err(|err| anyhow::anyhow!("logging is already initialised: {err}"))?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry(provider))
}

/// Batches spans and sends them to `{endpoint}/v1/traces` from a thread of its own.
fn provider(endpoint: &str, config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    crate::outbound::install_tls();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(5))
        .build()
        .context("cannot set up the trace export to APP_TELEMETRY__OTLP_ENDPOINT")?;
    let name = config
        .service_name
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_NAME").to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(Resource::builder().with_service_name(name).build())
        .build())
}

fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Makes the trace of an incoming request's `traceparent`, if it has one, the parent of
/// `span`, and names the span for the trace view.
pub fn continue_trace(span: &Span, headers: &HeaderMap, name: impl FnOnce() -> String) {
    if !exporting() {
        return;
    }
    span.record("otel.name", name());
    span.record("otel.kind", "server");
    let _ = span.set_parent(TraceContextPropagator::new().extract(&HeaderExtractor(headers)));
}

/// The current trace as a `traceparent` value, for work that runs later (a job) to continue it.
pub fn traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Continues the trace of a stored `traceparent` in `span`.
pub fn follow(span: &Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// Adds `span`'s trace to the headers of an outbound request, which `span` stands for.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if !exporting() {
        return;
    }
    span.record("otel.kind", "client");
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}
