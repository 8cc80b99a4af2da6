//! The job queue under load, run by `cargo xtask bench` on its benchmark database: first
//! throughput end to end, from the first enqueue to the last completion of no-op jobs run by
//! several workers, each with a pool of its own as separate processes would have; then, with
//! the workers idle, the delay from sending a commit to the start of its job, which is the
//! wake-up path (`LISTEN/NOTIFY`, then a claim). Prints one JSON line.
//!
//! `DATABASE_URL=postgres://... cargo run --release --example queue` (on a migrated database).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use service::AppState;
use service::config::Config;
use service::db::Database;
use service::jobs::{self, Job, Options, Registry, Worker};
use tokio::sync::mpsc;

const WORKERS: usize = 4;
const JOBS: u32 = 20_000;
/// Jobs per enqueueing transaction during the throughput run.
const BATCH: u32 = 100;
const PICKUPS: usize = 200;

/// Tells the benchmark when each job started.
static STARTED: OnceLock<mpsc::UnboundedSender<Instant>> = OnceLock::new();

#[derive(Serialize, Deserialize)]
struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "bench-noop";
    /// A queue of its own: no other worker on this database wakes for these jobs.
    const QUEUE: &'static str = "bench";

    async fn run(self, _state: AppState) -> anyhow::Result<()> {
        if let Some(started) = STARTED.get() {
            let _ = started.send(Instant::now());
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_dir = std::env::var_os("APP_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
    let config = Config::load(&config_dir)?;
    let concurrency = config.jobs.concurrency(Noop::QUEUE);
    let state = || AppState::new(config.clone(), Database::connect(&config.database)?);
    let producer = state()?;
    let (started, mut starts) = mpsc::unbounded_channel();
    STARTED.set(started).ok().context("started twice")?;
    let workers = (0..WORKERS)
        .map(|_| Worker::start_with(state()?, Registry::default().with::<Noop>()))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let begun = Instant::now();
    for _ in 0..JOBS / BATCH {
        let mut tx = producer.db.begin().await?;
        for _ in 0..BATCH {
            jobs::enqueue(&mut tx, &Noop {}, Options::default()).await?;
        }
        tx.commit().await?;
    }
    // Done when the last job's success has committed, which deletes it.
    while sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = $1)")
        .bind(Noop::QUEUE)
        .fetch_one(producer.db.pool())
        .await?
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let jobs_per_sec = f64::from(JOBS) / begun.elapsed().as_secs_f64();
    while starts.try_recv().is_ok() {}

    let mut pickups = Vec::with_capacity(PICKUPS);
    for _ in 0..PICKUPS {
        // Idle: every worker asleep on its notification, none polling soon.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut tx = producer.db.begin().await?;
        jobs::enqueue(&mut tx, &Noop {}, Options::default()).await?;
        let committing = Instant::now();
        tx.commit().await?;
        let start = starts.recv().await.context("no worker started the job")?;
        pickups.push(start.saturating_duration_since(committing).as_secs_f64() * 1e3);
    }
    pickups.sort_by(f64::total_cmp);
    let percentile = |p: usize| pickups[(pickups.len() * p / 100).min(pickups.len() - 1)];

    for worker in workers {
        worker.stop().await;
    }
    println!(
        "{}",
        serde_json::json!({
            "workers": WORKERS,
            "concurrency": concurrency,
            "jobs": JOBS,
            "jobs_per_sec": jobs_per_sec.round(),
            "pickups": PICKUPS,
            "pickup_p50_ms": percentile(50),
            "pickup_p99_ms": percentile(99),
        })
    );
    Ok(())
}
