//! The development database of a generated case, from its own `cargo xtask db up`, and the
//! database commands a developer runs there: migrations forwards and backwards, a new
//! migration, and bad input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::ensure;
use xshell::Shell;

use crate::generate::files;
use crate::probe;
use crate::test::{expect_refusal, section, xtask};

/// The generated service's development database, stopped when dropped.
pub struct DevDatabase<'a> {
    sh: &'a Shell,
    pub port: String,
    stopped: bool,
}

impl<'a> DevDatabase<'a> {
    pub fn up(sh: &'a Shell) -> anyhow::Result<Self> {
        let port = probe::free_port()?.to_string();
        start(sh, &port)?;
        Ok(Self {
            sh,
            port,
            stopped: false,
        })
    }

    /// The URL of the database of the service `package` on this server.
    pub fn url(&self, package: &str) -> String {
        format!(
            "postgres://postgres:postgres@127.0.0.1:{}/{}",
            self.port,
            package.replace('-', "_")
        )
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`, which ends every session)
    /// and, after `down_for`, starts it again on the same port with the same data.
    pub fn restart(&self, down_for: Duration) -> anyhow::Result<()> {
        xtask(self.sh).args(["db", "down"]).run()?;
        std::thread::sleep(down_for);
        start(self.sh, &self.port)
    }

    /// Stops the server and deletes its data, which must leave no data directory behind.
    pub fn down(mut self, project: &Path) -> anyhow::Result<()> {
        self.stopped = true;
        xtask(self.sh).args(["db", "down", "--delete-data"]).run()?;
        let data = project.join("target").join("postgres").join("data");
        ensure!(!data.exists(), "db down --delete-data left {}", data.display());
        Ok(())
    }
}

/// The service's own `cargo xtask db up` with the local PostgreSQL binaries on `port`.
fn start(sh: &Shell, port: &str) -> anyhow::Result<()> {
    xtask(sh)
        .args(["db", "up", "--backend", "local", "--port", port])
        .run()?;
    Ok(())
}

impl Drop for DevDatabase<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = xtask(self.sh).args(["db", "down"]).quiet().run();
        }
    }
}

/// The generated xtask's database commands as a developer runs them: migrations forwards and
/// backwards, a new migration, and bad input.
pub fn check_workflow(sh: &Shell, project: &Path, port: &str) -> anyhow::Result<()> {
    section("database workflow");
    let dotenv = std::fs::read_to_string(project.join(".env"))?;
    ensure!(
        dotenv.contains(&format!("127.0.0.1:{port}/")),
        ".env lacks the database URL: {dotenv}"
    );
    let status = xtask(sh).args(["db", "status"]).read()?;
    ensure!(!status.contains("pending"), "migrations left pending:\n{status}");
    xtask(sh).args(["db", "reset"]).run()?;
    xtask(sh).args(["db", "revert", "--all"]).run()?;
    let status = xtask(sh).args(["db", "status"]).read()?;
    ensure!(
        !status.contains("applied"),
        "migrations still applied after revert --all:\n{status}"
    );
    xtask(sh).args(["db", "migrate"]).run()?;

    let before = files(&project.join("migrations"))?;
    xtask(sh).args(["db", "new", "add_widgets"]).run()?;
    let created: Vec<PathBuf> = files(&project.join("migrations"))?
        .into_iter()
        .filter(|file| !before.contains(file))
        .collect();
    // Names are `<timestamp>_add_widgets.{up,down}.sql`; the timestamp varies.
    let suffixes: Vec<String> = created
        .iter()
        .map(|file| file.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .filter_map(|name| name.split_once('_').map(|(_, rest)| rest.to_owned()))
        .collect();
    ensure!(
        suffixes == ["add_widgets.down.sql", "add_widgets.up.sql"],
        "db new created {created:?}"
    );
    created.iter().try_for_each(std::fs::remove_file)?;

    expect_refusal(sh, &["db", "new", "Add-Widgets"], "invalid migration name")?;
    // Checked before cargo-mutants is looked for: a typo costs no install and no hour of runs.
    expect_refusal(
        sh,
        &["mutants", "--file", "src/no_such_file.rs"],
        "--file src/no_such_file.rs: no such file",
    )?;
    let code = expect_refusal(sh, &["db", "sideways"], "Usage")?;
    ensure!(code == Some(2), "a bad flag exited with {code:?}, not 2");
    Ok(())
}
