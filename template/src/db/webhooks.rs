//! Queries on `webhook_endpoints` and `webhook_deliveries`. An account reaches its own
//! endpoints, administrators everyone's ([`Scope`]); deliveries are read through their
//! endpoint, so the same scope covers them.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::DbError;
use crate::domain::scope::Scope;

/// Endpoints one account may register: each change is delivered to every subscribed one.
pub const MAX_ENDPOINTS_PER_ACCOUNT: i64 = 20;

/// A registered endpoint; its secret is read only to sign.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct NewEndpoint<'a> {
    pub owner_id: Uuid,
    pub url: &'a str,
    pub events: Vec<String>,
    pub secret: &'a str,
    pub description: Option<&'a str>,
}

/// What a worker needs to deliver to an endpoint.
#[derive(Debug, sqlx::FromRow)]
pub struct Destination {
    pub url: String,
    pub secret: String,
}

/// One attempt at delivering one message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub message_id: String,
    pub event: String,
    pub attempt: i32,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub endpoint_id: Uuid,
    pub message_id: &'a str,
    pub event: &'a str,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<&'a str>,
}

fn classify(err: sqlx::Error) -> DbError {
    DbError::classify(err, &[])
}

/// Inserts the endpoint unless its owner has [`MAX_ENDPOINTS_PER_ACCOUNT`] already (`None`).
pub async fn insert(conn: &mut PgConnection, new: NewEndpoint<'_>) -> Result<Option<Endpoint>, DbError> {
    sqlx::query_as(
        "INSERT INTO webhook_endpoints (id, owner_id, url, events, secret, description) \
         SELECT $1, $2, $3, $4, $5, $6 \
         WHERE (SELECT count(*) FROM webhook_endpoints WHERE owner_id = $2) < $7 \
         RETURNING id, owner_id, url, events, description, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(new.owner_id)
    .bind(new.url)
    .bind(&new.events)
    .bind(new.secret)
    .bind(new.description)
    .bind(MAX_ENDPOINTS_PER_ACCOUNT)
    .fetch_optional(conn)
    .await
    .map_err(classify)
}

/// The scope's endpoints, newest first.
pub async fn list(conn: &mut PgConnection, scope: Scope) -> Result<Vec<Endpoint>, DbError> {
    sqlx::query_as(
        "SELECT id, owner_id, url, events, description, created_at FROM webhook_endpoints \
         WHERE $1::uuid IS NULL OR owner_id = $1 ORDER BY owner_id, id DESC LIMIT 100",
    )
    .bind(scope.owner())
    .fetch_all(conn)
    .await
    .map_err(classify)
}

pub async fn find(conn: &mut PgConnection, scope: Scope, id: Uuid) -> Result<Option<Endpoint>, DbError> {
    sqlx::query_as(
        "SELECT id, owner_id, url, events, description, created_at FROM webhook_endpoints \
         WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)",
    )
    .bind(id)
    .bind(scope.owner())
    .fetch_optional(conn)
    .await
    .map_err(classify)
}

/// Deletes the endpoint and its delivery records; whether it existed in the scope.
pub async fn delete(conn: &mut PgConnection, scope: Scope, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)")
        .bind(id)
        .bind(scope.owner())
        .execute(conn)
        .await
        .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}

/// The endpoints that receive `event` of the project `project_id`: its owner's that
/// subscribe to it.
pub async fn subscribed(conn: &mut PgConnection, project_id: Uuid, event: &str) -> Result<Vec<Uuid>, DbError> {
    sqlx::query_scalar(
        "SELECT e.id FROM webhook_endpoints e JOIN projects p ON p.owner_id = e.owner_id \
         WHERE p.id = $1 AND $2 = ANY(e.events)",
    )
    .bind(project_id)
    .bind(event)
    .fetch_all(conn)
    .await
    .map_err(classify)
}

/// Where to deliver; `None` once the endpoint is deleted.
pub async fn destination(db: impl PgExecutor<'_>, endpoint_id: Uuid) -> Result<Option<Destination>, DbError> {
    sqlx::query_as("SELECT url, secret FROM webhook_endpoints WHERE id = $1")
        .bind(endpoint_id)
        .fetch_optional(db)
        .await
        .map_err(classify)
}

/// Records an attempt, numbered after the earlier attempts at the same message.
pub async fn record(db: impl PgExecutor<'_>, delivery: NewDelivery<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, event, attempt, status, latency_ms, error) \
         SELECT $1, $2, $3, $4, count(*) + 1, $5, $6, $7 FROM webhook_deliveries \
         WHERE endpoint_id = $2 AND message_id = $3",
    )
    .bind(Uuid::now_v7())
    .bind(delivery.endpoint_id)
    .bind(delivery.message_id)
    .bind(delivery.event)
    .bind(delivery.status.map(i32::from))
    .bind(i32::try_from(delivery.latency.as_millis()).unwrap_or(i32::MAX))
    .bind(delivery.error)
    .execute(db)
    .await
    .map_err(classify)?;
    Ok(())
}

/// The endpoint's latest attempts, newest first; `None` when the endpoint is not in scope.
pub async fn deliveries(
    conn: &mut PgConnection,
    scope: Scope,
    endpoint_id: Uuid,
    limit: i64,
) -> Result<Option<Vec<Delivery>>, DbError> {
    if find(conn, scope, endpoint_id).await?.is_none() {
        return Ok(None);
    }
    sqlx::query_as(
        "SELECT id, message_id, event, attempt, status, latency_ms, error, created_at FROM webhook_deliveries \
         WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(endpoint_id)
    .bind(limit)
    .fetch_all(conn)
    .await
    .map(Some)
    .map_err(classify)
}

/// Deletes delivery records older than `age`; how many.
pub async fn prune(db: impl PgExecutor<'_>, age: Duration) -> Result<u64, DbError> {
    let done = sqlx::query("DELETE FROM webhook_deliveries WHERE created_at < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(db)
        .await
        .map_err(classify)?;
    Ok(done.rows_affected())
}
