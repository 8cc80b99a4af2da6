//! `cargo xtask db ...`: a development PostgreSQL and the migration commands. The server runs
//! under compose when a container engine answers, otherwise from the local PostgreSQL
//! binaries in `target/postgres`; migrations go through the service binary itself.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::{Cmd, Shell, cmd};

use crate::flags::{Backend, Db, DbUp};
use crate::project::{self, dotenv_set, works};

pub fn run(command: Db) -> anyhow::Result<()> {
    let sh = project::shell()?;
    match command {
        Db::Up(up) => up_and_report(&sh, &up),
        Db::Down => down(&sh),
        Db::Migrate => migrate(&sh, &["run"]),
        Db::Revert { steps, all } => {
            let steps = steps.to_string();
            migrate(
                &sh,
                &if all {
                    vec!["revert", "--all"]
                } else {
                    vec!["revert", &steps]
                },
            )
        }
        Db::Status => migrate(&sh, &["status"]),
        Db::New { name } => new_migration(&name),
        Db::Reset => {
            migrate(&sh, &["revert", "--all"])?;
            migrate(&sh, &["run"])
        }
    }
}

fn up_and_report(sh: &Shell, up: &DbUp) -> anyhow::Result<()> {
    let url = up_database(sh, up)?;
    println!("DATABASE_URL={url}");
    println!("(written to .env; `cargo xtask db migrate` creates the database and applies migrations)");
    Ok(())
}

/// Starts PostgreSQL if needed, writes DATABASE_URL to `.env` and returns it.
pub fn up_database(sh: &Shell, up: &DbUp) -> anyhow::Result<String> {
    let backend = match up.backend {
        Some(backend) => backend,
        None => detect(sh)?,
    };
    match backend {
        Backend::Docker | Backend::Podman => compose_up(sh, backend, up.port)?,
        Backend::Local => local_up(sh, up.port)?,
    }
    std::fs::write(state_file(), backend_name(backend))?;
    let url = format!(
        "postgres://postgres:postgres@127.0.0.1:{}/{}",
        up.port,
        database_name()?
    );
    dotenv_set("DATABASE_URL", &url)?;
    Ok(url)
}

fn down(sh: &Shell) -> anyhow::Result<()> {
    let backend = std::fs::read_to_string(state_file()).unwrap_or_default();
    match backend.trim() {
        "docker" => compose(sh, Backend::Docker, &["down"]),
        "podman" => compose(sh, Backend::Podman, &["down"]),
        "local" => local_down(sh),
        _ => {
            println!("no development database was started by `cargo xtask db up`");
            Ok(())
        }
    }?;
    let _ = std::fs::remove_file(state_file());
    Ok(())
}

fn migrate(sh: &Shell, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    project::service(sh, &all).run()?;
    Ok(())
}

/// Picks compose when docker or podman has a running engine, else the local binaries.
fn detect(sh: &Shell) -> anyhow::Result<Backend> {
    if works(sh, "docker", &["info"]) && works(sh, "docker", &["compose", "version"]) {
        return Ok(Backend::Docker);
    }
    if works(sh, "podman", &["info"]) && works(sh, "podman", &["compose", "version"]) {
        return Ok(Backend::Podman);
    }
    if postgres_bin("pg_ctl").is_some() {
        return Ok(Backend::Local);
    }
    bail!(
        "no way to run PostgreSQL found: start Docker or Podman (with compose), or install the \
         PostgreSQL server binaries (initdb, pg_ctl), or set DATABASE_URL in .env to a server you run"
    )
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Docker => "docker",
        Backend::Podman => "podman",
        Backend::Local => "local",
    }
}

fn state_file() -> PathBuf {
    project::root().join("target").join("xtask-db-backend")
}

/// The development database's name: the package name in snake case.
fn database_name() -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(project::root().join("Cargo.toml"))?;
    let name = manifest
        .lines()
        .find_map(|line| line.strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .context("Cargo.toml has no package name")?;
    Ok(name.replace('-', "_"))
}

fn compose_up(sh: &Shell, backend: Backend, port: u16) -> anyhow::Result<()> {
    let _port = sh.push_env("POSTGRES_PORT", port.to_string());
    compose(sh, backend, &["up", "--detach", "--wait", "postgres"])
}

fn compose(sh: &Shell, backend: Backend, args: &[&str]) -> anyhow::Result<()> {
    let engine = backend_name(backend);
    cmd!(sh, "{engine} compose --file docker/compose.yaml")
        .args(args)
        .run()?;
    Ok(())
}

