//! A throwaway PostgreSQL server for the template's tests, from the local server binaries.
//! It lives in a scratch directory and stops when the guard is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Cmd, Shell, cmd};

use crate::generate::scratch_dir;

/// A running server; stopped on drop.
pub struct Postgres<'a> {
    sh: &'a Shell,
    pg_ctl: PathBuf,
    data: PathBuf,
    pub url: String,
}

impl<'a> Postgres<'a> {
    /// Starts a new, empty server on a free port.
    pub fn start(sh: &'a Shell) -> anyhow::Result<Self> {
        let initdb = server_binary("initdb")?;
        let pg_ctl = server_binary("pg_ctl")?;
        let dir = scratch_dir("postgres")?;
        let root = is_root(sh);
        if root {
            // PostgreSQL refuses to run as root; the cluster belongs to the postgres user.
            cmd!(sh, "chown postgres {dir}").run()?;
        }
        let data = dir.join("data");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data_arg = data.display().to_string();
        as_owner(
            sh,
            root,
            &initdb,
            &["--pgdata", &data_arg, "--auth", "trust", "--username", "postgres"],
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("initdb failed")?;
        let log = dir.join("postgres.log").display().to_string();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        as_owner(
            sh,
            root,
            &pg_ctl,
            &[
                "start",
                "--pgdata",
                &data_arg,
                "--log",
                &log,
                "--wait",
                "--options",
                &options,
            ],
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("PostgreSQL did not start; see {log}"))?;
        Ok(Self {
            sh,
            pg_ctl,
            data,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        })
    }
}

impl Drop for Postgres<'_> {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let stopped = as_owner(
            self.sh,
            is_root(self.sh),
            &self.pg_ctl,
            &["stop", "--pgdata", &data, "--mode", "fast"],
        )
        .quiet()
        .ignore_stdout()
        .run();
        if let Err(err) = stopped {
            eprintln!("warning: could not stop the test PostgreSQL in {data}: {err}");
        }
    }
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u").quiet().read().is_ok_and(|uid| uid.trim() == "0")
}

fn as_owner<'a>(sh: &'a Shell, root: bool, program: &Path, args: &[&str]) -> Cmd<'a> {
    if root {
        cmd!(sh, "runuser -u postgres -- {program}").args(args)
    } else {
        cmd!(sh, "{program}").args(args)
    }
}

/// Finds a PostgreSQL server program on PATH or under /usr/lib/postgresql/*/bin.
fn server_binary(name: &str) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).collect())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|dir| dir.path().join("bin").join(name)).collect())
        .unwrap_or_default();
    versioned.sort_by(|a, b| b.cmp(a));
    candidates.extend(versioned);
    match candidates.into_iter().find(|path| path.is_file()) {
        Some(path) => Ok(path),
        None => bail!(
            "{name} not found: install the PostgreSQL server (Debian: apt-get install postgresql), \
             or set TEMPLATE_TEST_DATABASE_URL to a server the tests may create databases on"
        ),
    }
}
