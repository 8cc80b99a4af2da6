//! `cargo xtask jobs dead | retry ID | discard ID`: the service's own `jobs` subcommand on the
//! development database (`DATABASE_URL` from `.env`), for jobs that used up their attempts.

use crate::flags::Jobs;
use crate::project;

pub fn run(command: &Jobs) -> anyhow::Result<()> {
    let sh = project::shell()?;
    let args = match command {
        Jobs::Dead { limit } => vec!["dead".to_owned(), "--limit".to_owned(), limit.to_string()],
        Jobs::Retry { id } => vec!["retry".to_owned(), id.clone()],
        Jobs::Discard { id } => vec!["discard".to_owned(), id.clone()],
    };
    project::service(&sh, &["jobs"]).args(args).run()?;
    Ok(())
}
