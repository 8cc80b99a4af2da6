//! The HTTP contract of a generated service, checked from outside by schemathesis: every
//! operation of the service's OpenAPI document sent valid and invalid requests in all its
//! phases, the stateful one included, with every check on. It passes with no failure only if
//! the service answers nothing the document does not list and refuses nothing the document
//! allows; the service's own `schemathesis.toml` states the few answers a JSON Schema cannot
//! (a password too easy to guess, an entity tag the resource does not have).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::cases::Case;
use crate::dev_database::DevDatabase;
use crate::faults;
use crate::generate::scratch_dir;
use crate::probe;
use crate::service::{Server, binary, call, service, sign_in};
use crate::test::section;
use crate::{realtime_check, webhooks_check};

/// The schemathesis `.ci/run` installs; the options below are its.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Fixed, so that a run can be repeated exactly; changing code changes what it reaches anyway.
const SEED: &str = "1";
/// Per operation and phase: enough to reach every status the routes answer in about a minute.
const MAX_EXAMPLES: &str = "25";
const ACCOUNT: &str = r#"{"email":"contract@example.com","password":"correct horse battery staple"}"#;
const ADMIN_EMAIL: &str = "contract-admin@example.com";
const ADMIN_PASSWORD: &str = "an administrator's passphrase";

/// Who sends a run's requests, and to which operations.
pub struct Caller<'a> {
    /// For the report: "anonymous", "an account", ...
    pub label: &'a str,
    /// An access token, sent as `Authorization: Bearer`.
    pub token: Option<&'a str>,
    /// Only the operations with this tag.
    pub tag: Option<&'a str>,
}

/// Runs the contract check of `case`, generated in `project`, against its migrated database
/// on `database`: anonymously without accounts, as an account and as an administrator with
/// them. (A verifier's needs an issuer's tokens: `issuer_check` runs it.) With the example
/// resource, the same service then writes through a restart of its database.
pub fn check_case(sh: &Shell, project: &Path, case: &Case, database: &DevDatabase) -> anyhow::Result<()> {
    let database_url = &database.url(&case.name);
    let dest = scratch_dir(&format!("cases/{}-contract", case.id))?;
    let package = &case.name;
    cmd!(sh, "cargo build --quiet --locked --bin {package}").run()?;
    let port = probe::free_port()?;
    let mut command = service(project, &case.name, port, database_url);
    // The check sends hundreds of requests a second from one address.
    command.env("APP_RATE_LIMIT__ENABLED", "false");
    let _server = Server::start(command, port, &dest.join("service.log"))?;
    if !case.is("auth", "issuer") {
        return check(sh, port, &dest, &[anonymous()]);
    }
    call(port, "POST", "/api/v1/auth/register", Some(ACCOUNT), None, 202)?;
    create_admin(project, &case.name, database_url)?;
    let account = sign_in(port, ACCOUNT)?;
    let admin = sign_in(
        port,
        &format!(r#"{{"email":"{ADMIN_EMAIL}","password":"{ADMIN_PASSWORD}"}}"#),
    )?;
    let as_account = Caller {
        label: "an account",
        token: Some(&account),
        tag: None,
    };
    if case.on("jobs") && case.on("example") {
        // First, while the worker's webhooks queue is empty: the contract run registers
        // endpoints of its own, whose deliveries then wait out their failures.
        section("webhook signatures (standardwebhooks)");
        webhooks_check::check(port, &account, &dest)?;
    }
    if case.on("realtime") {
        section("realtime across replicas (socket.io-client)");
        let other = r#"{"email":"contract-other@example.com","password":"correct horse battery staple"}"#;
        call(port, "POST", "/api/v1/auth/register", Some(other), None, 202)?;
        let stranger = sign_in(port, other)?;
        let replica = |port| {
            let mut command = service(project, &case.name, port, database_url);
            command.env("APP_RATE_LIMIT__ENABLED", "false");
            command
        };
        realtime_check::check(replica, port, &account, &stranger, &dest)?;
    }
    check(sh, port, &dest, &[as_account])?;
    if case.on("graphql") {
        section("GraphQL contract (schemathesis)");
        check_graphql(sh, port, &dest, &account, &dest.join("service.log"))?;
    }
    if case.on("example") {
        section("writes through a database restart");
        faults::check_restart(port, &account, database)?;
    }
    // Last: the administrator's stateful phase may disable the account.
    let as_administrator = Caller {
        label: "an administrator",
        token: Some(&admin),
        tag: Some("users"),
    };
    check(sh, port, &dest, &[as_administrator])
}

/// No token: the routes of a service without accounts.
pub fn anonymous() -> Caller<'static> {
    Caller {
        label: "anonymous",
        token: None,
        tag: None,
    }
}

