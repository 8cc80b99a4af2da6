//! Cron schedules. `job_schedules` holds each schedule's next tick; every worker looks for due
//! ticks, and the one that locks a due row (`FOR UPDATE SKIP LOCKED`) enqueues its job and
//! moves the tick on in one transaction, so each tick runs once however many workers run.
//! Ticks missed while no worker ran collapse into one run.

use std::time::Duration;

use anyhow::Context;
use croner::Cron;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::queue::{self, NewJob};
use super::registry::Scheduled;
use crate::AppState;

/// The schedules of a registry, their patterns parsed.
#[derive(Debug)]
pub struct Schedules(Vec<(Scheduled, Cron)>);

impl Schedules {
    pub fn parse(schedules: &[Scheduled]) -> anyhow::Result<Self> {
        let parsed = schedules
            .iter()
            .map(|scheduled| {
                let cron = scheduled.pattern.parse::<Cron>().with_context(|| {
                    format!(
                        "schedule {}: invalid cron pattern {:?}",
                        scheduled.kind, scheduled.pattern
                    )
                })?;
                Ok((scheduled.clone(), cron))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self(parsed))
    }

    /// Enqueues the due ticks until the task is aborted.
    pub async fn run(self, state: AppState) {
        if self.0.is_empty() {
            return;
        }
        let pool = state.db.pool();
        let at_most = state.config.jobs.poll_interval();
        while let Err(err) = self.register(pool).await {
            tracing::warn!(error = %err, "cannot register the job schedules");
            tokio::time::sleep(at_most).await;
        }
        loop {
            if let Err(err) = self.enqueue_due(pool).await {
                tracing::warn!(error = %err, "cannot enqueue scheduled jobs");
            }
            tokio::time::sleep(self.until_next_tick().min(at_most)).await;
        }
    }

    /// Adds the schedules the table lacks and recomputes those whose pattern changed.
    async fn register(&self, pool: &PgPool) -> anyhow::Result<()> {
        for (scheduled, cron) in &self.0 {
            sqlx::query(
                "INSERT INTO job_schedules (name, pattern, next_run_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, next_run_at = excluded.next_run_at \
                 WHERE job_schedules.pattern <> excluded.pattern",
            )
            .bind(scheduled.kind)
            .bind(scheduled.pattern)
            .bind(next_tick(cron, OffsetDateTime::now_utc())?)
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    async fn enqueue_due(&self, pool: &PgPool) -> anyhow::Result<()> {
        let names: Vec<&str> = self.0.iter().map(|(scheduled, _)| scheduled.kind).collect();
        let mut tx = pool.begin().await?;
        let due: Vec<(String, OffsetDateTime)> = sqlx::query_as(
            "SELECT name, now() FROM job_schedules WHERE name = ANY($1) AND next_run_at <= now() \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        for (name, now) in due {
            let Some((scheduled, cron)) = self.0.iter().find(|(scheduled, _)| scheduled.kind == name) else {
                continue;
            };
            let job = NewJob {
                queue: scheduled.queue,
                kind: scheduled.kind,
                version: scheduled.version,
                payload: (scheduled.payload)()?,
                // A tick while the previous tick's job is still pending adds nothing.
                dedupe_key: Some("schedule"),
                max_attempts: scheduled.max_attempts,
                run_at: None,
                traceparent: None,
            };
            queue::insert(&mut tx, job).await?;
            // From the database's clock, which every worker shares.
            sqlx::query("UPDATE job_schedules SET next_run_at = $2 WHERE name = $1")
                .bind(&name)
                .bind(next_tick(cron, now)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How long until the earliest tick of any schedule, by this host's clock.
    fn until_next_tick(&self) -> Duration {
        let now = OffsetDateTime::now_utc();
        self.0
            .iter()
            .filter_map(|(_, cron)| next_tick(cron, now).ok())
            .map(|tick| (tick - now).unsigned_abs())
            .min()
            .unwrap_or(Duration::MAX)
    }
}

/// The first tick of `cron` after `after`.
fn next_tick(cron: &Cron, after: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    let after = chrono::DateTime::from_timestamp(after.unix_timestamp(), after.nanosecond())
        .context("time out of the cron range")?;
    let next = cron.find_next_occurrence(&after, false)?;
    let nanos = next.timestamp_nanos_opt().context("time out of range")?;
    Ok(OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_tick_is_the_first_after_the_given_time() {
        let cron: Cron = "17 * * * *".parse().expect("valid pattern");
        let at = time::macros::datetime!(2026-03-01 10:17:00 UTC);

        assert_eq!(
            next_tick(&cron, at).expect("a tick"),
            time::macros::datetime!(2026-03-01 11:17:00 UTC)
        );
        assert_eq!(next_tick(&cron, at - Duration::from_secs(1)).expect("a tick"), at);
    }

    #[test]
    fn the_service_schedules_parse_and_a_bad_pattern_names_its_schedule() {
        Schedules::parse(super::super::registry().schedules()).expect("the service's schedules parse");

        let bad = super::super::Registry::default().every("61 * * * *", super::super::PruneDeadJobs);
        let err = Schedules::parse(bad.schedules()).expect_err("minute 61");

        assert!(
            format!("{err:#}").starts_with("schedule prune-dead-jobs: invalid cron pattern \"61 * * * *\""),
            "{err:#}"
        );
    }
}
