//! Cron schedules. `job_schedules` holds each schedule's next tick; every worker looks for due
//! ticks, and the one that locks a due row (`FOR UPDATE SKIP LOCKED`) enqueues its job and
//! moves the tick on in one transaction, so each tick runs once however many workers run.
//! Ticks missed while no worker ran collapse into one run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use croner::Cron;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::queue::{self, NewJob};
use super::registry::Scheduled;
use crate::AppState;

/// The schedules of a registry with their patterns, the configured ones in place of the
/// built-in ones, parsed.
#[derive(Debug)]
pub struct Schedules(Vec<(Scheduled, String, Cron)>);

impl Schedules {
    /// `overrides` holds patterns by kind, hyphens written as underscores (the form an
    /// environment variable takes); one that names no schedule is refused, as a misspelt one
    /// would otherwise change nothing without a word.
    pub fn parse(schedules: &[Scheduled], overrides: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let key = |scheduled: &Scheduled| scheduled.kind.replace('-', "_");
        if let Some(unknown) = overrides
            .keys()
            .find(|name| !schedules.iter().any(|scheduled| key(scheduled) == **name))
        {
            let known: Vec<String> = schedules.iter().map(key).collect();
            bail!(
                "APP_JOBS__SCHEDULES__{} names no schedule; the schedules are {}",
                unknown.to_uppercase(),
                known.join(", ")
            );
        }
        let parsed = schedules
            .iter()
            .map(|scheduled| {
                let pattern = overrides.get(&key(scheduled)).map_or(scheduled.pattern, String::as_str);
                let cron = pattern
                    .parse::<Cron>()
                    .with_context(|| format!("schedule {}: invalid cron pattern {pattern:?}", scheduled.kind))?;
                Ok((scheduled.clone(), pattern.to_owned(), cron))
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
        for (scheduled, pattern, cron) in &self.0 {
            sqlx::query(
                "INSERT INTO job_schedules (name, pattern, next_run_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, next_run_at = excluded.next_run_at \
                 WHERE job_schedules.pattern <> excluded.pattern",
            )
            .bind(scheduled.kind)
            .bind(pattern)
            .bind(next_tick(cron, OffsetDateTime::now_utc())?)
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    async fn enqueue_due(&self, pool: &PgPool) -> anyhow::Result<()> {
        let names: Vec<&str> = self.0.iter().map(|(scheduled, _, _)| scheduled.kind).collect();
        let mut tx = crate::db::begin(pool).await?;
        let due: Vec<(String, OffsetDateTime)> = sqlx::query_as(
            "SELECT name, now() FROM job_schedules WHERE name = ANY($1) AND next_run_at <= now() \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        for (name, now) in due {
            let Some((scheduled, _, cron)) = self.0.iter().find(|(scheduled, _, _)| scheduled.kind == name) else {
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
            .filter_map(|(_, _, cron)| next_tick(cron, now).ok())
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
        let none = BTreeMap::new();
        Schedules::parse(super::super::registry().schedules(), &none).expect("the service's schedules parse");

        let bad = super::super::Registry::default().every("61 * * * *", super::super::PruneDeadJobs);
        let err = Schedules::parse(bad.schedules(), &none).expect_err("minute 61");

        assert!(
            format!("{err:#}").starts_with("schedule prune-dead-jobs: invalid cron pattern \"61 * * * *\""),
            "{err:#}"
        );
    }

    #[test]
    fn a_configured_pattern_replaces_the_built_in_one_and_must_name_a_schedule() {
        let registry = super::super::Registry::default().every("17 * * * *", super::super::PruneDeadJobs);
        let daily = BTreeMap::from([("prune_dead_jobs".to_owned(), "0 3 * * *".to_owned())]);

        let schedules = Schedules::parse(registry.schedules(), &daily).expect("parses");
        assert_eq!(schedules.0[0].1, "0 3 * * *");

        let misspelt = BTreeMap::from([("prune_dead_job".to_owned(), "0 3 * * *".to_owned())]);
        let err = Schedules::parse(registry.schedules(), &misspelt).expect_err("no such schedule");
        assert_eq!(
            err.to_string(),
            "APP_JOBS__SCHEDULES__PRUNE_DEAD_JOB names no schedule; the schedules are prune_dead_jobs"
        );
        let bad = BTreeMap::from([("prune_dead_jobs".to_owned(), "daily".to_owned())]);
        let err = Schedules::parse(registry.schedules(), &bad).expect_err("not a pattern");
        assert!(format!("{err:#}").starts_with("schedule prune-dead-jobs: invalid cron pattern \"daily\""));
    }
}
