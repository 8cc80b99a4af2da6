//! The queue's Prometheus series: attempts by outcome and their run time, counted by the
//! worker as they happen, and the depth of each queue by state with the age of its oldest due
//! job, which the worker reads from the table every few seconds.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::queue::QueueDepth;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub queue: &'static str,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    queue: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed, to be retried.
    Failed,
    /// Failed for the last time.
    Dead,
}

#[derive(Debug)]
pub struct JobMetrics {
    started: Family<KindLabels, Counter>,
    succeeded: Family<KindLabels, Counter>,
    failed: Family<KindLabels, Counter>,
    dead: Family<KindLabels, Counter>,
    run_time: Family<KindLabels, Histogram, fn() -> Histogram>,
    depth: Family<StateLabels, Gauge>,
    oldest_due: Family<QueueLabels, Gauge<f64, AtomicU64>>,
}

/// Run-time buckets in seconds, from 10 ms to 10 minutes.
const RUN_TIME_BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

const STATES: [&str; 3] = ["ready", "running", "dead"];

impl JobMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            started: Family::default(),
            succeeded: Family::default(),
            failed: Family::default(),
            dead: Family::default(),
            run_time: Family::new_with_constructor(|| Histogram::new(RUN_TIME_BUCKETS)),
            depth: Family::default(),
            oldest_due: Family::default(),
        };
        registry.register("jobs_started", "Job attempts started", metrics.started.clone());
        registry.register(
            "jobs_succeeded",
            "Job attempts that succeeded",
            metrics.succeeded.clone(),
        );
        registry.register(
            "jobs_failed",
            "Job attempts that failed and will be retried",
            metrics.failed.clone(),
        );
        registry.register("jobs_dead", "Jobs that failed for the last time", metrics.dead.clone());
        registry.register("job_run_seconds", "Run time of job attempts", metrics.run_time.clone());
        registry.register("jobs", "Jobs in the table by queue and state", metrics.depth.clone());
        registry.register(
            "jobs_oldest_due_seconds",
            "How long the oldest due job of each queue has waited to start",
            metrics.oldest_due.clone(),
        );
        metrics
    }

    pub fn started(&self, labels: &KindLabels) {
        self.started.get_or_create(labels).inc();
    }

    pub fn finished(&self, labels: &KindLabels, outcome: Outcome, run_time: Duration) {
        let counter = match outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::Failed => &self.failed,
            Outcome::Dead => &self.dead,
        };
        counter.get_or_create(labels).inc();
        self.run_time.get_or_create(labels).observe(run_time.as_secs_f64());
    }

    /// Sets the depth gauges of `queues` from a read of the table; a state with no rows is 0.
    pub fn set_depths(&self, queues: impl IntoIterator<Item = impl Into<String>>, depths: &[QueueDepth]) {
        for queue in queues {
            let queue = queue.into();
            for state in STATES {
                let row = depths.iter().find(|row| row.queue == queue && row.state == state);
                let labels = StateLabels {
                    queue: queue.clone(),
                    state,
                };
                self.depth.get_or_create(&labels).set(row.map_or(0, |row| row.jobs));
            }
            let oldest = depths
                .iter()
                .find(|row| row.queue == queue && row.state == "ready")
                .and_then(|row| row.oldest_due_secs);
            self.oldest_due
                .get_or_create(&QueueLabels { queue })
                .set(oldest.unwrap_or(0.0));
        }
    }
}
