//! Who the client is and how often it may call: the client address (from `X-Forwarded-For`
//! only when the connection comes from a trusted proxy), and the middleware that applies the
//! per-address{%- if auth != "none" %} or per-account{%- endif %} limit to every API request.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
{%- if auth != "none" %}
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
{%- else %}
use axum::http::HeaderMap;
use axum::http::request::Parts;
{%- endif %}
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
{%- if auth != "none" %}
use uuid::Uuid;
{%- endif %}

use super::error::ApiError;
use crate::AppState;
{%- if auth != "none" %}
use crate::auth::AccessClaims;
{%- endif %}
use crate::metrics::Metrics;
use crate::rate_limit::Limited;

/// The client's address, as [`client_ip`] resolved it; set on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .copied()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no client address on the request")))
    }
}
{%- if auth != "none" %}

/// An access token the rate limiter already verified, so that `CurrentUser` need not again.
#[derive(Debug, Clone)]
pub struct VerifiedAccess(pub AccessClaims);
{%- endif %}

/// The client address: the connection's peer, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// were written by the client and prove nothing).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for entry in forwarded.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Resolves the client address and stores it on the request.
pub async fn resolve_client(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let ip = client_ip(peer, request.headers(), &state.trusted_proxies);
    tracing::Span::current().record("client_ip", tracing::field::display(ip));
    request.extensions_mut().insert(ClientIp(ip));
    next.run(request).await
}
{%- if auth != "none" %}

/// Applies the per-account limit to requests with a valid access token and the per-address
/// limit to the rest.
pub async fn limit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |client| client.0);
{%- if auth == "verifier" %}
    let claims = match bearer(request.headers()) {
        Some(token) => state.tokens.verify_access(token).await.ok(),
        None => None,
    };
{%- else %}
    let claims = bearer(request.headers()).and_then(|token| state.tokens.verify_access(token).ok());
{%- endif %}
    let verdict = match &claims {
        Some(claims) => state.rate_limits.user(claims.sub),
        None => state.rate_limits.anonymous(ip),
    };
    if let Err(limited) = verdict {
        return refuse(&state.metrics, limited, claims.as_ref().map(|claims| claims.sub)).into_response();
    }
    if let Some(claims) = claims {
        request.extensions_mut().insert(VerifiedAccess(claims));
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer` header; the scheme is case-insensitive.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Logs and counts the refusal as a security event and turns it into 429.
pub fn refuse(metrics: &Metrics, limited: Limited, user_id: Option<Uuid>) -> ApiError {
    metrics.security_event("rate_limited");
    tracing::warn!(
        target: "security",
        event = "rate_limited",
        scope = limited.scope,
        user_id = user_id.map(tracing::field::display),
        "rate limit hit"
    );
{%- else %}

/// Applies the per-address limit to every API request.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |client| client.0);
    if let Err(limited) = state.rate_limits.anonymous(ip) {
        return refuse(&state.metrics, limited).into_response();
    }
    next.run(request).await
}

/// Logs and counts the refusal as a security event and turns it into 429.
pub fn refuse(metrics: &Metrics, limited: Limited) -> ApiError {
    metrics.security_event("rate_limited");
    tracing::warn!(target: "security", event = "rate_limited", scope = limited.scope, "rate limit hit");
{%- endif %}
    ApiError::TooManyRequests {
        retry_after: u32::try_from(limited.retry_after.as_secs()).unwrap_or(u32::MAX).max(1),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let client: IpAddr = "203.0.113.7".parse().expect("ip");

        // A spoofed leftmost entry is ignored: the proxy appended the real client last.
        assert_eq!(client_ip(proxy, &forwarded("1.2.3.4, 203.0.113.7"), &trusted), client);
        // Through two trusted proxies.
        assert_eq!(client_ip(proxy, &forwarded("203.0.113.7, 10.1.2.3"), &trusted), client);
        // From an untrusted peer the header means nothing.
        assert_eq!(client_ip(stranger, &forwarded("203.0.113.7"), &trusted), stranger);
        // A trusted peer without the header, or with garbage, is the client itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &forwarded("not-an-ip"), &trusted), proxy);
    }
}
