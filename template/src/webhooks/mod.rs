//! Webhooks: accounts register endpoints for the events of their projects and tasks, and each
//! event becomes one delivery job per subscribed endpoint, enqueued in the transaction of the
//! change, so that an endpoint hears of exactly the changes that committed. Deliveries are
//! signed per Standard Webhooks ([`signature`]), sent by a client with timeouts, a response
//! cap, no redirects, a circuit breaker per destination ([`breaker`]) and a guard against
//! requests into the service's own network ([`guard`]), and every attempt is recorded.

mod breaker;
mod config;
mod deliver;
pub mod guard;
mod metrics;
mod prune;
pub mod signature;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

pub use breaker::Breakers;
pub use config::WebhooksConfig;
pub use deliver::{Attempt, Deliver, Outbound};
pub use metrics::WebhookMetrics;
pub use prune::PruneDeliveries;

use crate::db;
use crate::jobs::{self, EnqueueError, Options};

/// What happened; an endpoint subscribes to some of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "project.created")]
    ProjectCreated,
    #[serde(rename = "project.updated")]
    ProjectUpdated,
    #[serde(rename = "project.deleted")]
    ProjectDeleted,
    #[serde(rename = "task.created")]
    TaskCreated,
    #[serde(rename = "task.updated")]
    TaskUpdated,
    #[serde(rename = "task.deleted")]
    TaskDeleted,
}

impl EventType {
    pub const ALL: [Self; 6] = [
        Self::ProjectCreated,
        Self::ProjectUpdated,
        Self::ProjectDeleted,
        Self::TaskCreated,
        Self::TaskUpdated,
        Self::TaskDeleted,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProjectCreated => "project.created",
            Self::ProjectUpdated => "project.updated",
            Self::ProjectDeleted => "project.deleted",
            Self::TaskCreated => "task.created",
            Self::TaskUpdated => "task.updated",
            Self::TaskDeleted => "task.deleted",
        }
    }
}

/// The body of a delivery, in the shape Standard Webhooks recommends.
#[derive(Debug, Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    event: EventType,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: &'a T,
}

/// Enqueues a delivery of `event`, about the project `project_id` (or one of its tasks), with
/// `data` (the resource as the API shows it) to every endpoint of the project's owner that
/// subscribes to it. Call it on the transaction of the change: the deliveries then exist
/// exactly when the change commits. A deletion is announced before the row goes.
pub async fn announce(
    conn: &mut PgConnection,
    project_id: Uuid,
    event: EventType,
    data: &impl Serialize,
) -> Result<(), EnqueueError> {
    let endpoints = db::webhooks::subscribed(conn, project_id, event.as_str()).await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(&Envelope {
        event,
        timestamp: OffsetDateTime::now_utc(),
        data,
    })?;
    let request_id = crate::http::middleware::current_request_id();
    for endpoint_id in endpoints {
        let delivery = Deliver {
            endpoint_id,
            message_id: format!("msg_{}", Uuid::now_v7().simple()),
            event,
            body: body.clone(),
            request_id: request_id.clone(),
        };
        jobs::enqueue(conn, &delivery, Options::default()).await?;
    }
    Ok(())
}
