//! A generated service with Redis, over TLS (`rediss://`) with a password: a `redis-server`
//! with a certificate from a CA made here. With the CA trusted through `SSL_CERT_FILE`,
//! readiness must come to say Redis is up; without it, the same URL must leave the service
//! serving, degraded.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::generate::scratch_dir;
use crate::probe;
use crate::service::{self, Server};

const PASSWORD: &str = "tls-check-secret";

pub fn check(sh: &Shell, project: &Path, package: &str, database_url: &str) -> anyhow::Result<()> {
    let dir = scratch_dir("redis-tls")?;
    certificates(sh, &dir)?;
    let redis_port = probe::free_port()?;
    let _redis = RedisServer::start(&dir, redis_port)?;
    let url = format!("rediss://:{PASSWORD}@localhost:{redis_port}");
    for trusted in [true, false] {
        let port = probe::free_port()?;
        let mut command = service::service(project, package, port, database_url);
        command.env("REDIS_URL", &url).env_remove("SSL_CERT_FILE");
        if trusted {
            command.env("SSL_CERT_FILE", dir.join("ca.crt"));
        }
        let log = dir.join(format!("service-trusted-{trusted}.log"));
        let _server = Server::start(command, port, &log)?;
        let expected = if trusted { "up" } else { "down" };
        // The first commands may time out while the handshake runs; readiness follows once
        // the connection is up.
        let started = Instant::now();
        loop {
            let ready = service::call(port, "GET", "/health/ready", None, None, 200)?;
            if ready["checks"]["redis"] == expected {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!(
                    "over TLS with the CA {}trusted, readiness says {ready}; see {}",
                    if trusted { "" } else { "not " },
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let text = std::fs::read_to_string(&log)?;
        ensure!(
            !text.contains(PASSWORD),
            "the Redis password reached the log: {}",
            log.display()
        );
    }
    println!(
        "rediss:// with a password: Redis up with the CA trusted (SSL_CERT_FILE), degraded but serving without it"
    );
    Ok(())
}

/// A CA, and a certificate it signs for `localhost` and 127.0.0.1, in `dir`.
fn certificates(sh: &Shell, dir: &Path) -> anyhow::Result<()> {
    let _dir = sh.push_dir(dir);
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    cmd!(
        sh,
        "openssl req -x509 {curve...} -keyout ca.key -out ca.crt -days 1 -subj /CN=check-ca"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .context("openssl is needed for the TLS check (apt-get install openssl)")?;
    cmd!(
        sh,
        "openssl req {curve...} -keyout server.key -out server.csr -subj /CN=localhost"
    )
    .quiet()
    .ignore_stderr()
    .run()?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")?;
    cmd!(
        sh,
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile san.ext"
    )
    .quiet()
    .ignore_stderr()
    .run()?;
    Ok(())
}

/// `redis-server` speaking only TLS on a port, with a password, stopped when dropped.
struct RedisServer(Child);

impl RedisServer {
    fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let file = |name: &str| dir.join(name);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(file("server.crt"))
            .arg("--tls-key-file")
            .arg(file("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(file("ca.crt"))
            .args(["--requirepass", PASSWORD, "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let server = Self(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
