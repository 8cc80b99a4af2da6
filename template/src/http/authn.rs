{%- if auth == "issuer" -%}
//! Who is calling, and whether they may: `CurrentUser` reads a bearer access token and loads
//! the account's permissions, so that a disabled account or a revoked role stops working at
//! once rather than when the token expires; `Authorized<P>` also requires permission `P`.

use std::marker::PhantomData;
{%- else -%}
//! Who is calling, and whether they may: `CurrentUser` reads a bearer access token, checked
//! against the issuer's keys, and takes the account's permissions from its `scope`; they are
//! as current as the token, which lives minutes.
{%- endif %}

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use super::error::ApiError;
use super::rate_limit::{VerifiedAccess, bearer};
use crate::AppState;
{%- if auth == "issuer" %}
use crate::db;
{%- endif %}
use crate::domain::scope::{RESOURCES_ANY, Scope};
{%- if auth == "issuer" %}
use crate::domain::user::permission;
{%- endif %}
use crate::metrics::Metrics;

/// An authenticated account and what it may do.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub permissions: Vec<String>,
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
            let token = bearer(&parts.headers).ok_or(INVALID)?;
            state.tokens.verify_access(token){% if auth == "verifier" %}.await{% endif %}.map_err(|reason| {
                state.metrics.security_event("token_refused");
                tracing::info!(target: "security", event = "token_refused", reason = %reason, "access token refused");
                INVALID
            })?
        };
{%- if auth == "issuer" %}
        let mut conn = state.db.acquire().await?;
        let permissions = db::users::active_permissions(&mut conn, claims.sub)
            .await?
            .ok_or(INVALID)?;
        Ok(Self {
            id: claims.sub,
            permissions,
        })
{%- else %}
        Ok(Self {
            id: claims.sub,
            permissions: claims.permissions(),
        })
{%- endif %}
    }
}
{%- if auth == "issuer" %}

/// A permission, as a type, for [`Authorized`].
pub trait Permission {
    const NAME: &'static str;
}

/// List accounts.
pub struct UsersRead;
impl Permission for UsersRead {
    const NAME: &'static str = permission::USERS_READ;
}

/// Change roles, disable accounts.
pub struct UsersWrite;
impl Permission for UsersWrite {
    const NAME: &'static str = permission::USERS_WRITE;
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
{%- endif %}
