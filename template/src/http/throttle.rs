//! The per-address rate limit on API requests, and how any refusal by a limit is answered: 429
//! with `Retry-After`, logged and counted as a security event. With accounts, a request that
//! carries a valid token counts against its account instead (`authn::per_caller`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client_ip;
use super::error::ApiError;
use crate::AppState;
use crate::limits::Limited;
use crate::metrics::Metrics;

/// Counts an API request against its client address's limit.
pub async fn per_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let counted = state.address_limit.check(client_ip::of(&request)).await;
    proceed(&state, counted, request, next).await
}

/// Runs `request` when its limit `counted` it, and answers 429 when the limit refused it.
pub async fn proceed(state: &AppState, counted: Result<(), Limited>, request: Request, next: Next) -> Response {
    match counted {
        Ok(()) => next.run(request).await,
        Err(limited) => refuse(&state.metrics, limited).into_response(),
    }
}

/// Logs and counts the refusal as a security event and turns it into 429. The request's span
/// carries the client address and, once known, the account.
pub fn refuse(metrics: &Metrics, limited: Limited) -> ApiError {
    metrics.security_event("rate_limited");
    tracing::warn!(target: "security", event = "rate_limited", scope = limited.scope, "rate limit hit");
    ApiError::TooManyRequests {
        retry_after: u32::try_from(limited.retry_after.as_secs()).unwrap_or(u32::MAX).max(1),
    }
}
