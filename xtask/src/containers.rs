//! The container checks of `cargo xtask test`, on podman: the generated tests through
//! testcontainers instead of DATABASE_URL, and the service image built by the generated
//! `cargo xtask docker build`, run against PostgreSQL with the hardening a cluster applies.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::generate::scratch_dir;
use crate::{images, probe};

/// The image size the template promises (README).
pub const IMAGE_BUDGET_MB: u64 = 50;

/// What the image check measured.
pub struct Report {
    pub size_mb: u64,
    pub ready_after: Duration,
}

/// Whether podman runs here with its Docker-compatible socket, which testcontainers needs.
pub fn available(sh: &Shell) -> bool {
    cmd!(sh, "podman info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
        && std::env::var("DOCKER_HOST").is_ok_and(|host| host.contains("podman"))
}

/// Runs the service's health tests with no DATABASE_URL, so their PostgreSQL comes from
/// testcontainers on podman: the path a developer without a database takes. The whole suite
/// runs against a local server in `cargo xtask ci`; through containers it would start one
/// whenever no test happens to hold the shared one, minutes for nothing the health tests do not
/// show (a migrated database per test, concurrent tests, the container removed at the end).
/// Run before `db up` writes a `.env`.
pub fn test_through_testcontainers(sh: &Shell, project: &Path) -> anyhow::Result<()> {
    ensure!(
        !project.join(".env").exists(),
        "a .env would give the tests a DATABASE_URL"
    );
    images::ensure(sh, false)?;
    // Redis too, in a service that has it, comes from testcontainers without REDIS_URL.
    let stdout = cmd!(sh, "cargo test --locked --test api health::")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .read()?;
    println!("{stdout}");
    let passed = stdout
        .lines()
        .find_map(|line| line.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(count, _)| count.parse::<u32>().ok());
    ensure!(
        passed.is_some_and(|count| count >= 2),
        "the health tests did not pass through testcontainers (or fewer than two ran)"
    );
    for image in [images::POSTGRES, images::REDIS] {
        let filter = format!("ancestor={image}");
        let left = cmd!(sh, "podman ps --all --quiet --filter {filter}").read()?;
        ensure!(left.trim().is_empty(), "testcontainers left containers behind: {left}");
    }
    Ok(())
}

/// Builds the image, then runs PostgreSQL (and Redis, with `redis`), the migrations and the
/// service as containers on a network of their own, and checks health, a request, the user, the
/// settings files and the missing shell.
pub fn check_image(sh: &Shell, name: &str, http_port: u16, redis: bool) -> anyhow::Result<Report> {
    images::ensure(sh, false)?;
    let tag = format!("localhost/{name}:test");
    cmd!(sh, "cargo xtask docker build --engine podman --tag {tag}").run()?;
    let size_format = "{{.Size}}";
    let size: u64 = cmd!(sh, "podman image inspect --format {size_format} {tag}")
        .read()?
        .trim()
        .parse()?;
    let size_mb = size.div_ceil(1_000_000);
    ensure!(
        size_mb <= IMAGE_BUDGET_MB,
        "the image is {size_mb} MB, over the {IMAGE_BUDGET_MB} MB budget"
    );
    let user_format = "{{.Config.User}}";
    let user = cmd!(sh, "podman image inspect --format {user_format} {tag}").read()?;
    ensure!(
        user.trim() == "65532:65532",
        "the image runs as {user:?}, not the nonroot user"
    );
    check_settings_files(sh, &tag, name)?;

    let stack = Stack::new(sh, name, redis);
    let result = stack
        .run(&tag, http_port)
        .map(|ready_after| Report { size_mb, ready_after });
    stack.remove();
    result
}

/// The image carries production's settings file only: the development one holds a private
/// key that everyone has.
fn check_settings_files(sh: &Shell, tag: &str, name: &str) -> anyhow::Result<()> {
    let container = format!("{name}-check-files");
    let dir = scratch_dir(&format!("image-settings/{name}"))?;
    let source = format!("{container}:/etc/{name}/config/.");
    cmd!(sh, "podman rm --force --ignore {container}")
        .quiet()
        .ignore_stdout()
        .run()?;
    cmd!(sh, "podman create --name {container} {tag}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let copied = cmd!(sh, "podman cp {source} {dir}").quiet().run();
    cmd!(sh, "podman rm --force {container}")
        .quiet()
        .ignore_stdout()
        .run()?;
    copied?;
    let mut files: Vec<String> = std::fs::read_dir(&dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    ensure!(
        files == ["production.toml"],
        "the image carries the settings files {files:?}; only production.toml belongs there"
    );
    Ok(())
}

/// `cargo xtask docker up` and `down` as a developer runs them: PostgreSQL, the migrations
/// and the service under compose, answering on the published port, then nothing left.
pub fn check_compose_stack(sh: &Shell, name: &str, accounts: bool) -> anyhow::Result<Duration> {
    let app_port = probe::free_port()?;
    let _app_port = sh.push_env("APP_PORT", app_port.to_string());
    let _postgres_port = sh.push_env("POSTGRES_PORT", probe::free_port()?.to_string());
    // A stack without Redis ignores it.
    let _redis_port = sh.push_env("REDIS_PORT", probe::free_port()?.to_string());
    // A database volume left by an earlier run holds another revision's migrations.
    cmd!(sh, "cargo xtask docker down --engine podman --volumes").run()?;
    let started = std::time::Instant::now();
    let checked = cmd!(sh, "cargo xtask docker up --engine podman")
        .run()
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            probe::wait_until_ready(app_port, Duration::from_secs(30), || Ok(()))?;
            // Only the migrations create the table this writes.
            if accounts {
                let credentials = r#"{"email":"stack@example.com","password":"correct horse battery staple"}"#;
                let (status, body) =
                    probe::request(app_port, "POST", "/api/v1/auth/register", Some(credentials), None)?;
                ensure!(
                    status == 202,
                    "the stack's service cannot use its tables: {status} {body}"
                );
            }
            Ok(started.elapsed())
        });
    let down = cmd!(sh, "cargo xtask docker down --engine podman --volumes").run();
    let up_after = checked?;
    down?;
    let filter = format!("name={name}_");
    let left = cmd!(sh, "podman ps --all --quiet --filter {filter}").read()?;
    ensure!(left.trim().is_empty(), "docker down left containers behind: {left}");
    Ok(up_after)
}

/// The containers and network of one image check, named after the service.
struct Stack<'a> {
    sh: &'a Shell,
    name: String,
    network: String,
    postgres: String,
    /// The Redis container, for a service that has Redis.
    redis: Option<String>,
    app: String,
    database: String,
}