/// Runs schemathesis against the service on `port` once per caller, with the service's
/// `schemathesis.toml` (the current directory is its project); reports land in `dest`.
pub fn check(sh: &Shell, port: u16, dest: &Path, callers: &[Caller]) -> anyhow::Result<()> {
    let version = cmd!(sh, "st --version").quiet().read()?;
    ensure!(
        version.ends_with(SCHEMATHESIS_VERSION),
        "{version} found; the contract check is written for schemathesis {SCHEMATHESIS_VERSION} \
         (pip install schemathesis=={SCHEMATHESIS_VERSION})"
    );
    let url = format!("http://127.0.0.1:{port}");
    let schema = format!("{url}/openapi.json");
    for caller in callers {
        let mut args = vec![
            "--config-file".to_owned(),
            "schemathesis.toml".to_owned(),
            "run".to_owned(),
            schema.clone(),
            format!("--url={url}"),
            format!("--max-examples={MAX_EXAMPLES}"),
            format!("--seed={SEED}"),
            // One worker: the stateful phase's sequences share the account's resources, and a
            // sequence deleting a project under another's feet is not the service's fault.
            "--workers=1".to_owned(),
        ];
        if let Some(token) = caller.token {
            args.extend(["--header".to_owned(), format!("Authorization: Bearer {token}")]);
        }
        if let Some(tag) = caller.tag {
            args.push(format!("--include-tag={tag}"));
        }
        let output = cmd!(sh, "st {args...}").ignore_status().quiet().output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        let log = dest.join(format!("schemathesis-{}.log", caller.label.replace(' ', "-")));
        std::fs::write(&log, &text)?;
        ensure!(
            output.status.success(),
            "schemathesis found the service breaking its contract as {}; the report is {}:\n{}",
            caller.label,
            log.display(),
            failures(&text)
        );
        println!("schemathesis as {}: {}", caller.label, summary(&text));
    }
    Ok(())
}

/// Runs schemathesis against `/graphql` as the account of `token`: every operation of the
/// schema the service introspects, fuzzed. It fails on a response outside the schema (a null
/// in a non-null field, a body that is no GraphQL response), and afterwards on any 5xx the
/// service counted for `/graphql` or any internal error in its log (`service_log`). Refusals
/// with a reason (`NOT_FOUND`, `BAD_USER_INPUT`, ...) are answers, not failures: the two
/// checks that count them as such are left out.
pub fn check_graphql(sh: &Shell, port: u16, dest: &Path, token: &str, service_log: &Path) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/graphql");
    // Away from the service's schemathesis.toml, whose settings are the REST API's.
    let _dir = sh.push_dir(dest);
    let args = [
        "run".to_owned(),
        url,
        format!("--max-examples={MAX_EXAMPLES}"),
        format!("--seed={SEED}"),
        "--workers=1".to_owned(),
        "--exclude-checks=not_a_server_error,positive_data_acceptance".to_owned(),
        "--header".to_owned(),
        format!("Authorization: Bearer {token}"),
    ];
    let output = cmd!(sh, "st {args...}").ignore_status().quiet().output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let log = dest.join("schemathesis-graphql.log");
    std::fs::write(&log, &text)?;
    ensure!(
        output.status.success(),
        "schemathesis found GraphQL answers outside the schema; the report is {}:\n{}",
        log.display(),
        failures(&text)
    );
    let (_, metrics) = probe::request(port, "GET", "/metrics", None, None)?;
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("http_requests_total{") && line.contains("route=\"/graphql\""))
        .filter(|line| line.contains("status=\"5"))
        .collect();
    ensure!(
        server_errors.is_empty(),
        "/graphql answered with 5xx: {server_errors:?}"
    );
    let service = std::fs::read_to_string(service_log)?;
    let internal = service
        .lines()
        .filter(|line| line.contains("graphql resolver failed"))
        .count();
    ensure!(
        internal == 0,
        "{internal} GraphQL resolvers failed internally; see {}",
        service_log.display()
    );
    println!("schemathesis on /graphql: {}", summary(&text));
    Ok(())
}

/// The report's failures, without the banner before them.
fn failures(report: &str) -> &str {
    report.find("FAILURES").map_or(report, |start| &report[start..])
}

/// The report's count of test cases and its closing line.
fn summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let cases = lines
        .iter()
        .find(|line| line.contains(" generated, "))
        .copied()
        .unwrap_or("no test case count");
    let verdict = lines.last().copied().unwrap_or_default().trim_matches('=').trim();
    format!("{cases}; {verdict}")
}

/// An administrator made as an operator makes the first one: `create-admin`, password on stdin.
fn create_admin(project: &Path, package: &str, database_url: &str) -> anyhow::Result<()> {
    let mut child = Command::new(binary(package))
        .args(["create-admin", "--email", ADMIN_EMAIL])
        .env("APP_CONFIG_DIR", project.join("config"))
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    std::io::Write::write_all(&mut stdin, format!("{ADMIN_PASSWORD}\n").as_bytes())?;
    drop(stdin);
    ensure!(child.wait()?.success(), "create-admin failed");
    Ok(())
}
