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

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

pub use breaker::Breakers;
pub use config::WebhooksConfig;
pub use deliver::{Attempt, Deliver, Outbound};
pub use metrics::WebhookMetrics;
pub use prune::PruneDeliveries;

use crate::db;
pub use crate::events::EventType;
use crate::jobs::{self, EnqueueError, Options};

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
