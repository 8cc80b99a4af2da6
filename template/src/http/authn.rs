//! Who is calling, and whether they may. A bearer access token is verified once, by
//! [`verify_bearer`], when the rate limit counts the request against its account;
//! `CurrentUser` then asks `auth::Auth` for the account's permissions (see there for how
//! current they are), and `Authorized<P>` also requires permission `P`.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use uuid::Uuid;

use super::error::ApiError;
use crate::AppState;
use crate::auth::AccessClaims;
use crate::domain::scope::{RESOURCES_ANY, Scope};
use crate::metrics::Metrics;

/// An access token [`verify_bearer`] already verified, so that `CurrentUser` need not again.
#[derive(Debug, Clone)]
pub struct VerifiedAccess(pub AccessClaims);

/// Verifies the request's bearer token, if it has one, and returns its account for the rate
/// limit (`throttle::count`), leaving the claims on the request for `CurrentUser`. An invalid
/// token is not refused here: routes that need a caller refuse it through `CurrentUser`.
pub async fn verify_bearer(state: &AppState, request: &mut Request) -> Option<Uuid> {
    let token = bearer(request.headers())?;
    let claims = state.auth.tokens.verify_access(token).await.ok()?;
    let account = claims.sub;
    tracing::Span::current().record("user_id", tracing::field::display(account));
    request.extensions_mut().insert(VerifiedAccess(claims));
    Some(account)
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an authorization value `Bearer <token>`; the scheme is case-insensitive.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// An authenticated account and what it may do.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub permissions: Arc<[String]>,
}

impl CurrentUser {
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|granted| granted == permission)
    }

    /// The records this account may reach: its own, or everyone's with `resources:any`.
    pub fn scope(&self) -> Scope {
        if self.can(RESOURCES_ANY) {
            Scope::Any
        } else {
            Scope::OwnedBy(self.id)
        }
    }

    /// `Forbidden` unless the account has `permission`; a refusal is a security event.
    pub fn require(&self, metrics: &Metrics, permission: &str) -> Result<(), ApiError> {
        if self.can(permission) {
            return Ok(());
        }
        metrics.security_event("permission_denied");
        tracing::warn!(
            target: "security",
            event = "permission_denied",
            user_id = %self.id,
            permission,
            "permission denied"
        );
        Err(ApiError::Forbidden("you do not have permission to do this"))
    }
}

const MISSING: ApiError = ApiError::Unauthorized {
    detail: "send an access token: Authorization: Bearer <token>",
    invalid_token: false,
};
const INVALID: ApiError = ApiError::Unauthorized {
    detail: "the access token is invalid or expired",
    invalid_token: true,
};

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = if let Some(VerifiedAccess(claims)) = parts.extensions.remove::<VerifiedAccess>() {
            claims
        } else {
            if !parts.headers.contains_key(header::AUTHORIZATION) {
                return Err(MISSING);
            }
            verify(state, bearer(&parts.headers).ok_or(INVALID)?).await?
        };
        Self::holding(state, &claims).await
    }
}

impl CurrentUser {
    /// The account of verified `claims`, with its permissions as they are now.
    pub async fn holding(state: &AppState, claims: &AccessClaims) -> Result<Self, ApiError> {
        // No permissions means the account may no longer act (disabled or deleted).
        let permissions = state.auth.permissions(&state.db, claims).await?.ok_or(INVALID)?;
        Ok(Self {
            id: claims.sub,
            permissions,
        })
    }
}

/// Checks an access token however it arrived; a refusal is a security event and reads the same
/// whatever the reason.
pub async fn verify(state: &AppState, token: &str) -> Result<AccessClaims, ApiError> {
    state.auth.tokens.verify_access(token).await.map_err(|reason| {
        state.metrics.security_event("token_refused");
        tracing::info!(target: "security", event = "token_refused", reason = %reason, "access token refused");
        INVALID
    })
}

/// A permission, as a type, for [`Authorized`].
pub trait Permission {
    const NAME: &'static str;
}

/// An authenticated account that has permission `P`: 401 without one, 403 without `P`.
#[derive(Debug)]
pub struct Authorized<P>(pub CurrentUser, pub PhantomData<P>);

impl<P: Permission + Send> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        user.require(&state.metrics, P::NAME)?;
        Ok(Self(user, PhantomData))
    }
}

/// The `bearer` security scheme that protected routes name in the OpenAPI document, which
/// Swagger UI's Authorize button takes.
pub struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
