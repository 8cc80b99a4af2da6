//! The compiled binary: configuration errors, the `migrate` subcommands, JSON logs with request
//! ids, a clean exit on SIGTERM, and no secret in the logs.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::database::TestDatabase;
use crate::helpers::http_client;

const BINARY: &str = env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME")));

/// The binary with a clean environment, run from an empty directory outside the project so
/// that no `.env` is found in it or above it. Every run shares the one directory.
pub fn binary(args: &[&str]) -> Command {
    let dir = std::env::temp_dir().join(concat!(env!("CARGO_PKG_NAME"), "-process-tests"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = Command::new(BINARY);
    command.args(args).current_dir(&dir).env_clear();
    // PATH to find helpers; LLVM_PROFILE_FILE so that coverage runs count this process too.
    for kept in ["PATH", "LLVM_PROFILE_FILE"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
{%- if redis %}
    // Nothing listens there: the service starts and serves without Redis, as it must.
    command.env("REDIS_URL", "redis://127.0.0.1:9");
{%- endif %}
    command
}

/// `Command::output` that fails the test when the process is still running after 30 s, as a
/// binary that should refuse to start would be if it started serving instead.
pub trait RunToExit {
    fn run_to_exit(&mut self) -> Output;
}

impl RunToExit for Command {
    fn run_to_exit(&mut self) -> Output {
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
        let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{self:?} was still running after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        }
    }
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn a_missing_database_url_is_one_clear_line() {
    let output = binary(&["serve"]).run_to_exit();

    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: DATABASE_URL is not set"), "{stderr}");
}

#[test]
fn a_bad_port_names_the_setting() {
    let output = binary(&["serve"])
        .env("DATABASE_URL", "postgres://localhost/x")
        .env("APP_SERVER__PORT", "eighty")
        .run_to_exit();

    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("SERVER.PORT") && stderr.contains("APP_"), "{stderr}");
}

#[test]
fn a_bad_flag_is_refused_with_usage() {
    let output = binary(&["migrate", "sideways"]).run_to_exit();

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("Usage"), "{}", stderr_of(&output));
}

#[tokio::test]
async fn migrate_subcommands_apply_report_and_revert() {
    let database = TestDatabase::empty().await;
    let migrate = |args: &[&str]| {
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        let output = binary(&all).env("DATABASE_URL", &database.url).run_to_exit();
        assert!(output.status.success(), "migrate {args:?}: {}", stderr_of(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let pending = migrate(&["status"]);
    assert!(pending.lines().all(|line| line.starts_with("pending")), "{pending}");
    migrate(&["run"]);
    let applied = migrate(&["status"]);
    assert!(applied.lines().all(|line| line.starts_with("applied")), "{applied}");
    assert_eq!(migrate(&["run"]).trim(), "no pending migrations");
    migrate(&["revert", "--all"]);
    assert_eq!(migrate(&["status"]), pending);
}

#[tokio::test]
async fn migrate_run_creates_a_missing_database() {
    let database = TestDatabase::empty().await;
    database.admin(format!("DROP DATABASE {}", database.name())).await;

    let output = binary(&["migrate", "run"])
        .env("DATABASE_URL", &database.url)
        .run_to_exit();

    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("created the database"), "{stdout}");
}

#[test]
fn migrating_an_unreachable_database_says_what_to_check() {
    let url = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let output = binary(&["migrate", "run"])
        .env("DATABASE_URL", &url)
        .env("APP_DATABASE__ACQUIRE_TIMEOUT_MS", "500")
        .run_to_exit();

    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
}

/// `serve` or `worker` with JSON logs, stdout piped for the test to read; more settings can
/// be added before it is spawned.
pub fn running(subcommand: &str, database_url: &str, port: u16) -> Command {
    let mut command = binary(&[subcommand]);
    command
        .env("DATABASE_URL", database_url)
        .env("APP_CONFIG_DIR", config_dir())
        .env("APP_SERVER__HOST", "127.0.0.1")
        .env("APP_SERVER__PORT", port.to_string())
        .env("APP_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts `serve` with JSON logs.
pub fn serve(database_url: &str, port: u16) -> Child {
    running("serve", database_url, port).spawn().expect("start the service")
}

pub async fn wait_until_live(port: u16) {
    let started = Instant::now();
    let client = http_client().build().expect("client");
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/health/live")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not come up on port {port}");
}

#[tokio::test]
async fn serve_logs_json_with_request_ids_and_exits_cleanly_on_sigterm() {
    let database = TestDatabase::migrated().await;
    let port = free_port();
    let child = serve(&database.url, port);
    wait_until_live(port).await;

    let client = http_client().build().expect("client");
    let response = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    let (code, lines) = terminate(child).await;
    assert_eq!(code, Some(0));
    let finished = lines
        .iter()
        .find(|line| line["message"] == "request finished" && line["span"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no request log with the request id: {lines:#?}"));
    assert_eq!(finished["span"]["route"], "/health/ready");
    assert_eq!(finished["span"]["method"], "GET");
    assert_eq!(finished["status"], 200);
    assert!(finished["latency_ms"].as_f64().is_some());
    assert!(lines.iter().any(|line| line["message"] == "received SIGTERM"));
    assert!(lines.iter().any(|line| line["message"] == "stopped"));
}

/// Sends SIGTERM and returns the exit code and the JSON log lines.
pub async fn terminate(child: Child) -> (Option<i32>, Vec<serde_json::Value>) {
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let lines = BufReader::new(output.stdout.as_slice())
        .lines()
        .map(|line| serde_json::from_str(&line.expect("utf-8")).expect("every log line is JSON"))
        .collect();
    (output.status.code(), lines)
}

#[tokio::test]
async fn an_unreachable_database_is_logged_without_its_password_and_readiness_reports_it() {
    let port = free_port();
    let url = format!("postgres://app:hunter2-secret@127.0.0.1:{}/app", free_port());
    // Production with no configuration files: the log format must default to JSON, which
    // `terminate` requires of every line.
    let mut command = binary(&["serve"]);
    command
        .env("DATABASE_URL", &url)
        .env("APP_ENVIRONMENT", "production")
        .env("APP_SERVER__HOST", "127.0.0.1")
        .env("APP_SERVER__PORT", port.to_string());
    // What production requires of this service's authentication.
{%- if auth == "issuer" %}
    command.env("APP_AUTH__SIGNING_KEY", crate::tokens::OTHER_PRIVATE_KEY);
{%- elsif auth == "verifier" %}
    command
        .env("APP_AUTH__ISSUER", "https://accounts.example.com")
        .env("APP_AUTH__JWKS_URL", "https://accounts.example.com/jwks.json");
{%- endif %}
    let secrets: Vec<String> = command
        .get_envs()
        .filter(|(name, _)| name.to_string_lossy().ends_with("_KEY"))
        .filter_map(|(_, value)| value.map(|value| value.to_string_lossy().into_owned()))
        .collect();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the service");
    wait_until_live(port).await;

    let client = http_client().build().expect("client");
    let ready = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 503);

    let (code, lines) = terminate(child).await;
    assert_eq!(code, Some(0));
    let text = lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("database unreachable at start"), "{text}");
    assert!(text.contains("readiness: postgres is down"), "{text}");
    assert!(!text.contains("hunter2-secret"), "the password reached the log: {text}");
    // A PEM key's body lines; any of them in a log line would leak the key.
    let key_lines = secrets.iter().flat_map(|secret| secret.lines());
    for line in key_lines.filter(|line| line.len() > 20) {
        assert!(!text.contains(line), "a key reached the log: {text}");
    }
}

#[tokio::test]
async fn variables_kubernetes_injects_are_ignored_but_misspelt_settings_are_not() {
    let database = TestDatabase::migrated().await;
    let status = |extra: (&str, &str)| {
        binary(&["migrate", "status"])
            .env("DATABASE_URL", &database.url)
            .env(extra.0, extra.1)
            .run_to_exit()
    };

    let injected = status(("APP_PORT", "tcp://10.0.0.7:80"));
    assert!(injected.status.success(), "{}", stderr_of(&injected));
    let misspelt = status(("APP_SERVER__PROT", "8080"));
    assert_eq!(misspelt.status.code(), Some(1));
    assert!(stderr_of(&misspelt).contains("prot"), "{}", stderr_of(&misspelt));
}

#[tokio::test]
async fn healthcheck_succeeds_only_while_the_service_is_live() {
    let database = TestDatabase::migrated().await;
    let port = free_port();
    let healthcheck = || {
        binary(&["healthcheck"])
            .env("DATABASE_URL", &database.url)
            .env("APP_SERVER__PORT", port.to_string())
            .run_to_exit()
    };

    let down = healthcheck();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr_of(&down).contains("nothing is listening"),
        "{}",
        stderr_of(&down)
    );

    let child = serve(&database.url, port);
    wait_until_live(port).await;
    let up = healthcheck();
    assert!(up.status.success(), "{}", stderr_of(&up));
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}
