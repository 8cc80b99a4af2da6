//! Trace export, seen by an OTLP collector of the test's own: the compiled binary exports its
//! spans when an endpoint is set, continuing a caller's W3C `traceparent`, and builds no
//! exporter at all without one.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::database::TestDatabase;
use crate::helpers::http_client;
use crate::process::{free_port, running, terminate, wait_until_live};

/// The trace and the span a caller's `traceparent` names.
pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const PARENT: &str = "00f067aa0ba902b7";

pub fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// One exported span, its ids in hex.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
}

/// An OTLP/HTTP collector on a free port: decodes every export and keeps its spans.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    exports: Arc<Mutex<usize>>,
}

impl Collector {
    pub async fn start() -> (Self, SocketAddr) {
        let collector = Self::default();
        let app = Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (collector, address)
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("lock").clone()
    }

    /// The span named `name` in the caller's trace.
    pub fn span(&self, name: &str) -> ExportedSpan {
        let spans = self.spans();
        spans
            .iter()
            .find(|span| span.name == name && span.trace_id == TRACE)
            .cloned()
            .unwrap_or_else(|| panic!("no span {name:?} in trace {TRACE}: {spans:#?}"))
    }
}

async fn export(State(collector): State<Collector>, body: Bytes) -> impl IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    *collector.exports.lock().expect("lock") += 1;
    let hex = |bytes: &[u8]| {
        bytes.iter().fold(String::new(), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
    };
    let mut spans = collector.spans.lock().expect("lock");
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| ExportedSpan {
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
            }));
        }
    }
    ([(CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new())
}

/// Runs the binary with `setting` naming the collector, sends it one request carrying the
/// caller's `traceparent`, and stops it, which exports what is left to export.
async fn one_request(setting: &str) -> Collector {
    let database = TestDatabase::migrated().await;
    let (collector, address) = Collector::start().await;
    let port = free_port();
    let child = running("serve", &database.url, port)
        .env(setting, format!("http://{address}"))
        .spawn()
        .expect("start the service");
    wait_until_live(port).await;
    let response = http_client()
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .header("traceparent", traceparent())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
    collector
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_and_its_span_is_exported() {
    let collector = one_request("APP_TELEMETRY__OTLP_ENDPOINT").await;

    let request = collector.span("GET /health/live");
    assert_eq!(request.parent_span_id, PARENT);
    assert!(
        request.span_id.len() == 16 && request.span_id != PARENT,
        "a span of its own: {request:?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported() {
    // The variable the SDK reads for a collector: with no exporter built, nobody reads it.
    let collector = one_request("OTEL_EXPORTER_OTLP_ENDPOINT").await;

    assert_eq!(*collector.exports.lock().expect("lock"), 0);
}
