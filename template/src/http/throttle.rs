//! The rate limit on API requests, and how any refusal by a limit is answered: 429 with
//! `Retry-After`, logged and counted as a security event.

use axum::extract::Request;

use super::client_ip;
use super::error::ApiError;
use crate::AppState;
use crate::limits::Limited;
use crate::metrics::Metrics;

/// Counts an API request against one rate limit: {% if auth != "none" %}its account's when it carries a valid access
/// token (verified here, once: see `authn::verify_bearer`), otherwise {% endif %}its client address's.
pub async fn count(state: &AppState, request: &mut Request) -> Result<(), Limited> {
{%- if auth != "none" %}
    if let Some(account) = super::authn::verify_bearer(state, request).await {
        return state.auth.per_account.check(&account).await;
    }
{%- endif %}
    state.address_limit.check(client_ip::of(request)).await
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
