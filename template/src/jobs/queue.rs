//! The queue's SQL on the `jobs` table: enqueue inside the caller's transaction, claim with
//! `FOR UPDATE SKIP LOCKED` under a lease, then delete on success (many at once), reschedule
//! with backoff on failure, or keep as dead. A worker's updates name its lease and the attempt
//! it claimed, so a worker that lost its lease (it stalled, and another claimed the job)
//! changes nothing.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::DbError;

/// A job to insert; [`super::enqueue`] builds it from a typed [`super::Job`].
#[derive(Debug)]
pub struct NewJob<'a> {
    pub queue: &'a str,
    pub kind: &'a str,
    pub version: i32,
    /// JSON text.
    pub payload: String,
    pub dedupe_key: Option<&'a str>,
    pub max_attempts: i32,
    pub run_at: Option<OffsetDateTime>,
    pub traceparent: Option<String>,
}

/// Inserts the job; `None` when a ready or running job of the same kind has its dedupe key.
pub async fn insert(conn: &mut PgConnection, job: NewJob<'_>) -> Result<Option<Uuid>, DbError> {
    sqlx::query_scalar(
        "INSERT INTO jobs (id, queue, kind, version, payload, dedupe_key, max_attempts, run_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, coalesce($8, now()), $9) \
         ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'dead' DO NOTHING \
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(job.queue)
    .bind(job.kind)
    .bind(job.version)
    .bind(job.payload)
    .bind(job.dedupe_key)
    .bind(job.max_attempts)
    .bind(job.run_at)
    .bind(job.traceparent)
    .fetch_optional(conn)
    .await
    .map_err(DbError::unconstrained)
}

/// A job a worker now holds.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub kind: String,
    pub version: i32,
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempts: i32,
    pub max_attempts: i32,
    pub traceparent: Option<String>,
}

/// Who claims what: a worker claims only the kinds it can run, so that during a rolling
/// deployment an older worker leaves a new kind to the newer ones.
#[derive(Debug)]
pub struct Claim<'a> {
    pub queue: &'a str,
    pub kinds: &'a [&'static str],
    pub owner: Uuid,
    pub lease: Duration,
}

/// Claims up to `limit` jobs: running ones whose lease ran out (their worker died) first,
/// then due ready ones, oldest first. Locked rows are skipped, so concurrent workers never wait
/// for each other or claim the same job. Each kind of candidate is read from its own partial
/// index in order, so a claim reads a few index entries however long the backlog; one
/// condition joining both with `OR` would sort every due job on each claim.
pub async fn claim(db: impl PgExecutor<'_>, claim: &Claim<'_>, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH expired AS ( \
             SELECT id FROM jobs \
             WHERE queue = $1 AND state = 'running' AND lease_until < now() AND kind = ANY($5) \
             ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED), \
         ready AS ( \
             SELECT id FROM jobs \
             WHERE queue = $1 AND state = 'ready' AND run_at <= now() AND kind = ANY($5) \
             ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2, \
             lease_until = now() + make_interval(secs => $4), updated_at = now() \
         WHERE id IN (SELECT id FROM expired UNION ALL SELECT id FROM ready LIMIT $3) \
         RETURNING id, kind, version, payload, attempts, max_attempts, traceparent",
    )
    .bind(claim.queue)
    .bind(claim.owner)
    .bind(limit)
    .bind(claim.lease.as_secs_f64())
    .bind(claim.kinds)
    .fetch_all(db)
    .await
}

/// In how many seconds (by the database's clock, which every worker shares) the next job of
/// the claim's kinds becomes claimable, if any: a ready job falls due, or a running job's
/// lease runs out. Zero or less when one already is.
pub async fn next_due(db: impl PgExecutor<'_>, claim: &Claim<'_>) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM least( \
             (SELECT min(run_at) FROM jobs WHERE queue = $1 AND state = 'ready' AND kind = ANY($2)), \
             (SELECT min(lease_until) FROM jobs WHERE queue = $1 AND state = 'running' AND kind = ANY($2)) \
         ) - now())::float8",
    )
    .bind(claim.queue)
    .bind(claim.kinds)
    .fetch_one(db)
    .await
}

