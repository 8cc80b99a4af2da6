//! `/api/v1/jobs`: the dead jobs, for operators holding `jobs:manage`: list them with their
//! last error, run one again with fresh attempts, or discard it.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::authn::{Authorized, Permission};
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::AppState;
use crate::jobs::queue;

/// List, retry and discard dead jobs.
pub struct JobsManage;
impl Permission for JobsManage {
    const NAME: &'static str = "jobs:manage";
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_dead))
        .routes(routes!(retry))
        .routes(routes!(discard))
}

/// A job that used its attempts, or that could never succeed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadJob {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub attempts: i32,
    /// The error of its last attempt.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its last attempt failed.
    #[serde(with = "time::serde::rfc3339")]
    pub died_at: OffsetDateTime,
}

impl From<queue::DeadJob> for DeadJob {
    fn from(job: queue::DeadJob) -> Self {
        Self {
            id: job.id,
            queue: job.queue,
            kind: job.kind,
            attempts: job.attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            died_at: job.died_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadJobs {
    /// Most recent first.
    pub items: Vec<DeadJob>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListDead {
    /// How many, 1 to 100; values outside are clamped. Defaults to 50.
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

const NOT_FOUND: &str = "no such dead job";

/// List dead jobs
#[utoipa::path(get, path = "/api/v1/jobs/dead", tag = "jobs", operation_id = "listDeadJobs",
    security(("bearer" = [])),
    params(ListDead),
    responses(
        (status = 200, description = "The most recent dead jobs", body = DeadJobs),
        (status = 400, description = "Invalid query parameters"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the jobs:manage permission"),
    ))]
async fn list_dead(
    State(state): State<AppState>,
    _: Authorized<JobsManage>,
    Query(query): Query<ListDead>,
) -> Result<Json<DeadJobs>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut conn = state.db.acquire().await?;
    let dead = queue::dead(&mut *conn, i64::from(limit)).await?;
    Ok(Json(DeadJobs {
        items: dead.into_iter().map(DeadJob::from).collect(),
    }))
}

/// Retry a dead job
///
/// The job is ready again at once, with all its attempts.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", operation_id = "retryDeadJob",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 204, description = "Queued again"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the jobs:manage permission"),
        (status = 404, description = "No such dead job"),
        (status = 409, description = "A job with the same dedupe key is pending"),
    ))]
async fn retry(
    State(state): State<AppState>,
    Authorized(operator, _): Authorized<JobsManage>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.db.acquire().await?;
    if !queue::retry(&mut *conn, id).await? {
        return Err(ApiError::NotFound(NOT_FOUND));
    }
    tracing::info!(job = %id, by = %operator.id, "dead job retried");
    Ok(StatusCode::NO_CONTENT)
}

/// Discard a dead job
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs", operation_id = "discardDeadJob",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "Needs the jobs:manage permission"),
        (status = 404, description = "No such dead job"),
    ))]
async fn discard(
    State(state): State<AppState>,
    Authorized(operator, _): Authorized<JobsManage>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.db.acquire().await?;
    if !queue::discard(&mut *conn, id).await? {
        return Err(ApiError::NotFound(NOT_FOUND));
    }
    tracing::info!(job = %id, by = %operator.id, "dead job discarded");
    Ok(StatusCode::NO_CONTENT)
}
