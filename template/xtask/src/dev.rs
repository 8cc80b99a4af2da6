//! `cargo xtask dev`: database up, migrations applied, service running in the foreground.
//! Ctrl-C stops the service; the database keeps running for the next round.

use crate::db;
use crate::flags::Dev;
use crate::project;

pub fn run(dev: &Dev) -> anyhow::Result<()> {
    let sh = project::shell()?;
    let configured = std::env::var("DATABASE_URL")
        .ok()
        .or_else(|| project::dotenv_get("DATABASE_URL"));
    // A DATABASE_URL that `db up` did not write points at a server you run: leave it alone.
    if configured.is_none() || db::is_managed() {
        db::up_database(&sh, &dev.db)?;
    }
    project::service(&sh, &["migrate", "run"]).run()?;
    project::service(&sh, &["serve"]).run()?;
    Ok(())
}
