//! The per-address rate limit on every API request, and how any refusal by a limit is
//! answered: 429 with `Retry-After`, logged and counted as a security event. A request that an
//! earlier layer already counted against its account ([`CountedElsewhere`]) passes here.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client_ip;
use super::error::ApiError;
use crate::AppState;
use crate::limits::Limited;
use crate::metrics::Metrics;

/// Marks a request that a more specific limit (per account) has already counted.
#[derive(Debug, Clone, Copy)]
pub struct CountedElsewhere;

/// Applies the per-address limit to every API request not counted elsewhere.
pub async fn per_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.extensions().get::<CountedElsewhere>().is_none()
        && let Err(limited) = state.address_limit.check(client_ip::of(&request)).await
    {
        return refuse(&state.metrics, limited).into_response();
    }
    next.run(request).await
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
