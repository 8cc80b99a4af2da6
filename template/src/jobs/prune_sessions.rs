//! The accounts' built-in schedule: every hour, the refresh-token families that can no longer
//! be used (past their absolute or idle expiry) are deleted, so the table holds live sessions
//! and those that may still be presented.

use serde::{Deserialize, Serialize};

use super::Job;
use crate::AppState;
use crate::db::refresh_tokens;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneExpiredSessions;

impl PruneExpiredSessions {
    /// At minute 47 of every hour, apart from the other built-in schedule.
    pub const SCHEDULE: &'static str = "47 * * * *";
}

impl Job for PruneExpiredSessions {
    const KIND: &'static str = "prune-expired-sessions";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(self, state: AppState) -> anyhow::Result<()> {
        let mut conn = state.db.acquire().await?;
        let pruned = refresh_tokens::delete_expired(&mut conn).await?;
        if pruned > 0 {
            tracing::info!(pruned, "deleted expired refresh tokens");
        }
        Ok(())
    }
}
