//! `cargo xtask dev`: database up, migrations applied, service running in the foreground.
//! Ctrl-C stops the service; the database keeps running for the next round.

use crate::db;
use crate::flags::Dev;
use crate::project;

pub fn run(dev: &Dev) -> anyhow::Result<()> {
    let sh = project::shell()?;
    let url = db::up_database(&sh, &dev.db)?;
    let _url = sh.push_env("DATABASE_URL", &url);
    project::service(&sh, &["migrate", "run"]).run()?;
    project::service(&sh, &["serve"]).run()?;
    Ok(())
}
