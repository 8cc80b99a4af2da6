//! Liveness and readiness, including a database outage and recovery.

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
