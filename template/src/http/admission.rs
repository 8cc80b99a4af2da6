//! Admission to the API: a request beyond the concurrency limit is shed at once (503, retry
//! shortly) rather than queued, one within it is counted against its rate limit (see
//! `throttle::count`) and then given the request timeout. Health, metrics and docs are not
//! admitted through here, so probes answer while the API sheds load. One hand-written layer
//! rather than tower's load-shed, concurrency-limit and timeout layers with axum's error
//! handler and a `from_fn` for the rate limit: each of those clones the route it wraps and
//! boxes a future on every request.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use super::error::ApiError;
use super::throttle;
use crate::AppState;

/// Admits API requests; every route it wraps shares one concurrency limit.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    state: AppState,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl AdmissionLayer {
    pub fn new(state: &AppState) -> Self {
        let server = &state.config.server;
        Self {
            state: state.clone(),
            slots: Arc::new(Semaphore::new(server.max_concurrent_requests)),
            timeout: server.request_timeout(),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S> Service<Request> for Admission<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    /// Always ready: a request that finds no free slot is answered at once instead.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let Ok(slot) = Arc::clone(&self.layer.slots).try_acquire_owned() else {
            return Box::pin(async { Ok(at_capacity()) });
        };
        let (state, timeout) = (self.layer.state.clone(), self.layer.timeout);
        // The route itself is made ready by `oneshot`, inside the timeout.
        let inner = self.inner.clone();
        Box::pin(async move {
            let method = request.method().clone();
            let admitted = async {
                match throttle::count(&state, &mut request).await {
                    Ok(()) => inner.oneshot(request).await,
                    Err(limited) => Ok(throttle::refuse(&state.metrics, limited).into_response()),
                }
            };
            let response = tokio::time::timeout(timeout, admitted)
                .await
                .unwrap_or_else(|_| Ok(timed_out(&method)));
            drop(slot);
            response
        })
    }
}

fn at_capacity() -> Response {
    ApiError::Unavailable {
        detail: "the server is at capacity; retry shortly",
        retry_after: Some(1),
    }
    .into_response()
}

/// A timed-out write may still have been applied, so only requests that are safe to repeat
/// are told to retry.
fn timed_out(method: &Method) -> Response {
    if method.is_idempotent() {
        ApiError::Unavailable {
            detail: "the request took too long and was cancelled",
            retry_after: Some(1),
        }
    } else {
        ApiError::Unavailable {
            detail: "the request took too long and was cancelled; it may or may not have taken effect",
            retry_after: None,
        }
    }
    .into_response()
}
