//! `/api/v1/webhooks`: an account's webhook endpoints, owned like projects: register one
//! (its signing secret is shown in that answer only), list, read and delete them, and read
//! the record of its delivery attempts.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use validator::Validate;

use super::authn::CurrentUser;
use super::error::{ApiError, FieldError};
use super::extract::{Json, Path, Query, Valid};
use crate::AppState;
use crate::db;
use crate::jobs::EnqueueError;
use crate::webhooks::{EventType, guard, signature};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(list_deliveries))
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    /// The account whose projects' events it receives.
    pub owner_id: Uuid,
    #[schema(example = "https://hooks.example.com/projects")]
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<db::webhooks::Endpoint> for Endpoint {
    fn from(endpoint: db::webhooks::Endpoint) -> Self {
        Self {
            id: endpoint.id,
            owner_id: endpoint.owner_id,
            url: endpoint.url,
            // The table holds only names the API accepted.
            events: endpoint
                .events
                .iter()
                .filter_map(|name| EventType::parse(name))
                .collect(),
            description: endpoint.description,
            created_at: endpoint.created_at,
        }
    }
}

/// A newly registered endpoint, with the secret that signs its deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Shown here only: store it with the receiver, which verifies each delivery's
    /// `webhook-signature` with it (Standard Webhooks).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Endpoints {
    /// Newest first.
    pub items: Vec<Endpoint>,
}

/// A new endpoint.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An http(s) URL of a public host, without credentials.
    #[validate(length(min = 1, max = 2000, message = "must be 1 to 2000 characters"))]
    #[schema(example = "https://hooks.example.com/projects", min_length = 1, max_length = 2000)]
    pub url: String,
    /// The events to deliver; at least one. A name given twice counts once.
    #[validate(length(min = 1, max = 6, message = "name 1 to 6 events"))]
    #[schema(min_items = 1, max_items = 6)]
    pub events: Vec<EventType>,
    #[validate(
        custom(function = "super::validation::no_nul"),
        length(max = 500, message = "must be at most 500 characters")
    )]
    #[schema(max_length = 500, pattern = "^[^\\u0000]*$")]
    pub description: Option<String>,
}

/// One attempt at delivering a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    /// `webhook-id`: the same for every attempt at one message.
    #[schema(example = "msg_0190d1e2a3b4c5d6e7f8a9b0c1d2e3f4")]
    pub message_id: String,
    /// The event type, such as `project.created`.
    #[schema(example = "project.created")]
    pub event: String,
    /// 1 for the first attempt at the message.
    pub attempt: i32,
    /// The receiver's status; absent when no answer came.
    pub status: Option<i32>,
    pub latency_ms: i32,
    /// Why the attempt failed; absent when delivered.
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<db::webhooks::Delivery> for Delivery {
    fn from(delivery: db::webhooks::Delivery) -> Self {
        Self {
            id: delivery.id,
            message_id: delivery.message_id,
            event: delivery.event,
            attempt: delivery.attempt,
            status: delivery.status,
            latency_ms: delivery.latency_ms,
            error: delivery.error,
            created_at: delivery.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deliveries {
    /// Newest first.
    pub items: Vec<Delivery>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveries {
    /// How many, 1 to 100; values outside are clamped. Defaults to 50.
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

const NOT_FOUND: &str = "webhook endpoint not found";

impl From<EnqueueError> for ApiError {
    fn from(err: EnqueueError) -> Self {
        match err {
            EnqueueError::Db(err) => err.into(),
            err => Self::Internal(err.into()),
        }
    }
}

/// List webhook endpoints
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "listWebhookEndpoints",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = Endpoints),
        (status = 401, description = "No valid access token"),
    ))]
async fn list_endpoints(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Endpoints>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let endpoints = db::webhooks::list(&mut conn, user.scope()).await?;
    Ok(Json(Endpoints {
        items: endpoints.into_iter().map(Endpoint::from).collect(),
    }))
}

/// Register a webhook endpoint
///
/// Deliveries to it are signed with the secret in the answer, which is not shown again. The
/// URL must reach a public address: loopback, private, link-local and metadata addresses are
/// refused, here and at every delivery.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", operation_id = "createWebhookEndpoint",
    security(("bearer" = [])),
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Registered", body = CreatedEndpoint,
            headers(("Location" = String, description = "URL of the new endpoint"))),
        (status = 401, description = "No valid access token"),
        (status = 409, description = "The account has as many endpoints as it may"),
        (status = 422, description = "Invalid fields, or a URL that is not a public destination"),
    ))]
async fn create_endpoint(
    State(state): State<AppState>,
    user: CurrentUser,
    Valid(body): Valid<CreateEndpoint>,
) -> Result<impl IntoResponse, ApiError> {
    let allow_private = state.config.webhooks.allow_private_destinations;
    let url = guard::parse(&body.url, allow_private).map_err(refused_url)?;
    guard::check_resolved(&url, allow_private).await.map_err(refused_url)?;
    let mut events = body.events;
    events.sort_unstable_by_key(|event| event.as_str());
    events.dedup();
    let secret = signature::new_secret()?;
    let mut conn = state.db.acquire().await?;
    let endpoint = db::webhooks::insert(
        &mut conn,
        db::webhooks::NewEndpoint {
            owner_id: user.id,
            url: url.as_str(),
            events: events.iter().map(|event| event.as_str().to_owned()).collect(),
            secret: &secret,
            description: body.description.as_deref(),
        },
    )
    .await?
    .ok_or_else(|| {
        ApiError::Conflict(format!(
            "an account may register at most {} webhook endpoints; delete one first",
            db::webhooks::MAX_ENDPOINTS_PER_ACCOUNT
        ))
    })?;
    let location = format!("/api/v1/webhooks/{}", endpoint.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedEndpoint {
            endpoint: endpoint.into(),
            secret,
        }),
    ))
}

fn refused_url(refused: guard::Refused) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: "url".to_owned(),
        code: "destination".to_owned(),
        message: refused.0,
    }])
}

/// Get a webhook endpoint
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "getWebhookEndpoint",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = Endpoint),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such endpoint"),
    ))]
async fn get_endpoint(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Endpoint>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let endpoint = db::webhooks::find(&mut conn, user.scope(), id)
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Json(endpoint.into()))
}

/// Delete a webhook endpoint
///
/// Its pending deliveries are dropped, and its delivery records deleted.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", operation_id = "deleteWebhookEndpoint",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such endpoint"),
    ))]
async fn delete_endpoint(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.db.acquire().await?;
    if !db::webhooks::delete(&mut conn, user.scope(), id).await? {
        return Err(ApiError::NotFound(NOT_FOUND));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// List an endpoint's delivery attempts
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", operation_id = "listWebhookDeliveries",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id"), ListDeliveries),
    responses(
        (status = 200, description = "The latest attempts", body = Deliveries),
        (status = 400, description = "Invalid query parameters"),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "No such endpoint"),
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    Query(query): Query<ListDeliveries>,
) -> Result<Json<Deliveries>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut conn = state.db.acquire().await?;
    let deliveries = db::webhooks::deliveries(&mut conn, user.scope(), id, i64::from(limit))
        .await?
        .ok_or(ApiError::NotFound(NOT_FOUND))?;
    Ok(Json(Deliveries {
        items: deliveries.into_iter().map(Delivery::from).collect(),
    }))
}
