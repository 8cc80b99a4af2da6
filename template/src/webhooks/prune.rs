//! The webhooks' built-in schedule: every hour, delivery records older than `[webhooks]
//! delivery_retention_days` are deleted.

use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::db;
use crate::jobs::Job;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneDeliveries;

impl PruneDeliveries {
    /// At minute 23 of every hour, apart from the other prunes.
    pub const SCHEDULE: &'static str = "23 * * * *";
}

impl Job for PruneDeliveries {
    const KIND: &'static str = "prune-webhook-deliveries";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(self, state: AppState) -> anyhow::Result<()> {
        let pruned = db::webhooks::prune(state.db.pool(), state.config.webhooks.delivery_retention()).await?;
        if pruned > 0 {
            tracing::info!(pruned, "deleted old webhook delivery records");
        }
        Ok(())
    }
}