impl<'a> Stack<'a> {
    fn new(sh: &'a Shell, name: &str, redis: bool) -> Self {
        Self {
            sh,
            name: name.to_owned(),
            network: format!("{name}-check"),
            postgres: format!("{name}-check-postgres"),
            redis: redis.then(|| format!("{name}-check-redis")),
            app: format!("{name}-check-app"),
            database: name.replace('-', "_"),
        }
    }

    fn run(&self, tag: &str, http_port: u16) -> anyhow::Result<Duration> {
        let Self {
            sh,
            name,
            network,
            postgres,
            redis,
            app,
            database,
        } = self;
        self.remove();
        cmd!(sh, "podman network create {network}")
            .quiet()
            .ignore_stdout()
            .run()?;
        let postgres_image = images::POSTGRES;
        cmd!(
            sh,
            "podman run --detach --name {postgres} --network {network}
                --env POSTGRES_PASSWORD=postgres --env POSTGRES_DB={database} {postgres_image}"
        )
        .quiet()
        .ignore_stdout()
        .run()?;
        self.wait_for(postgres, &["pg_isready", "--username", "postgres"], "PostgreSQL")?;
        // As compose runs it: nothing on disk, its own user from the start, no capabilities.
        let redis_url = match redis {
            Some(redis) => {
                let redis_image = images::REDIS;
                cmd!(
                    sh,
                    "podman run --detach --name {redis} --network {network} --user redis --read-only
                        --tmpfs /data --cap-drop ALL {redis_image} redis-server --save '' --appendonly no"
                )
                .quiet()
                .ignore_stdout()
                .run()?;
                self.wait_for(redis, &["redis-cli", "ping"], "Redis")?;
                vec!["--env".to_owned(), format!("REDIS_URL=redis://{redis}:6379")]
            }
            None => Vec::new(),
        };

        let url = format!("DATABASE_URL=postgres://postgres:postgres@{postgres}:5432/{database}");
        cmd!(sh, "podman run --rm --network {network} --env {url} {tag} migrate run").run()?;
        let host_port = probe::free_port()?;
        let publish = format!("127.0.0.1:{host_port}:{http_port}");
        // A key of its own: production refuses the development one. Passed through the
        // environment, not the command line, as a secret should be.
        let signing_key = cmd!(sh, "openssl genpkey -algorithm ed25519")
            .quiet()
            .read()
            .context("cannot generate a signing key (is openssl installed?)")?;
        // The restrictions a Kubernetes restricted security context applies. Podman runs an
        // image's HEALTHCHECK on systemd timers, which are absent here; the same command runs
        // below through `exec` instead.
        cmd!(
            sh,
            "podman run --detach --name {app} --network {network} --env {url} --publish {publish}
                --env APP_AUTH__SIGNING_KEY {redis_url...}
                --read-only --cap-drop ALL --security-opt no-new-privileges --no-healthcheck {tag}"
        )
        .env("APP_AUTH__SIGNING_KEY", signing_key)
        .quiet()
        .ignore_stdout()
        .run()?;
        let ready_after = probe::wait_until_ready(host_port, Duration::from_secs(30), || Ok(()))
            .with_context(|| format!("the container did not become ready; `podman logs {app}` tells why"))?;

        let binary = format!("/usr/local/bin/{name}");
        cmd!(sh, "podman exec {app} {binary} healthcheck")
            .run()
            .context("the healthcheck subcommand failed")?;
        ensure!(
            probe::status(host_port, "/metrics") == Some(200),
            "a request to the container failed"
        );
        ensure!(
            probe::status(host_port, "/openapi.json") == Some(404),
            "the production image serves its API documentation"
        );
        let pid_format = "{{.State.Pid}}";
        let pid = cmd!(sh, "podman inspect --format {pid_format} {app}").read()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
        let uid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .unwrap_or_default();
        ensure!(
            uid.split_whitespace().all(|id| id == "65532"),
            "the service runs as uid {uid}"
        );
        let shell = cmd!(sh, "podman exec {app} /bin/sh -c true")
            .quiet()
            .ignore_stderr()
            .run();
        ensure!(shell.is_err(), "the image has a shell");
        Ok(ready_after)
    }

    /// Waits until `check` succeeds in `container`, the server `what` runs.
    fn wait_for(&self, container: &str, check: &[&str], what: &str) -> anyhow::Result<()> {
        for _ in 0..100 {
            if cmd!(self.sh, "podman exec {container} {check...}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{what} did not start in its container")
    }

    fn remove(&self) {
        let Self {
            sh,
            network,
            postgres,
            redis,
            app,
            ..
        } = self;
        // `--ignore`: after an early failure the app container does not exist, and without it
        // podman would give up before removing PostgreSQL.
        let _ = cmd!(
            sh,
            "podman rm --force --ignore --volumes --time 0 {app} {postgres} {redis...}"
        )
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
        let _ = cmd!(sh, "podman network rm {network}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
    }
}
