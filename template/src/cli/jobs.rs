//! `jobs dead | retry ID | discard ID`: what an operator does with jobs that used their
//! attempts. Retrying gives a dead job fresh attempts; discarding deletes it.

use anyhow::Context;
use clap::Subcommand;
use uuid::Uuid;

use crate::config::Config;
use crate::db::Database;
use crate::jobs::queue;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List dead jobs, most recent first, with their last error.
    Dead {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Run a dead job again, with fresh attempts.
    Retry { id: Uuid },
    /// Delete a dead job.
    Discard { id: Uuid },
}

pub async fn run(command: JobsCommand, config: &Config) -> anyhow::Result<()> {
    let db = Database::connect(&config.database)?;
    let pool = db.pool();
    let unreachable = "cannot reach the database; is DATABASE_URL right and PostgreSQL running?";
    match command {
        JobsCommand::Dead { limit } => {
            let dead = queue::dead(pool, limit).await.context(unreachable)?;
            if dead.is_empty() {
                println!("no dead jobs");
            }
            for job in dead {
                println!(
                    "{} {} {} attempts={} died={} error={}",
                    job.id,
                    job.queue,
                    job.kind,
                    job.attempts,
                    job.died_at,
                    job.last_error.as_deref().unwrap_or("")
                );
            }
        }
        JobsCommand::Retry { id } => {
            let retried = queue::retry(pool, id).await.context("cannot retry the job")?;
            anyhow::ensure!(retried, "no dead job {id}");
            println!("retrying {id}");
        }
        JobsCommand::Discard { id } => {
            let discarded = queue::discard(pool, id).await.context(unreachable)?;
            anyhow::ensure!(discarded, "no dead job {id}");
            println!("discarded {id}");
        }
    }
    db.close().await;
    Ok(())
}
