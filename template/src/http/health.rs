//! Liveness and readiness probes. Liveness touches nothing, so a slow database never gets the
//! process restarted; readiness checks PostgreSQL and fails while the service drains.{% if redis %}
//! Redis is listed too, but the service works without it (each use falls back), so Redis down
//! makes the service degraded, still ready.{% endif %}

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Json;
use crate::AppState;

/// How long readiness waits for PostgreSQL before calling it down.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(live)).routes(routes!(ready))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
{%- if redis %}
    /// Serving, without a dependency it can do without.
    Degraded,
{%- endif %}
    Down,
}

/// The process is running.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    pub status: Status,
}

/// Whether the service should receive traffic, and why not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: Status,
    /// True once a shutdown has started; the service finishes open requests, then exits.
    pub draining: bool,
    pub checks: Checks,
}

/// The state of each dependency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Checks {
    pub postgres: Status,
{%- if redis %}
    pub redis: Status,
{%- endif %}
}

/// Liveness probe
#[utoipa::path(get, path = "/health/live", tag = "health", operation_id = "live",
    responses((status = 200, description = "The process is running", body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness { status: Status::Up })
}

/// Readiness probe
#[utoipa::path(get, path = "/health/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready for traffic{% if redis %} (`degraded` when Redis is down){% endif %}", body = Readiness),
        (status = 503, description = "A dependency is down or the service is draining", body = Readiness),
    ))]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let draining = state.lifecycle.is_draining();
    let postgres = match state.db.ping(DATABASE_TIMEOUT).await {
        Ok(()) => Status::Up,
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "readiness: postgres is down");
            Status::Down
        }
    };
{%- if redis %}
    let redis = if state.redis.ping().await {
        Status::Up
    } else {
        Status::Down
    };
{%- endif %}
    let status = if draining || postgres == Status::Down {
        Status::Down
{%- if redis %}
    } else if redis == Status::Down {
        Status::Degraded
{%- endif %}
    } else {
        Status::Up
    };
    let code = if status == Status::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(Readiness {
            status,
            draining,
            checks: Checks { postgres{% if redis %}, redis{% endif %} },
        }),
    )
}
