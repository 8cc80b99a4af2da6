//! The verifier case against a real issuer: a service generated from this template with
//! `auth = issuer` signs the tokens; the verifier under test accepts them over HTTP, keeps
//! accepting them while the issuer is down, and takes the issuer's new key after it restarts
//! with another one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};
use crate::{lockfile, probe};

const ISSUER: &str = "token-issuer";
/// Both services agree on the audience, as services behind one issuer do.
const AUDIENCE: &str = "orders";
const CREDENTIALS: &str = r#"{"email":"ada@example.com","password":"correct horse battery staple"}"#;

/// Runs the check against the verifier in `verifier`, named `name`, whose PostgreSQL listens
/// on `database_port` and already holds its migrated database; with the example resource, the
/// caller also owns what it creates there.
pub fn check(sh: &Shell, verifier: &Path, name: &str, database_port: &str, example: bool) -> anyhow::Result<()> {
    let dest = scratch_dir("cases/token-issuer")?;
    let issuer = generate::generate_ok(sh, &repo_root(), ISSUER, &[], &dest)?;
    {
        let _dir = sh.push_dir(&issuer);
        lockfile::check_first_use(sh, &issuer)?;
    }
    for (project, package) in [(&issuer, ISSUER), (&verifier.to_path_buf(), name)] {
        let _dir = sh.push_dir(project);
        cmd!(sh, "cargo build --quiet --locked --bin {package}").run()?;
    }
    let database = |db: &str| format!("postgres://postgres:postgres@127.0.0.1:{database_port}/{db}");
    let issuer_port = probe::free_port()?;
    let issuer_url = format!("http://127.0.0.1:{issuer_port}");
    let start_issuer = |signing_key: Option<&str>| {
        let mut command = service(&issuer, ISSUER, issuer_port, &database("token_issuer"));
        command
            .env("APP_AUTH__ISSUER", &issuer_url)
            .env("APP_AUTH__AUDIENCE", AUDIENCE)
            .env("APP_RATE_LIMIT__ENABLED", "false");
        if let Some(key) = signing_key {
            command.env("APP_AUTH__SIGNING_KEY", key);
        }
        Server::start(command, issuer_port, &dest.join("issuer.log"))
    };
    let migrate = Command::new(binary(ISSUER))
        .args(["migrate", "run"])
        .env("APP_CONFIG_DIR", issuer.join("config"))
        .env("DATABASE_URL", database("token_issuer"))
        .status()?;
    ensure!(migrate.success(), "the issuer's migrations failed");

    let mut running_issuer = start_issuer(None)?;
    let verifier_port = probe::free_port()?;
    let mut command = service(verifier, name, verifier_port, &database(&name.replace('-', "_")));
    command
        .env("APP_AUTH__ISSUER", &issuer_url)
        .env("APP_AUTH__AUDIENCE", AUDIENCE)
        .env("APP_AUTH__JWKS_URL", format!("{issuer_url}/.well-known/jwks.json"))
        .env("APP_AUTH__JWKS_MAX_AGE_SECS", "1")
        .env("APP_AUTH__JWKS_MIN_REFETCH_SECS", "1");
    let _verifier = Server::start(command, verifier_port, &dest.join("verifier.log"))?;

    let (status, _) = probe::request(issuer_port, "POST", "/api/v1/auth/register", Some(CREDENTIALS), None)?;
    ensure!(status == 202, "registering at the issuer answered {status}");
    let token = sign_in(issuer_port)?;
    let caller = call(verifier_port, "GET", "/api/v1/me", None, Some(&token), 200)?;
    let account = call(issuer_port, "GET", "/api/v1/auth/me", None, Some(&token), 200)?;
    let id = account["id"].as_str().context("the issuer's account has no id")?;
    ensure!(
        caller["id"].as_str() == Some(id),
        "the verifier sees {caller} for the issuer's {account}"
    );
    if example {
        let project = call(
            verifier_port,
            "POST",
            "/api/v1/projects",
            Some(r#"{"name":"Across services"}"#),
            Some(&token),
            201,
        )?;
        ensure!(
            project["owner_id"].as_str() == Some(id),
            "the project is not the caller's: {project}"
        );
    }
    call(verifier_port, "GET", "/api/v1/me", None, Some("not-a-token"), 401)?;
    println!("a token of the issuer works at the verifier, as the same account");

    running_issuer.stop();
    // Past the keys' maximum age and the refetch interval: the verifier tries the issuer,
    // fails, and keeps the keys it has.
    std::thread::sleep(Duration::from_millis(1_100));
    call(verifier_port, "GET", "/api/v1/me", None, Some(&token), 200)?;
    println!("with the issuer down, the verifier still accepts its tokens");

    let new_key = cmd!(sh, "openssl genpkey -algorithm ed25519").quiet().read()?;
    let _issuer = start_issuer(Some(&new_key))?;
    let rotated = sign_in(issuer_port)?;
    // Past the verifier's minimum interval between fetches of the key set.
    std::thread::sleep(Duration::from_millis(1_100));
    call(verifier_port, "GET", "/api/v1/me", None, Some(&rotated), 200)?;
    println!("after the issuer restarted with a new key, the verifier fetched it and accepts its tokens");
    Ok(())
}

fn sign_in(issuer_port: u16) -> anyhow::Result<String> {
    let session = call(issuer_port, "POST", "/api/v1/auth/login", Some(CREDENTIALS), None, 200)?;
    session["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access token")
}

/// The JSON answer of a request, which must have status `expected`.
fn call(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
    expected: u16,
) -> anyhow::Result<Value> {
    let (status, body) = probe::request(port, method, path, json, token)?;
    ensure!(
        status == expected,
        "{method} {path} on port {port} answered {status}, not {expected}: {body}"
    );
    serde_json::from_str(&body).with_context(|| format!("{method} {path} answered no JSON: {body:?}"))
}

fn binary(package: &str) -> PathBuf {
    shared_target_dir().join("debug").join(package)
}

/// `serve` of a generated service on `port`, in development mode with its own configuration.
fn service(project: &Path, package: &str, port: u16, database_url: &str) -> Command {
    let mut command = Command::new(binary(package));
    command
        .arg("serve")
        .env("APP_CONFIG_DIR", project.join("config"))
        .env("APP_SERVER__PORT", port.to_string())
        .env("DATABASE_URL", database_url);
    command
}

/// A running service, stopped when dropped.
struct Server(Option<Child>);

impl Server {
    fn start(mut command: Command, port: u16, log: &Path) -> anyhow::Result<Self> {
        let output = File::create(log)?;
        command.stdout(output.try_clone()?).stderr(output);
        let mut server = Self(Some(command.spawn()?));
        probe::wait_until_ready(port, Duration::from_secs(30), || {
            let exited = server.0.as_mut().and_then(|child| child.try_wait().ok().flatten());
            ensure!(
                exited.is_none(),
                "the service exited ({exited:?}); see {}",
                log.display()
            );
            Ok(())
        })?;
        Ok(server)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
