//! `cargo xtask dev`: database up, migrations applied, service running in the foreground.
//! Ctrl-C stops the service; the database keeps running for the next round.

use crate::db;
use crate::flags::Dev;
use crate::project;

pub fn run(dev: &Dev) -> anyhow::Result<()> {
    let sh = project::shell()?;
    // A DATABASE_URL in the environment, or one in .env that `db up` did not write, points at
    // a server you run: leave it alone.
    let external = std::env::var("DATABASE_URL").is_ok()
        || project::dotenv_get("DATABASE_URL").is_some_and(|url| !db::is_development_url(&url));
    if !external {
        db::up_database(&sh, &dev.db)?;
    }
    project::service(&sh, &["migrate", "run"]).run()?;
    project::service(&sh, &["serve"]).run()?;
    Ok(())
}
