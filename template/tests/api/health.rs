//! Liveness and readiness, including a database outage and recovery, and a flood of probes
//! against a database that does not answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use service::db::PING_REUSE;
use tokio::net::TcpListener;

use crate::helpers::{TestApp, json};

#[tokio::test]
async fn liveness_is_up() {
    let app = TestApp::spawn().await;

    let response = app.get("/health/live").await;

    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["status"], "up");
}

#[tokio::test]
async fn readiness_is_up_when_postgres_answers() {
    let app = TestApp::spawn().await;

    let response = app.get("/health/ready").await;

    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["status"], "up");
    assert_eq!(body["checks"]["postgres"], "up");
    assert_eq!(body["draining"], false);
}

#[tokio::test]
async fn readiness_reports_a_database_outage_and_recovers_without_a_restart() {
    let app = TestApp::spawn().await;
    let name = app.database.name().to_owned();
    assert_eq!(app.get("/health/ready").await.status(), 200);

    // Take this test's database away: refuse new connections and end the open ones.
    app.database
        .admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await;
    app.database
        .admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    // The answer before the outage is reused for a moment.
    tokio::time::sleep(PING_REUSE).await;

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let text = response.text().await.expect("body");
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON body");
    assert_eq!(body["status"], "down");
    assert_eq!(body["checks"]["postgres"], "down");
    assert!(
        !text.contains("postgres://") && !text.contains(&name),
        "leaks connection details: {text}"
    );
    assert_eq!(
        app.get("/health/live").await.status(),
        200,
        "liveness must not depend on the database"
    );

    app.database
        .admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await;
    tokio::time::sleep(PING_REUSE).await;

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["checks"]["postgres"], "up");
}

#[tokio::test]
async fn readiness_fails_once_draining_starts() {
    let app = TestApp::spawn().await;

    app.state.lifecycle.start_draining();

    let response = app.get("/health/ready").await;
    assert_eq!(response.status(), 503);
    let body = json(response).await;
    assert_eq!(body["draining"], true);
    assert_eq!(body["checks"]["postgres"], "up");
}

#[tokio::test]
async fn a_flood_of_readiness_probes_opens_one_connection() {
    // A PostgreSQL that accepts connections and never answers: every check waits out its
    // timeout on a new connection, since the pool has none.
    let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let url = format!(
        "postgres://postgres:postgres@{}/hung",
        hung.local_addr().expect("address")
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    let _server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    let app = TestApp::spawn_with(|config| config.database.url = Some(url.into()), Router::new()).await;

    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app.request(reqwest::Method::GET, "/health/ready");
        probes.spawn(async move { request.send().await.expect("request").status() });
    }
    let statuses = probes.join_all().await;

    assert!(statuses.iter().all(|status| *status == 503), "{statuses:?}");
{%- if realtime and redis == false %}
    // One more: the realtime listener's own.
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections opened by 20 probes");
{%- else %}
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections opened by 20 probes");
{%- endif %}
}