/// Extends the leases of the jobs, as `(id, attempt)` pairs, that `owner` holds.
pub async fn renew(
    db: impl PgExecutor<'_>,
    owner: Uuid,
    jobs: &[(Uuid, i32)],
    lease: Duration,
) -> Result<u64, sqlx::Error> {
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = jobs.iter().copied().unzip();
    let done = sqlx::query(
        "UPDATE jobs SET lease_until = now() + make_interval(secs => $2) \
         FROM unnest($3::uuid[], $4::int4[]) AS held (id, attempts) \
         WHERE jobs.id = held.id AND jobs.attempts = held.attempts AND jobs.lease_owner = $1 \
             AND jobs.state = 'running'",
    )
    .bind(owner)
    .bind(lease.as_secs_f64())
    .bind(ids)
    .bind(attempts)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Removes jobs that succeeded, as `(id, attempt)` pairs, in one statement; returns the ids
/// removed, which leaves out any whose lease was lost meanwhile.
pub async fn succeed(db: impl PgExecutor<'_>, jobs: &[(Uuid, i32)], owner: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = jobs.iter().copied().unzip();
    sqlx::query_scalar(
        "DELETE FROM jobs USING unnest($1::uuid[], $2::int4[]) AS done (id, attempts) \
         WHERE jobs.id = done.id AND jobs.attempts = done.attempts AND jobs.lease_owner = $3 \
         RETURNING jobs.id",
    )
    .bind(ids)
    .bind(attempts)
    .bind(owner)
    .fetch_all(db)
    .await
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Ready again after the backoff.
    Retrying,
    /// Out of attempts, or refused for good.
    Dead,
    /// The lease had been lost; the current holder decides.
    LeaseLost,
}

/// Exponential backoff with jitter: attempt `n` waits `base * 2^(n-1)`, at most `max`, then a
/// random half of that is taken off so that jobs that failed together do not retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

/// Records a failed attempt: the job is retried after the backoff, or dead once it has used
/// its attempts or when `retry` is false (it can never succeed).
pub async fn fail(
    db: impl PgExecutor<'_>,
    job: &Claimed,
    owner: Uuid,
    error: &str,
    retry: bool,
    backoff: Backoff,
) -> Result<AfterFailure, sqlx::Error> {
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE jobs SET \
             state = CASE WHEN $4 AND attempts < max_attempts THEN 'ready' ELSE 'dead' END, \
             run_at = now() + make_interval(secs => \
                 least($6, $5 * power(2, attempts - 1)) * (0.5 + random() / 2)), \
             last_error = $7, lease_owner = NULL, lease_until = NULL, updated_at = now() \
         WHERE id = $1 AND lease_owner = $2 AND attempts = $3 \
         RETURNING state",
    )
    .bind(job.id)
    .bind(owner)
    .bind(job.attempts)
    .bind(retry)
    .bind(backoff.base.as_secs_f64())
    .bind(backoff.max.as_secs_f64())
    .bind(error)
    .fetch_optional(db)
    .await?;
    Ok(match state.as_deref() {
        Some("ready") => AfterFailure::Retrying,
        Some(_) => AfterFailure::Dead,
        None => AfterFailure::LeaseLost,
    })
}

/// Gives back every job `owner` still holds, as if never claimed: used at shutdown for jobs
/// that did not finish in time, so they neither wait for their lease nor lose an attempt.
pub async fn hand_back(db: impl PgExecutor<'_>, owner: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'ready', attempts = attempts - 1, run_at = now(), \
             lease_owner = NULL, lease_until = NULL, updated_at = now() \
         WHERE lease_owner = $1 AND state = 'running'",
    )
    .bind(owner)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A job that used its attempts, as listed for an operator.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadJob {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    /// When its last attempt failed.
    pub died_at: OffsetDateTime,
}

/// The dead jobs, most recent first.
pub async fn dead(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<DeadJob>, DbError> {
    sqlx::query_as(
        "SELECT id, queue, kind, attempts, last_error, created_at, updated_at AS died_at \
         FROM jobs WHERE state = 'dead' ORDER BY updated_at DESC, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    .map_err(DbError::unconstrained)
}

/// Makes a dead job ready again with fresh attempts; false when there is no such dead job.
pub async fn retry(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'ready', attempts = 0, run_at = now(), updated_at = now() \
         WHERE id = $1 AND state = 'dead'",
    )
    .bind(id)
    .execute(db)
    .await
    .map_err(|err| {
        DbError::classify(
            err,
            &[(
                "jobs_dedupe_key_idx",
                "a job with the same dedupe key is already pending",
            )],
        )
    })?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a dead job; false when there is no such dead job.
pub async fn discard(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'dead'")
        .bind(id)
        .execute(db)
        .await
        .map_err(DbError::unconstrained)?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the jobs that died longer than `age` ago.
pub async fn prune_dead(db: impl PgExecutor<'_>, age: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM jobs WHERE state = 'dead' AND updated_at < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// How many jobs each queue holds in each state, and how long its oldest due job has waited.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueDepth {
    pub queue: String,
    pub state: String,
    pub jobs: i64,
    pub oldest_due_secs: Option<f64>,
}

pub async fn depths(db: impl PgExecutor<'_>) -> Result<Vec<QueueDepth>, sqlx::Error> {
    sqlx::query_as(
        "SELECT queue, state, count(*) AS jobs, \
             extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 'ready' AND run_at <= now()))::float8 \
                 AS oldest_due_secs \
         FROM jobs GROUP BY queue, state",
    )
    .fetch_all(db)
    .await
}
