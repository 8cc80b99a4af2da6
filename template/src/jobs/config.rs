//! `[jobs]` settings: where workers run, how many jobs each queue runs at once, and the
//! timings of polling, leases, retries and shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::queue::Backoff;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Whether `serve` runs a worker too, so one process does everything in development.
    /// Production runs workers apart, with the `worker` subcommand.
    pub in_process: bool,
    /// Jobs run at once per queue, by queue name (`APP_JOBS__CONCURRENCY__DEFAULT=8`).
    pub concurrency: BTreeMap<String, usize>,
    /// For a queue not named in `concurrency`.
    pub default_concurrency: usize,
    /// How often an idle worker looks for due jobs when no notification wakes it: the fallback
    /// while its listening connection is down.
    pub poll_interval_ms: u64,
    /// How long a claimed job stays with its worker without renewal; a job whose worker died
    /// runs again once this has passed. Renewed every third of it.
    pub lease_ms: u64,
    /// The wait before the second attempt; it doubles with every failure, with jitter.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// How long running jobs may finish at shutdown before they are handed back to the queue.
    pub shutdown_timeout_secs: u64,
    /// Dead jobs older than this are deleted by the built-in prune schedule.
    pub dead_retention_days: u64,
    /// Cron patterns that replace the registered ones, by kind with hyphens as underscores
    /// (`APP_JOBS__SCHEDULES__PRUNE_DEAD_JOBS="0 3 * * *"`).
    pub schedules: BTreeMap<String, String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            in_process: false,
            concurrency: BTreeMap::new(),
            default_concurrency: 4,
            poll_interval_ms: 5_000,
            lease_ms: 30_000,
            retry_base_ms: 1_000,
            retry_max_secs: 3_600,
            shutdown_timeout_secs: 20,
            dead_retention_days: 14,
            schedules: BTreeMap::new(),
        }
    }
}

impl JobsConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("APP_JOBS__DEFAULT_CONCURRENCY", self.default_concurrency as u64),
            ("APP_JOBS__POLL_INTERVAL_MS", self.poll_interval_ms),
            ("APP_JOBS__RETRY_BASE_MS", self.retry_base_ms),
            ("APP_JOBS__RETRY_MAX_SECS", self.retry_max_secs),
            ("APP_JOBS__DEAD_RETENTION_DAYS", self.dead_retention_days),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        if let Some((queue, _)) = self.concurrency.iter().find(|(_, value)| **value == 0) {
            bail!("APP_JOBS__CONCURRENCY__{} must be greater than 0", queue.to_uppercase());
        }
        // Renewal every third of the lease leaves two renewals' slack for a slow database.
        if self.lease_ms < 300 {
            bail!("APP_JOBS__LEASE_MS must be at least 300");
        }
        Ok(())
    }

    pub fn concurrency(&self, queue: &str) -> usize {
        self.concurrency.get(queue).copied().unwrap_or(self.default_concurrency)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.retry_base_ms),
            max: Duration::from_secs(self.retry_max_secs),
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn dead_retention(&self) -> Duration {
        Duration::from_secs(self.dead_retention_days * 24 * 60 * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_settings_are_refused_with_the_variable_to_fix() {
        let refused = |change: fn(&mut JobsConfig)| {
            let mut config = JobsConfig::default();
            change(&mut config);
            config.validate().expect_err("refused").to_string()
        };

        assert!(JobsConfig::default().validate().is_ok());
        assert_eq!(
            refused(|config| config.default_concurrency = 0),
            "APP_JOBS__DEFAULT_CONCURRENCY must be greater than 0"
        );
        assert_eq!(
            refused(|config| {
                config.concurrency.insert("mail".into(), 0);
            }),
            "APP_JOBS__CONCURRENCY__MAIL must be greater than 0"
        );
        assert_eq!(
            refused(|config| config.lease_ms = 299),
            "APP_JOBS__LEASE_MS must be at least 300"
        );
    }

    #[test]
    fn a_queue_without_its_own_concurrency_gets_the_default() {
        let config = JobsConfig {
            concurrency: [("mail".to_owned(), 9)].into(),
            ..JobsConfig::default()
        };

        assert_eq!(config.concurrency("mail"), 9);
        assert_eq!(config.concurrency("default"), 4);
    }
}
