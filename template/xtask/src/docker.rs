//! `cargo xtask docker build|up|down`: the service image from `docker/Dockerfile`, and a local
//! stack of it (PostgreSQL and any Redis, the migrations, the service) under compose, with docker
//! or podman.

use std::path::PathBuf;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::engine;
use crate::flags::{Docker, Engine};
use crate::project;

pub fn run(command: Docker) -> anyhow::Result<()> {
    let sh = project::shell()?;
    match command {
        Docker::Build { tag, push, engine } => {
            let engine = engine::choose(&sh, engine.engine)?;
            let tag = tag.map_or_else(default_tag, Ok)?;
            build(&sh, engine, &tag)?;
            if push {
                let program = engine::name(engine);
                cmd!(sh, "{program} push {tag}").run()?;
            }
            Ok(())
        }
        Docker::Up { engine } => {
            let engine = engine::choose(&sh, engine.engine)?;
            let tag = default_tag()?;
            build(&sh, engine, &tag)?;
            up(&sh, engine, &tag)?;
            println!("the stack is up; `cargo xtask docker down` stops it");
            Ok(())
        }
        Docker::Down { engine, volumes } => {
            let engine = engine::choose(&sh, engine.engine)?;
            let volumes = volumes.then_some("--volumes");
            engine::compose(&sh, engine)?.args(["down"]).args(volumes).run()?;
            Ok(())
        }
    }
}

/// Starts PostgreSQL (and Redis, when the stack has it), runs the migrations, then starts the
/// service, waiting for each. The order is kept here rather than by compose's health conditions
/// and `--wait`, which podman-compose ignores on podman releases before 4.6.
fn up(sh: &Shell, engine: Engine, tag: &str) -> anyhow::Result<()> {
    let signing_key = signing_key(sh)?;
    let compose = |args: &[&str]| -> anyhow::Result<_> {
        Ok(engine::compose(sh, engine)?
            .args(args)
            .env("IMAGE", tag)
            .envs(signing_key.iter().map(|key| ("APP_AUTH__SIGNING_KEY", key))))
    };
    let stack = std::fs::read_to_string(compose_file())?;
    let has = |service: &str| stack.contains(&format!("\n  {service}:\n"));
    // The service starts with --no-deps below, so what it talks to starts here.
    let backing: Vec<&str> = ["postgres", "redis"]
        .into_iter()
        .filter(|service| has(service))
        .collect();
    compose(&["up", "--detach"])?.args(backing).run()?;
    // `migrate run` fails fast while PostgreSQL still starts, so it doubles as the wait.
    retry("the migrations", || {
        compose(&["run", "--rm", "-T", "migrate"])?
            .quiet()
            .ignore_stderr()
            .run()?;
        Ok(())
    })?;
    let binary = format!("/usr/local/bin/{}", project::package_field("name")?);
    // The service, then its job worker when the stack has one; both answer the health check.
    for service in ["app", "worker"] {
        if !has(service) {
            continue;
        }
        compose(&["up", "--detach", "--no-deps", service])?.run()?;
        retry(&format!("the {service}'s health check"), || {
            compose(&["exec", "-T", service, &binary, "healthcheck"])?
                .quiet()
                .ignore_stderr()
                .run()?;
            Ok(())
        })?;
    }
    Ok(())
}

fn compose_file() -> std::path::PathBuf {
    project::root().join("docker").join("compose.yaml")
}

/// The key the stack signs its access tokens with, when the compose file asks for one: the
/// image runs in production mode, which refuses the development key, so without a key of
/// yours in the environment the stack gets a fresh one.
fn signing_key(sh: &Shell) -> anyhow::Result<Option<String>> {
    let compose = std::fs::read_to_string(compose_file())?;
    if !compose.contains("APP_AUTH__SIGNING_KEY") {
        return Ok(None);
    }
    if let Ok(key) = std::env::var("APP_AUTH__SIGNING_KEY") {
        return Ok(Some(key));
    }
    let key = cmd!(sh, "openssl genpkey -algorithm ed25519")
        .quiet()
        .read()
        .context("set APP_AUTH__SIGNING_KEY, or install openssl to generate one")?;
    Ok(Some(key))
}

/// Runs `step` until it succeeds, for up to 60 seconds.
fn retry(what: &str, mut step: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match step() {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() > std::time::Duration::from_mins(1) => {
                return Err(err.context(format!("{what} did not succeed within 60 s")));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}

/// `<package>:<version>`, the tag compose runs.
pub fn default_tag() -> anyhow::Result<String> {
    Ok(format!(
        "{}:{}",
        project::package_field("name")?,
        project::package_field("version")?
    ))
}

fn build(sh: &Shell, engine: Engine, tag: &str) -> anyhow::Result<()> {
    let version = project::package_field("version")?;
    let revision = cmd!(sh, "git rev-parse --short HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| "unknown".into());
    let program = engine::name(engine);
    let mut build = cmd!(sh, "{program} build --file docker/Dockerfile --tag {tag}")
        .args(["--build-arg", &format!("VERSION={version}")])
        .args(["--build-arg", &format!("REVISION={revision}")]);
    build = match engine {
        // Docker needs BuildKit for cache mounts and secrets.
        Engine::Docker => build.env("DOCKER_BUILDKIT", "1"),
        // The OCI format podman defaults to has no HEALTHCHECK.
        Engine::Podman => build.args(["--format", "docker"]),
    };
    if let Some(bundle) = ca_bundle() {
        build = build.arg("--secret").arg(format!("id=ca,src={}", bundle.display()));
    }
    build.arg(".").run()?;
    let inspect: serde_json::Value = serde_json::from_str(&cmd!(sh, "{program} image inspect {tag}").read()?)?;
    let bytes = inspect[0]["Size"].as_u64().unwrap_or(0);
    println!("built {tag}: {} MB", bytes.div_ceil(1_000_000));
    Ok(())
}

/// The CA bundle this machine trusts, handed to the build so that fetching crates works
/// behind a TLS-intercepting proxy as it does here.
fn ca_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/etc/ssl/certs/ca-certificates.crt")])
        .find(|path| path.is_file())
}
