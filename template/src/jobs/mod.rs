//! Background jobs on PostgreSQL: a job is enqueued in the transaction of the write that
//! causes it, run by a worker (the `worker` subcommand, or in process) at least once, retried
//! with backoff, and kept as dead with its error when it cannot succeed. [`registry`] lists
//! the service's jobs and cron schedules; add yours there.

mod config;
mod metrics;
mod prune;
{%- if auth == "issuer" %}
mod prune_sessions;
{%- endif %}
pub mod queue;
mod registry;
mod schedule;
mod worker;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

pub use config::JobsConfig;
pub use metrics::JobMetrics;
pub use prune::PruneDeadJobs;
{%- if auth == "issuer" %}
pub use prune_sessions::PruneExpiredSessions;
{%- endif %}
pub use registry::Registry;
pub use worker::Worker;

use crate::AppState;
use crate::db::DbError;
{%- if example %}
use crate::webhooks::{Deliver, PruneDeliveries};
{%- endif %}

/// The jobs this service runs, and when the scheduled ones run.
pub fn registry() -> Registry {
{%- if auth == "issuer" or example %}
    Registry::default()
        .every(PruneDeadJobs::SCHEDULE, PruneDeadJobs)
{%- if auth == "issuer" %}
        .every(PruneExpiredSessions::SCHEDULE, PruneExpiredSessions)
{%- endif %}
{%- if example %}
        .with::<Deliver>()
        .every(PruneDeliveries::SCHEDULE, PruneDeliveries)
{%- endif %}
{%- else %}
    Registry::default().every(PruneDeadJobs::SCHEDULE, PruneDeadJobs)
{%- endif %}
}

/// Largest payload a job may carry, serialized; a larger one is refused at enqueue. A job
/// refers to big data by id instead of carrying it.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// A kind of job: its payload is the implementing type, stored as JSON.
///
/// A job runs at least once: after a crash or a lost lease it may run again, so `run` must be
/// safe to repeat (check before acting, or make the effect idempotent).
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Names the kind in the table; never reuse one for another payload.
    const KIND: &'static str;
    /// Of the payload's shape. Change it when a stored payload would no longer mean the same;
    /// jobs of another version then go to dead with a clear error instead of running.
    const VERSION: i32 = 1;
    const QUEUE: &'static str = "default";
    /// Attempts before the job is dead, the first included.
    const MAX_ATTEMPTS: i32 = 5;

    /// Does the work. An error, or a panic, is a failed attempt.
    fn run(self, state: AppState) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// When and how a job is enqueued, beyond its payload.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Not before this time; now when `None`.
    pub run_at: Option<OffsetDateTime>,
    /// While a job of the same kind with this key is ready or running, enqueueing another
    /// does nothing.
    pub dedupe_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("job payload of {size} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge { size: usize },
    #[error("job payload cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Enqueues `job` on `conn`, usually the transaction of the write that causes it, so that the
/// job exists exactly when the write committed. Returns the job's id, or `None` when a pending
/// job has the same dedupe key.
pub async fn enqueue<J: Job>(conn: &mut PgConnection, job: &J, options: Options) -> Result<Option<Uuid>, EnqueueError> {
    let payload = serde_json::to_string(job)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(EnqueueError::TooLarge { size: payload.len() });
    }
    let new = queue::NewJob {
        queue: J::QUEUE,
        kind: J::KIND,
        version: J::VERSION,
        payload,
        dedupe_key: options.dedupe_key.as_deref(),
        max_attempts: J::MAX_ATTEMPTS,
        run_at: options.run_at,
        traceparent: crate::telemetry::traceparent(),
    };
    Ok(queue::insert(conn, new).await?)
}