/// The cluster of the local backend lives in `target/postgres`.
fn local_dir() -> PathBuf {
    project::root().join("target").join("postgres")
}

fn local_up(sh: &Shell, port: u16) -> anyhow::Result<()> {
    let initdb = postgres_bin("initdb").context("initdb not found; install the PostgreSQL server package")?;
    let pg_ctl = postgres_bin("pg_ctl").context("pg_ctl not found; install the PostgreSQL server package")?;
    let dir = local_dir();
    let data = dir.join("data").display().to_string();
    std::fs::create_dir_all(&dir)?;
    if running_as_root(sh)? {
        // PostgreSQL refuses to run as root; the cluster belongs to the postgres user.
        cmd!(sh, "chown postgres {dir}").run()?;
    }
    if !dir.join("data").join("PG_VERSION").exists() {
        let args = [
            "--pgdata",
            &data,
            "--auth",
            "trust",
            "--username",
            "postgres",
            "--encoding",
            "UTF8",
        ];
        as_cluster_owner(sh, &initdb, &args)?
            .quiet()
            .ignore_stdout()
            .run()
            .context("initdb failed")?;
    }
    if as_cluster_owner(sh, &pg_ctl, &["status", "--pgdata", &data])?
        .quiet()
        .ignore_stdout()
        .run()
        .is_ok()
    {
        println!("PostgreSQL already running from {data}");
        return Ok(());
    }
    let log = dir.join("postgres.log").display().to_string();
    let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.display());
    as_cluster_owner(
        sh,
        &pg_ctl,
        &[
            "start",
            "--pgdata",
            &data,
            "--log",
            &log,
            "--wait",
            "--options",
            &options,
        ],
    )?
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| format!("PostgreSQL did not start; see {log}"))?;
    println!("PostgreSQL running on port {port} from {data}");
    Ok(())
}

fn local_down(sh: &Shell) -> anyhow::Result<()> {
    let pg_ctl = postgres_bin("pg_ctl").context("pg_ctl not found")?;
    let data = local_dir().join("data").display().to_string();
    as_cluster_owner(sh, &pg_ctl, &["stop", "--pgdata", &data, "--mode", "fast"])?
        .quiet()
        .ignore_stdout()
        .run()?;
    println!("PostgreSQL stopped");
    Ok(())
}

fn running_as_root(sh: &Shell) -> anyhow::Result<bool> {
    let uid = cmd!(sh, "id -u").quiet().read().unwrap_or_default();
    if uid.trim() != "0" {
        return Ok(false);
    }
    if !works(sh, "id", &["postgres"]) {
        bail!("running as root, but there is no postgres user to own the database cluster");
    }
    Ok(true)
}

/// `program args...`, run as the postgres user when this process is root.
fn as_cluster_owner<'a>(sh: &'a Shell, program: &Path, args: &[&str]) -> anyhow::Result<Cmd<'a>> {
    Ok(if running_as_root(sh)? {
        cmd!(sh, "runuser -u postgres -- {program}").args(args)
    } else {
        cmd!(sh, "{program}").args(args)
    })
}

/// Finds a PostgreSQL server program on PATH or in Debian's and Homebrew's usual places.
fn postgres_bin(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|dir| dir.path().join("bin").join(name)).collect())
        .unwrap_or_default();
    // Newest major version first.
    versioned.sort_by(|a, b| b.cmp(a));
    on_path.into_iter().chain(versioned).find(|path| path.is_file())
}

/// Writes `migrations/<UTC timestamp>_<name>.up.sql` and its `.down.sql`.
fn new_migration(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("invalid migration name {name:?}: use lowercase letters, digits and underscores, e.g. add_user_email");
    }
    let version = utc_timestamp(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
    let dir = project::root().join("migrations");
    std::fs::create_dir_all(&dir)?;
    for (suffix, comment) in [
        ("up", "-- Write the change here."),
        ("down", "-- Undo the up migration here."),
    ] {
        let path = dir.join(format!("{version}_{name}.{suffix}.sql"));
        std::fs::write(&path, format!("{comment}\n"))?;
        println!("created {}", path.display());
    }
    Ok(())
}

/// Formats seconds since the epoch as `YYYYMMDDhhmmss` in UTC (Howard Hinnant's civil date
/// algorithm), avoiding a date library in xtask.
fn utc_timestamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "19700101000000");
        assert_eq!(utc_timestamp(951_782_400), "20000229000000");
        assert_eq!(utc_timestamp(1_767_225_599), "20251231235959");
    }
}
