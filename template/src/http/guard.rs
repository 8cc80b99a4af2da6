//! What every route's response passes through first: a handler's panic becomes a logged 500, a
//! request body over the limit is refused with 413, and error responses produced outside
//! handlers (404, 405, 413, timeouts) get the same problem+json body as handler errors. One
//! hand-written layer rather than three from tower-http, because each of those wraps the
//! response body in a type of its own, and each wrap is a box for the next layer: here the
//! body passes through as it came.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;
use tower::{Layer, Service};

use super::error::{ApiError, PROBLEM_JSON, Problem};

/// Catches panics, limits request bodies to `body_limit` bytes, and normalises error bodies.
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    pub body_limit: usize,
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            body_limit: self.body_limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    body_limit: usize,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if declares_more_than(request.headers(), self.body_limit) {
            return Guarded::answered(ApiError::PayloadTooLarge.into_response());
        }
        // Also for a body sent without a length, or with a false one: reading past the limit
        // fails, and the extractor that reads it answers 413.
        let limit = self.body_limit;
        let request = request.map(|body| Body::new(Limited::new(body, limit)));
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => Guarded::Running { future },
            Err(panic) => Guarded::answered(panic_response(&*panic)),
        }
    }
}

/// Whether the request's `Content-Length` says its body is longer than `limit` bytes.
pub fn declares_more_than(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|length| length > limit)
}

pin_project_lite::pin_project! {
    /// The response of a [`Guard`]ed request.
    #[project = GuardedProj]
    pub enum Guarded<F> {
        Running { #[pin] future: F },
        Answered { response: Option<Response> },
    }
}

impl<F> Guarded<F> {
    fn answered(response: Response) -> Self {
        Self::Answered {
            response: Some(response),
        }
    }
}

impl<F, E> Future for Guarded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project() {
            GuardedProj::Running { future } => match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(result)) => result?,
                Err(panic) => panic_response(&*panic),
            },
            GuardedProj::Answered { response } => response.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(problem_details(response)))
    }
}

/// Gives an error response without a JSON body the problem+json body handler errors have,
/// keeping its headers such as `Allow`. JSON bodies, such as problems or the readiness report,
/// are left as they are.
fn problem_details(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let detail = match status {
        StatusCode::NOT_FOUND => Some("no route matches this path".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            Some("this route does not support the method; see the Allow header".to_owned())
        }
        StatusCode::PAYLOAD_TOO_LARGE => Some("request body is too large".to_owned()),
        _ => None,
    };
    let body = serde_json::to_vec(&Problem::new(status, detail)).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Turns a handler panic into a logged 500; the panic message stays in the log.
fn panic_response(panic: &(dyn Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "an unexpected error occurred".to_owned(),
    )
    .into_response()
}
