//! `GET /api/v1/me`: who the access token says is calling, and with which permissions; the
//! quickest way to check that this service accepts the issuer's tokens.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::authn::CurrentUser;
use super::extract::Json;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(me))
}

/// The caller, as the access token names them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Caller {
    /// The account at the issuer (`sub`).
    pub id: Uuid,
    /// From the token's `scope`.
    pub permissions: Vec<String>,
}

/// The caller
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Caller),
        (status = 401, description = "No valid access token"),
    ))]
async fn me(user: CurrentUser) -> Json<Caller> {
    Json(Caller {
        id: user.id,
        permissions: user.permissions.to_vec(),
    })
}
