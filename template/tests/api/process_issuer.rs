//! The compiled binary of an issuer: production refuses the public development key,
//! `create-admin` makes the first administrator, and no password, token or key reaches the
//! logs.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::auth::PASSWORD;
use crate::database::TestDatabase;
use crate::helpers::http_client;
use crate::process::{RunToExit, binary, config_dir, free_port, serve, stderr_of, terminate, wait_until_live};

#[test]
fn production_refuses_the_development_key_before_listening() {
    let output = binary(&["serve"])
        .env("DATABASE_URL", "postgres://localhost/x")
        .env("APP_CONFIG_DIR", config_dir())
        .env("APP_ENVIRONMENT", "production")
        .env(
            "APP_AUTH__SIGNING_KEY",
            include_str!("../../config/development.toml")
                .split("\"\"\"")
                .nth(1)
                .expect("the development key"),
        )
        .run_to_exit();

    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("APP_AUTH__SIGNING_KEY is the development key"),
        "{stderr}"
    );
}

/// Runs `create-admin` with `password` on standard input.
fn create_admin(database_url: &str, email: &str, password: &str) -> Output {
    let mut child = binary(&["create-admin", "--email", email])
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

#[tokio::test]
async fn create_admin_reads_the_password_from_stdin_and_refuses_a_taken_address() {
    let database = TestDatabase::migrated().await;

    let created = create_admin(&database.url, "root@example.com", PASSWORD);
    assert!(created.status.success(), "{}", stderr_of(&created));
    assert!(String::from_utf8_lossy(&created.stdout).starts_with("created admin "));
    let again = create_admin(&database.url, "ROOT@example.com", PASSWORD);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_of(&again).contains("already exists"), "{}", stderr_of(&again));
    let weak = create_admin(&database.url, "other@example.com", "short");
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr_of(&weak).contains("password"), "{}", stderr_of(&weak));
    assert!(!stderr_of(&weak).contains("short"), "{}", stderr_of(&weak));
    let common = create_admin(&database.url, "other@example.com", "password1234");
    assert_eq!(common.status.code(), Some(1));
    assert!(
        stderr_of(&common).contains("too easy to guess"),
        "{}",
        stderr_of(&common)
    );

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&database.url)
        .await
        .expect("connect");
    let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles")
        .fetch_all(&mut conn)
        .await
        .expect("roles");
    assert_eq!(roles, ["admin"]);
}

#[tokio::test]
async fn no_password_token_or_key_reaches_the_logs() {
    let database = TestDatabase::migrated().await;
    let port = free_port();
    let password = "recognisable-passphrase-7c41e9";
    let child = serve(&database.url, port);
    wait_until_live(port).await;
    let client = http_client().build().expect("client");
    let url = |path: &str| format!("http://127.0.0.1:{port}/api/v1/auth/{path}");
    let send = |path: &str, body: serde_json::Value| client.post(url(path)).json(&body).send();

    let credentials = serde_json::json!({"email": "ada@example.com", "password": password});
    send("register", credentials.clone()).await.expect("register");
    let session: serde_json::Value = send("login", credentials)
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let access = session["access_token"].as_str().expect("access token").to_owned();
    let refresh = session["refresh_token"].as_str().expect("refresh token").to_owned();
    client.get(url("me")).bearer_auth(&access).send().await.expect("me");
    let wrong = serde_json::json!({"email": "ada@example.com", "password": format!("{password}-wrong")});
    send("login", wrong).await.expect("failed login");
    let rotated: serde_json::Value = send("refresh", serde_json::json!({"refresh_token": refresh}))
        .await
        .expect("refresh")
        .json()
        .await
        .expect("tokens");
    send("refresh", serde_json::json!({"refresh_token": refresh}))
        .await
        .expect("reuse");
    send("logout", serde_json::json!({"refresh_token": rotated["refresh_token"]}))
        .await
        .expect("logout");

    let (code, lines) = terminate(child).await;
    assert_eq!(code, Some(0));
    let text = lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    // Each security event names the account, the client and the request.
    for event in [
        "login_succeeded",
        "login_failed",
        "refresh_token_reused",
        "account_created",
    ] {
        let line = lines
            .iter()
            .map(ToString::to_string)
            .find(|line| line.contains(event))
            .unwrap_or_else(|| panic!("no {event} event: {text}"));
        for field in ["user_id", "request_id", "client_ip", "127.0.0.1"] {
            assert!(line.contains(field), "{event} without {field}: {line}");
        }
    }
    let development_key = include_str!("../../config/development.toml")
        .split("\"\"\"")
        .nth(1)
        .and_then(|pem| pem.lines().nth(2))
        .expect("the development key");
    let rotated_refresh = rotated["refresh_token"].as_str().expect("refresh token");
    for secret in [password, &access, &refresh, rotated_refresh, development_key] {
        assert!(!text.contains(secret), "a secret reached the log: {secret}");
    }
    // Tokens are long; a prefix in a log line would leak enough to matter too.
    assert!(
        !text.contains(&access[access.len() - 20..]),
        "the access token's signature reached the log"
    );
}
