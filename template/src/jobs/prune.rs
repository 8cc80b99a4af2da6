//! The built-in schedule: every hour, dead jobs older than `[jobs] dead_retention_days` are
//! deleted, so the table keeps only what an operator may still want to look at.

use serde::{Deserialize, Serialize};

use super::{Job, queue};
use crate::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneDeadJobs;

impl PruneDeadJobs {
    /// At minute 17 of every hour, off the full hour that many schedules share.
    pub const SCHEDULE: &'static str = "17 * * * *";
}

impl Job for PruneDeadJobs {
    const KIND: &'static str = "prune-dead-jobs";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(self, state: AppState) -> anyhow::Result<()> {
        let pruned = queue::prune_dead(state.db.pool(), state.config.jobs.dead_retention()).await?;
        if pruned > 0 {
            tracing::info!(pruned, "deleted old dead jobs");
        }
        Ok(())
    }
}
