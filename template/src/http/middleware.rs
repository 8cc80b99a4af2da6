//! The request's context, which every route runs in: its id, client address, span, log line,
//! metrics and security headers.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::Span;
use tracing::instrument::{Instrument, Instrumented};

use super::client_ip;
use crate::AppState;
use crate::metrics::{HttpLabels, Route};
use crate::telemetry;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Client-chosen ids end up in every log line, so only short, plain tokens are kept.
fn is_acceptable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The request's context, in one layer because every request pays for each layer: gives the
/// request its id, resolves the client's address (see [`client_ip`]), runs the request inside
/// a span carrying both with the method and route, then logs one line with the status and
/// latency, records the request in the metrics, echoes the id in `x-request-id` and adds the
/// security headers. The id is the caller's when it is a sane token (so ids correlate across
/// services), otherwise a new one. A hand-written service rather than `from_fn`, which boxes
/// the inner service and two futures on every request.
#[derive(Debug, Clone)]
pub struct ObserveLayer(pub AppState);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request
            .headers()
            .get(&REQUEST_ID)
            .filter(|value| value.to_str().is_ok_and(is_acceptable_id))
            .cloned()
            .unwrap_or_else(new_request_id);
        let (client_ip, https) = client_ip::resolve_request(&mut request, &self.state.trusted_proxies);
        let method = method_label(request.method());
        let route = Route(request.extensions().get::<MatchedPath>().cloned());
        // The account is recorded once `authn` has verified its token.
        let span = tracing::info_span!(
            "request",
            %method,
            route = route.as_str(),
            request_id = request_id.to_str().unwrap_or_default(),
            %client_ip,
            user_id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty
        );
        telemetry::continue_trace(&span, request.headers(), || format!("{method} {}", route.as_str()));
        let inner = CURRENT_REQUEST_ID
            .scope(request_id, self.inner.call(request))
            .instrument(span);
        Observed {
            inner,
            finish: Some(Finish {
                state: self.state.clone(),
                started,
                https,
                method,
                route,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of an [`Observe`]d request, finished once the inner service answers.
    pub struct Observed<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<HeaderValue, F>>,
        finish: Option<Finish>,
    }
}

impl<F, B, E> Future for Observed<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = ready!(this.inner.as_mut().poll(cx))?;
        let finish = this.finish.take().expect("polled after completion");
        // The id goes back from the task-local to the response, rather than cloned for both.
        let request_id = this.inner.as_mut().inner_pin_mut().take_value();
        Poll::Ready(Ok(finish.finish(response, this.inner.span(), request_id)))
    }
}

/// What [`Observe`] does once the response is there.
struct Finish {
    state: AppState,
    started: Instant,
    https: bool,
    method: &'static str,
    route: Route,
}

impl Finish {
    /// Logs the request's line in `span`, the one it ran in, and echoes `request_id`.
    fn finish<B>(self, mut response: Response<B>, span: &Span, request_id: Option<HeaderValue>) -> Response<B> {
        let status = response.status();
        let elapsed = self.started.elapsed();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if status.is_server_error() {
                tracing::warn!(status = status.as_u16(), latency_ms, "request finished");
            } else {
                tracing::info!(status = status.as_u16(), latency_ms, "request finished");
            }
        });
        let labels = HttpLabels {
            method: self.method,
            route: self.route,
            status: status.as_u16(),
        };
        self.state.metrics.record_request(&labels, elapsed);
        let headers = response.headers_mut();
        // Room for the id and the security headers at once, rather than growing on the way.
        headers.reserve(7);
        if let Some(request_id) = request_id {
            headers.insert(REQUEST_ID, request_id);
        }
        add_security_headers(headers, self.https);
        response
    }
}

tokio::task_local! {
    /// The id of the request the current task is handling, for work it leaves behind (a job
    /// carries it on, so its logs and outbound calls correlate with the request).
    static CURRENT_REQUEST_ID: HeaderValue;
}

/// The id of the request being handled, when called while handling one.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID
        .try_with(|id| id.to_str().ok().map(str::to_owned))
        .ok()
        .flatten()
}

/// A new request id: a random UUID.
fn new_request_id() -> HeaderValue {
    let mut text = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// Two years, subdomains included: browsers then refuse plain HTTP to this host.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000; includeSubDomains");

/// Headers every response carries unless its route set its own (the docs pages relax the
/// CSP, for example); HSTS only when a trusted proxy saw the client over HTTPS, as the
/// service itself speaks plain HTTP, where the header means nothing.
fn add_security_headers(headers: &mut HeaderMap, https: bool) {
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

/// The method as a metrics label. hyper accepts any token as a method, and every distinct
/// label is a series kept forever, so unknown methods share one label.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("OTHER", |(_, label)| *label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_metrics_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"FOO1").expect("token")), "OTHER");
    }

    #[test]
    fn only_plain_short_request_ids_are_accepted() {
        assert!(is_acceptable_id("3f2c9a40-7d4e-4b7e-9c1a-0d6a3b1e2f10"));
        assert!(is_acceptable_id("req_42.a"));
        assert!(!is_acceptable_id(""));
        assert!(!is_acceptable_id(&"a".repeat(129)));
        assert!(!is_acceptable_id("line\nbreak"));
        assert!(!is_acceptable_id("quote\"d"));
    }
}
