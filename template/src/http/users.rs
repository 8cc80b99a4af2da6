//! `/api/v1/users`: account administration, each route guarded by a permission.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use validator::Validate;

use super::authn::{Authorized, Permission};
use super::error::ApiError;
use super::extract::{Json, Path, Query, Valid};
use super::pagination::{self, Page};
use crate::AppState;
use crate::db;
use crate::domain::page::{PageSize, SortKind};
use crate::domain::user::{self as domain, UserStatus, permission};

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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_users))
        .routes(routes!(set_roles))
        .routes(routes!(disable_user))
}

/// An account, as administrators see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    /// `active` or `disabled`.
    #[schema(example = "active")]
    pub status: String,
    pub roles: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<domain::User> for User {
    fn from(user: domain::User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            status: match user.status {
                UserStatus::Active => "active",
                UserStatus::Disabled => "disabled",
            }
            .to_owned(),
            roles: user.roles,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListUsers {
    /// Items per page, 1 to 100; values outside are clamped. Defaults to 20.
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]+$", min_length = 1)]
    pub cursor: Option<String>,
}

/// The roles an account should have, replacing the ones it has.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignment {
    #[validate(length(max = 20, message = "at most 20 roles"))]
    #[schema(example = json!(["user", "admin"]))]
    pub roles: Vec<String>,
}

/// Order of the listing, also bound into its cursors.
const ORDER: &str = "created_at";
const NOT_FOUND: &str = "account not found";

/// List accounts
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "listUsers",
    security(("bearer" = [])),
    params(ListUsers),
    responses(
        (status = 200, description = "A page of accounts, oldest first", body = Page<User>),
        (status = 400, description = "Invalid query parameters or cursor"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the users:read permission"),
    ))]
async fn list_users(
    State(state): State<AppState>,
    _: Authorized<UsersRead>,
    Query(query): Query<ListUsers>,
) -> Result<Json<Page<User>>, ApiError> {
    let after = query
        .cursor
        .map(|token| pagination::decode(&token, ORDER, SortKind::Time))
        .transpose()?;
    let mut conn = state.db.acquire().await?;
    let page = db::users::list(&mut conn, after.as_ref(), PageSize::clamped(query.limit)).await?;
    Ok(Json(Page::from_domain(page, ORDER, User::from)))
}

/// Replace an account's roles
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", tag = "users", operation_id = "setUserRoles",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    request_body = RoleAssignment,
    responses(
        (status = 200, description = "The account with its new roles", body = User),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the users:write permission"),
        (status = 404, description = "No such account"),
        (status = 422, description = "An unknown role, or invalid fields"),
    ))]
async fn set_roles(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UsersWrite>,
    Path(id): Path<Uuid>,
    Valid(body): Valid<RoleAssignment>,
) -> Result<Json<User>, ApiError> {
    let mut tx = state.db.begin().await?;
    if !db::users::set_roles(&mut tx, id, &body.roles).await? {
        return Err(ApiError::NotFound(NOT_FOUND));
    }
    let user = db::users::find(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    db::commit(tx).await?;
    tracing::info!(target: "security", event = "roles_changed", user_id = %id, by = %admin.id, roles = ?body.roles, "roles changed");
    Ok(Json(User::from(user)))
}

/// Disable an account
///
/// The account can no longer sign in, and its sessions and access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users", operation_id = "disableUser",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the users:write permission"),
        (status = 404, description = "No such account"),
    ))]
async fn disable_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UsersWrite>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if !db::users::disable(&mut tx, id).await? {
        return Err(ApiError::NotFound(NOT_FOUND));
    }
    db::commit(tx).await?;
    tracing::warn!(target: "security", event = "account_disabled", user_id = %id, by = %admin.id, "account disabled");
    Ok(StatusCode::NO_CONTENT)
}
