//! `cargo xtask db ...`: a development PostgreSQL and the migration commands. The server runs
//! under compose when a container engine answers, otherwise from the local PostgreSQL
//! binaries in `target/postgres`; migrations go through the service binary itself.
{%- if redis %}
//! A development Redis starts and stops beside it (`redis`).

mod redis;
{%- endif %}

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::{Cmd, Shell, cmd};

use crate::engine;
use crate::flags::{Backend, Db, DbUp, Engine};
use crate::project::{self, dotenv_get, dotenv_set, works};

pub fn run(command: Db) -> anyhow::Result<()> {
    let sh = project::shell()?;
    match command {
        Db::Up(up) => {
            let url = up_database(&sh, &up)?;
            println!("DATABASE_URL={url} (in .env; `cargo xtask db migrate` creates the database and its schema)");
            Ok(())
        }
        Db::Down { delete_data } => down(&sh, delete_data),
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

/// Starts PostgreSQL if needed, writes DATABASE_URL to `.env` and returns it.
pub fn up_database(sh: &Shell, up: &DbUp) -> anyhow::Result<String> {
    let backend = match up.backend {
        Some(backend) => backend,
        None => detect(sh)?,
    };
    let port = match backend {
        Backend::Docker | Backend::Podman => compose_up(sh, backend, up)?,
        Backend::Local => local_up(sh, up.port)?,
    };
    std::fs::create_dir_all(project::root().join("target"))?;
    std::fs::write(state_file(), backend_name(backend))?;
{%- if redis %}
    redis::up(sh, backend, up.redis_port)?;
{%- endif %}
    let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/{}", database_name()?);
    if let Some(previous) = dotenv_get("DATABASE_URL").filter(|previous| *previous != url) {
        println!(
            "replacing DATABASE_URL in .env (it pointed at {})",
            without_password(&previous)
        );
    }
    dotenv_set("DATABASE_URL", &url)?;
    Ok(url)
}

/// Whether `url` is one `db up` writes: this project's database on a loopback server.
pub fn is_development_url(url: &str) -> bool {
    let database = database_name().unwrap_or_default();
    url.contains("@127.0.0.1:") && url.ends_with(&format!("/{database}"))
}

/// The host process id of the development PostgreSQL's postmaster, when it runs here: read
/// from the local cluster's `postmaster.pid`, or from the engine for the compose container.
pub fn server_pid(sh: &Shell) -> Option<u32> {
    match started_engine()? {
        None => {
            let pid_file = std::fs::read_to_string(local_dir().join("data").join("postmaster.pid")).ok()?;
            pid_file.lines().next()?.trim().parse().ok()
        }
        Some(engine) => compose_pid(sh, engine, "postgres"),
    }
}
{%- if redis %}

/// The host process id of the development Redis, when it runs here.
pub fn redis_pid(sh: &Shell) -> Option<u32> {
    match started_engine()? {
        None => redis::local_pid(sh),
        Some(engine) => compose_pid(sh, engine, "redis"),
    }
}
{%- endif %}

/// How `db up` started the servers: `Some(None)` from the local binaries, `Some(engine)`
/// under compose, `None` when it did not.
fn started_engine() -> Option<Option<Engine>> {
    match std::fs::read_to_string(state_file()).ok()?.trim() {
        "local" => Some(None),
        "docker" => Some(Some(Engine::Docker)),
        "podman" => Some(Some(Engine::Podman)),
        _ => None,
    }
}

/// The host process id of compose's container for `service`.
fn compose_pid(sh: &Shell, engine: Engine, service: &str) -> Option<u32> {
    // Compose labels its containers with the project (named in compose.yaml after the
    // package) and the service.
    let program = engine::name(engine);
    let project = format!(
        "label=com.docker.compose.project={}",
        project::package_field("name").ok()?
    );
    let ids = cmd!(
        sh,
        "{program} ps --filter {project} --filter label=com.docker.compose.service={service} --quiet"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .ok()?;
    let id = ids.lines().next()?.trim();
    let inspected = cmd!(sh, "{program} inspect {id}").quiet().read().ok()?;
    let inspected: serde_json::Value = serde_json::from_str(&inspected).ok()?;
    inspected[0]["State"]["Pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid > 0)
}

fn down(sh: &Shell, delete_data: bool) -> anyhow::Result<()> {
    let backend = std::fs::read_to_string(state_file()).unwrap_or_default();
    let compose_down: &[&str] = if delete_data { &["down", "--volumes"] } else { &["down"] };
    let stopped = match backend.trim() {
        "docker" => compose(sh, Backend::Docker, compose_down),
        "podman" => compose(sh, Backend::Podman, compose_down),
        "local" => local_down(sh).and_then(|()| {
            if delete_data {
                std::fs::remove_dir_all(local_dir().join("data")).context("cannot delete the local data directory")?;
                println!("deleted the local data directory");
            }
            Ok(())
        }),
        _ => {
            println!("no development database was started by `cargo xtask db up`");
            Ok(())
        }
    };
{%- if redis %}
    // A local Redis is a process of its own: it stops even when PostgreSQL would not.
    let stopped = stopped.and(redis::local_down(sh, delete_data));
{%- endif %}
    // Forget the server even when stopping failed: it is most likely gone already.
    let _ = std::fs::remove_file(state_file());
    stopped
}

fn migrate(sh: &Shell, args: &[&str]) -> anyhow::Result<()> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        // The environment wins over .env; say so, since it may be a database you care about.
        println!("using DATABASE_URL from the environment: {}", without_password(&url));
    }
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    project::service(sh, &all).run()?;
    Ok(())
}

/// `postgres://user:secret@host/db` without the secret, for messages.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or_default();
            // A password alone, as Redis URLs often have (`redis://:secret@host`), leaves no user.
            let separator = if user.is_empty() { "" } else { "@" };
            format!("{}{user}{separator}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Picks compose when docker or podman runs with a compose tool, else the local binaries.
fn detect(sh: &Shell) -> anyhow::Result<Backend> {
    match engine::with_compose(sh) {
        Some(Engine::Docker) => return Ok(Backend::Docker),
        Some(Engine::Podman) => return Ok(Backend::Podman),
        None => {}
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
    Ok(project::package_field("name")?.replace('-', "_"))
}

fn compose_up(sh: &Shell, backend: Backend, up: &DbUp) -> anyhow::Result<u16> {
    let _port = sh.push_env("POSTGRES_PORT", up.port.to_string());
{%- if redis %}
    let _redis_port = sh.push_env("REDIS_PORT", up.redis_port.to_string());
    compose(sh, backend, &["up", "--detach", "--wait", "postgres", "redis"])?;
{%- else %}
    compose(sh, backend, &["up", "--detach", "--wait", "postgres"])?;
{%- endif %}
    Ok(up.port)
}

fn compose(sh: &Shell, backend: Backend, args: &[&str]) -> anyhow::Result<()> {
    let engine = if backend == Backend::Docker {
        Engine::Docker
    } else {
        Engine::Podman
    };
    engine::compose(sh, engine)?.args(args).run()?;
    Ok(())
}

/// The cluster of the local backend lives in `target/postgres`.
fn local_dir() -> PathBuf {
    project::root().join("target").join("postgres")
}

/// Starts the local cluster (creating it on first use) and returns the port it listens on.
fn local_up(sh: &Shell, port: u16) -> anyhow::Result<u16> {
    let initdb = postgres_bin("initdb").context("initdb not found; install the PostgreSQL server package")?;
    let pg_ctl = postgres_bin("pg_ctl").context("pg_ctl not found; install the PostgreSQL server package")?;
    let dir = local_dir();
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)?;
    let owner = ClusterOwner::detect(sh, &dir)?;
    if !data.join("PG_VERSION").exists() {
        let data = data.display().to_string();
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
        owner
            .cmd(sh, &initdb, &args)
            .quiet()
            .ignore_stdout()
            .run()
            .context("initdb failed")?;
    }
    if let Some(running) = running_port(sh, &data) {
        if running != port {
            println!("PostgreSQL is already running on port {running}; `cargo xtask db down` first to change it");
        }
        return Ok(running);
    }
    let log = dir.join("postgres.log").display().to_string();
    // TCP only: a socket path under a deep checkout can exceed the 107-byte limit.
    let options = format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=");
    let data = data.display().to_string();
    owner
        .cmd(
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
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("PostgreSQL did not start; see {log}"))?;
    println!("PostgreSQL running on port {port} from {data}");
    Ok(port)
}

/// The port of a running cluster, read from its `postmaster.pid` (the fourth line); a file left
/// by a crash or reboot names a process that is gone.
fn running_port(sh: &Shell, data: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid = pid_file.lines().next()?.trim().parse::<u32>().ok()?.to_string();
    cmd!(sh, "kill -0 {pid}").quiet().ignore_stderr().run().ok()?;
    pid_file.lines().nth(3)?.trim().parse().ok()
}

fn local_down(sh: &Shell) -> anyhow::Result<()> {
    let data = local_dir().join("data");
    if running_port(sh, &data).is_none() {
        println!("PostgreSQL is not running");
        return Ok(());
    }
    let pg_ctl = postgres_bin("pg_ctl").context("pg_ctl not found")?;
    let owner = ClusterOwner::detect(sh, &local_dir())?;
    let data = data.display().to_string();
    owner
        .cmd(sh, &pg_ctl, &["stop", "--pgdata", &data, "--mode", "fast"])
        .quiet()
        .ignore_stdout()
        .run()?;
    println!("PostgreSQL stopped");
    Ok(())
}

/// Who runs the cluster: this user, or, when this is root (which PostgreSQL refuses), the
/// postgres user.
enum ClusterOwner {
    Me,
    Postgres,
}

impl ClusterOwner {
    fn detect(sh: &Shell, dir: &Path) -> anyhow::Result<Self> {
        let uid = cmd!(sh, "id -u").quiet().read().unwrap_or_default();
        if uid.trim() != "0" {
            return Ok(Self::Me);
        }
        if !works(sh, "id", &["postgres"]) {
            bail!("running as root, but there is no postgres user to own the database cluster");
        }
        cmd!(sh, "chown postgres {dir}").quiet().run()?;
        if cmd!(sh, "runuser -u postgres -- test -w {dir}").quiet().run().is_err() {
            bail!(
                "the postgres user cannot reach {}; move the project out of a private directory such as /root, \
                 or run as a regular user",
                dir.display()
            );
        }
        Ok(Self::Postgres)
    }

    fn cmd<'a>(&self, sh: &'a Shell, program: &Path, args: &[&str]) -> Cmd<'a> {
        match self {
            Self::Me => cmd!(sh, "{program}").args(args),
            Self::Postgres => cmd!(sh, "runuser -u postgres -- {program}").args(args),
        }
    }
}

/// Finds a PostgreSQL server program on PATH, or in Debian's `/usr/lib/postgresql/<major>/bin`,
/// newest major version first.
fn postgres_bin(name: &str) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|dir| {
                    let major = dir.file_name().to_str()?.parse().ok()?;
                    Some((major, dir.path().join("bin").join(name)))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    on_path
        .into_iter()
        .chain(versioned.into_iter().map(|(_, path)| path))
        .find(|path| path.is_file())
}

/// Writes `migrations/<UTC timestamp>_<name>.up.sql` and its `.down.sql`.
fn new_migration(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
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

    #[test]
    fn passwords_are_left_out_of_urls_in_messages() {
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/app"),
            "postgres://app@db:5432/app"
        );
        assert_eq!(without_password("postgres://db/app"), "postgres://db/app");
        assert_eq!(without_password("redis://:s3cret@cache:6379"), "redis://cache:6379");
    }
}
