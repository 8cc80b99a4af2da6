//! The development database of a generated case (and its Redis, with `redis`), from its own
//! `cargo xtask db up`, and the database commands a developer runs there: migrations forwards
//! and backwards, a new migration, and bad input.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::ensure;
use xshell::Shell;

use crate::generate::files;
use crate::probe;
use crate::test::{expect_refusal, section, xtask};

/// The generated service's development database, and its Redis when it has one, stopped when
/// dropped.
pub struct DevDatabase<'a> {
    sh: &'a Shell,
    pub port: String,
    redis_port: Option<String>,
    stopped: bool,
}

impl<'a> DevDatabase<'a> {
    /// Starts the servers with the service's own `db up`, each on a free port: a server an
    /// earlier run or a developer left on a default port cannot stand in for the case's own.
    pub fn up(sh: &'a Shell, redis: bool) -> anyhow::Result<Self> {
        let port = probe::free_port()?.to_string();
        let redis_port = if redis { Some(other_free_port(&port)?) } else { None };
        start(sh, &port, redis_port.as_deref())?;
        if let Some(redis_port) = &redis_port {
            let dotenv = std::fs::read_to_string(sh.current_dir().join(".env"))?;
            let url = format!("REDIS_URL=redis://127.0.0.1:{redis_port}");
            ensure!(dotenv.lines().any(|line| line == url), ".env lacks {url}: {dotenv}");
        }
        Ok(Self {
            sh,
            port,
            redis_port,
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
        start(self.sh, &self.port, self.redis_port.as_deref())
    }

    /// Stops the servers and deletes their data, which must leave no data directory and no
    /// Redis behind.
    pub fn down(mut self, project: &Path) -> anyhow::Result<()> {
        self.stopped = true;
        xtask(self.sh).args(["db", "down", "--delete-data"]).run()?;
        let data = project.join("target").join("postgres").join("data");
        ensure!(!data.exists(), "db down --delete-data left {}", data.display());
        if let Some(redis_port) = &self.redis_port {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, redis_port.parse::<u16>()?));
            ensure!(
                TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
                "db down left Redis running on port {redis_port}"
            );
            let dir = project.join("target").join("redis");
            ensure!(!dir.exists(), "db down --delete-data left {}", dir.display());
        }
        Ok(())
    }
}

/// A free port other than `taken`, which is free only until its server starts.
fn other_free_port(taken: &str) -> anyhow::Result<String> {
    loop {
        let port = probe::free_port()?.to_string();
        if port != taken {
            return Ok(port);
        }
    }
}

/// The service's own `cargo xtask db up` with the local binaries: PostgreSQL on `port`, and
/// Redis on `redis_port` when the service has it.
fn start(sh: &Shell, port: &str, redis_port: Option<&str>) -> anyhow::Result<()> {
    let redis = redis_port.map(|redis_port| ["--redis-port", redis_port]);
    xtask(sh)
        .args(["db", "up", "--backend", "local", "--port", port])
        .args(redis.into_iter().flatten())
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
