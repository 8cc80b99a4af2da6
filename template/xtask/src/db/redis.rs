//! The development Redis that `cargo xtask db up` starts beside PostgreSQL: compose's `redis`
//! service, or a local `redis-server` run from `target/redis`. Neither keeps anything on disk:
//! what Redis holds here (shared rate-limit counters, cached reads) is disposable.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::without_password;
use crate::flags::Backend;
use crate::project::{self, dotenv_get, dotenv_set};

/// Starts the local server on `port` when the backend is local (compose has started its own by
/// now) and writes REDIS_URL to `.env`. A REDIS_URL that `db up` did not write names a server
/// you run: it stays, and nothing starts.
pub fn up(sh: &Shell, backend: Backend, port: u16) -> anyhow::Result<()> {
    if let Some(url) = configured_url() {
        println!(
            "REDIS_URL names a server you run ({}); not starting Redis",
            without_password(&url)
        );
        return Ok(());
    }
    let port = match backend {
        Backend::Local => local_up(sh, port)?,
        Backend::Docker | Backend::Podman => port,
    };
    let url = format!("redis://127.0.0.1:{port}");
    if let Some(previous) = dotenv_get("REDIS_URL").filter(|previous| *previous != url) {
        println!("replacing REDIS_URL in .env (it pointed at {previous})");
    }
    dotenv_set("REDIS_URL", &url)?;
    println!("REDIS_URL={url} (in .env)");
    Ok(())
}

/// A REDIS_URL from the environment (which wins over `.env` anyway), or one in `.env` that
/// `db up` did not write.
fn configured_url() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .or_else(|| dotenv_get("REDIS_URL").filter(|url| !is_development_url(url)))
}

/// Whether `url` is one `db up` writes: a loopback server on some port, without a password.
fn is_development_url(url: &str) -> bool {
    url.strip_prefix("redis://127.0.0.1:")
        .is_some_and(|port| port.parse::<u16>().is_ok())
}

/// The local server's pid file, log, recorded port and working directory live in `target/redis`.
fn local_dir() -> PathBuf {
    project::root().join("target").join("redis")
}

/// Starts `redis-server` in the background (or finds it running) and returns its port.
fn local_up(sh: &Shell, port: u16) -> anyhow::Result<u16> {
    let dir = local_dir();
    if let Some(running) = running_port(sh, &dir) {
        if running != port {
            println!("Redis is already running on port {running}; `cargo xtask db down` first to change it");
        }
        return Ok(running);
    }
    let server = redis_bin("redis-server").context(
        "redis-server not found; install it (apt-get install redis-server), or set REDIS_URL in .env \
         to a server you run",
    )?;
    redis_bin("redis-cli").context("redis-cli not found; it comes with redis-server (apt-get install redis-tools)")?;
    // Redis would fail to bind and exit, and the PING below would reach whatever holds the port.
    if listens(port) {
        bail!("port {port} is taken; choose another with --redis-port");
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("port"), port.to_string())?;
    let port_arg = port.to_string();
    let pid_file = dir.join("redis.pid");
    let log = dir.join("redis.log");
    // Loopback only, and nothing on disk: no snapshots, no append-only file. It daemonizes, so
    // the command returns before the server answers.
    cmd!(sh, "{server}")
        .args(["--bind", "127.0.0.1", "--port", &port_arg, "--save", ""])
        .args(["--appendonly", "no", "--daemonize", "yes"])
        .arg("--pidfile")
        .arg(&pid_file)
        .arg("--logfile")
        .arg(&log)
        .arg("--dir")
        .arg(&dir)
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("Redis did not start; see {}", log.display()))?;
    if !within_ten_seconds(|| answers(sh, port)) {
        bail!("Redis did not answer on port {port}; see {}", log.display());
    }
    println!("Redis running on port {port} from {}", dir.display());
    Ok(port)
}

/// Stops the local server, if it runs, without saving (there is nothing to keep) and, with
/// `delete_data`, deletes `target/redis`. Says nothing when no local server was ever started,
/// as with the compose backend.
pub fn local_down(sh: &Shell, delete_data: bool) -> anyhow::Result<()> {
    let dir = local_dir();
    if !dir.exists() {
        return Ok(());
    }
    match running_port(sh, &dir) {
        Some(port) => {
            let cli = redis_bin("redis-cli").context("redis-cli not found; it comes with redis-server")?;
            let port_arg = port.to_string();
            cmd!(sh, "{cli} -p {port_arg} shutdown nosave")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()?;
            if !within_ten_seconds(|| !listens(port)) {
                bail!("Redis on port {port} did not stop");
            }
            println!("Redis stopped");
        }
        None => println!("Redis is not running"),
    }
    if delete_data && dir.exists() {
        std::fs::remove_dir_all(&dir).context("cannot delete the local Redis directory")?;
        println!("deleted the local Redis directory");
    }
    Ok(())
}

/// The process id of the local server, when it runs.
pub fn local_pid(sh: &Shell) -> Option<u32> {
    let dir = local_dir();
    running_port(sh, &dir)?;
    std::fs::read_to_string(dir.join("redis.pid")).ok()?.trim().parse().ok()
}

/// The port of the local server when it runs: its pid file names a live process (a file left by
/// a crash or reboot names one that is gone, or another program), and Redis answers on the port
/// recorded beside it.
fn running_port(sh: &Shell, dir: &Path) -> Option<u16> {
    let pid = std::fs::read_to_string(dir.join("redis.pid")).ok()?;
    let pid = pid.trim().parse::<u32>().ok()?.to_string();
    cmd!(sh, "kill -0 {pid}").quiet().ignore_stderr().run().ok()?;
    let port = std::fs::read_to_string(dir.join("port")).ok()?.trim().parse().ok()?;
    answers(sh, port).then_some(port)
}

/// Whether Redis answers PING on the loopback `port`.
fn answers(sh: &Shell, port: u16) -> bool {
    let Some(cli) = redis_bin("redis-cli") else {
        return false;
    };
    let port = port.to_string();
    cmd!(sh, "{cli} -p {port} ping")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|reply| reply.trim() == "PONG")
}

/// Whether anything accepts connections on the loopback `port`.
fn listens(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// Waits up to ten seconds for `done`.
fn within_ten_seconds(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A Redis program on PATH, or where Debian's package puts it.
fn redis_bin(name: &str) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([Path::new("/usr/bin").join(name)])
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_of_a_loopback_server_without_a_password_are_development_ones() {
        assert!(is_development_url("redis://127.0.0.1:56379"));
        assert!(!is_development_url("redis://:secret@127.0.0.1:56379"));
        assert!(!is_development_url("redis://cache.internal:6379"));
        assert!(!is_development_url("rediss://127.0.0.1:56379"));
        assert!(!is_development_url("redis://127.0.0.1:56379/2"));
    }
}
