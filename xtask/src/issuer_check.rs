//! The verifier case against a real issuer: a service generated from this template with
//! `auth = issuer` signs the tokens; the verifier under test accepts them over HTTP, keeps
//! accepting them while the issuer is down, and takes the issuer's new key after it restarts
//! with another one. With realtime, socket.io-client hears changes across two verifiers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::cases::Case;
use crate::generate::{self, repo_root, scratch_dir};
use crate::service::{Server, binary, call, service, sign_in};
use crate::test::section;
use crate::{contract, lockfile, probe, realtime_check};

const ISSUER: &str = "token-issuer";
/// Both services agree on the audience, as services behind one issuer do.
const AUDIENCE: &str = "orders";
const CREDENTIALS: &str = r#"{"email":"ada@example.com","password":"correct horse battery staple"}"#;

/// Runs the check against the verifier of `case` in `verifier`, named `name`, whose PostgreSQL
/// listens on `database_port` and already holds its migrated database; with the example
/// resource, the caller also owns what it creates there.
pub fn check(sh: &Shell, verifier: &Path, name: &str, database_port: &str, case: &Case) -> anyhow::Result<()> {
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
    let start_verifier = |port| {
        let mut command = service(verifier, name, port, &database(&name.replace('-', "_")));
        command
            .env("APP_AUTH__ISSUER", &issuer_url)
            .env("APP_AUTH__AUDIENCE", AUDIENCE)
            // The contract check sends hundreds of requests a second from one address.
            .env("APP_RATE_LIMIT__ENABLED", "false")
            .env("APP_AUTH__JWKS_URL", format!("{issuer_url}/.well-known/jwks.json"))
            .env("APP_AUTH__JWKS_MAX_AGE_SECS", "1")
            .env("APP_AUTH__JWKS_MIN_REFETCH_SECS", "1");
        command
    };
    let _verifier = Server::start(start_verifier(verifier_port), verifier_port, &dest.join("verifier.log"))?;

    let (status, _) = probe::request(issuer_port, "POST", "/api/v1/auth/register", Some(CREDENTIALS), None)?;
    ensure!(status == 202, "registering at the issuer answered {status}");
    let token = sign_in(issuer_port, CREDENTIALS)?;
    let caller = call(verifier_port, "GET", "/api/v1/me", None, Some(&token), 200)?;
    let account = call(issuer_port, "GET", "/api/v1/auth/me", None, Some(&token), 200)?;
    let id = account["id"].as_str().context("the issuer's account has no id")?;
    ensure!(
        caller["id"].as_str() == Some(id),
        "the verifier sees {caller} for the issuer's {account}"
    );
    if case.on("example") {
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
    if case.on("realtime") {
        section("realtime across replicas (socket.io-client)");
        let other = r#"{"email":"grace@example.com","password":"correct horse battery staple"}"#;
        let (status, _) = probe::request(issuer_port, "POST", "/api/v1/auth/register", Some(other), None)?;
        ensure!(status == 202, "registering at the issuer answered {status}");
        let stranger = sign_in(issuer_port, other)?;
        realtime_check::check(start_verifier, verifier_port, &token, &stranger, &dest)?;
    }
    let caller = contract::Caller {
        label: "an account of the issuer",
        token: Some(&token),
        tag: None,
    };
    contract::check(sh, verifier_port, &dest, &[caller])?;
    if case.on("graphql") {
        section("GraphQL contract (schemathesis)");
        contract::check_graphql(sh, verifier_port, &dest, &token, &dest.join("verifier.log"))?;
    }

    running_issuer.stop();
    // Past the keys' maximum age and the refetch interval: the verifier tries the issuer,
    // fails, and keeps the keys it has.
    std::thread::sleep(Duration::from_millis(1_100));
    call(verifier_port, "GET", "/api/v1/me", None, Some(&token), 200)?;
    println!("with the issuer down, the verifier still accepts its tokens");

    let new_key = cmd!(sh, "openssl genpkey -algorithm ed25519").quiet().read()?;
    let _issuer = start_issuer(Some(&new_key))?;
    let rotated = sign_in(issuer_port, CREDENTIALS)?;
    // Past the verifier's minimum interval between fetches of the key set.
    std::thread::sleep(Duration::from_millis(1_100));
    call(verifier_port, "GET", "/api/v1/me", None, Some(&rotated), 200)?;
    println!("after the issuer restarted with a new key, the verifier fetched it and accepts its tokens");
    Ok(())
}
