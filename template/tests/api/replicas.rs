//! Two replicas of the service on one database: what one remembers of an account's session
//! is forgotten within a second of a change committed through the other.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::callers::TestUser;
use crate::helpers::TestApp;

/// How long a change may take to reach the other replica.
const WITHIN: Duration = Duration::from_secs(1);

/// Two replicas, an administrator, and a member whose session the second replica remembers
/// (it serves the member from memory, not from the database).
async fn replicas(member_role: &str) -> (TestApp, TestApp, TestUser, TestUser) {
    let mut first = TestApp::spawn().await;
    let mut second = first.replica().await;
    let admin = first.user("admin@example.com", "admin").await;
    let member = first.user("member@example.com", member_role).await;
    first.act_as(&admin);
    second.act_as(&member);
    let started = Instant::now();
    while second.state.auth.remembered_sessions() == 0 {
        assert_eq!(second.get("/api/v1/auth/me").await.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(5), "the replica never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (first, second, admin, member)
}

/// Calls `path` on `app` until it answers `status`; how long that took.
async fn until_status(app: &TestApp, path: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let answered = app.get(path).await.status().as_u16();
        if answered == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} still answers {answered}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_role_change_on_one_replica_denies_on_the_other_within_a_second() {
    let (first, second, _, member) = replicas("admin").await;
    assert_eq!(second.get("/api/v1/users").await.status(), 200);

    let changed = first
        .request(Method::PUT, &format!("/api/v1/users/{}/roles", member.id))
        .json(&json!({ "roles": ["user"] }))
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), 200);

    let took = until_status(&second, "/api/v1/users", 403).await;
    assert!(took < WITHIN, "the other replica denied after {took:?}");
    assert_eq!(second.get("/api/v1/auth/me").await.status(), 200, "still signed in");
}

#[tokio::test]
async fn disabling_an_account_on_one_replica_ends_its_sessions_on_the_other_within_a_second() {
    let (first, second, _, member) = replicas("user").await;

    let disabled = first
        .request(Method::POST, &format!("/api/v1/users/{}/disable", member.id))
        .send()
        .await
        .expect("request");
    assert_eq!(disabled.status(), 204);

    let took = until_status(&second, "/api/v1/auth/me", 401).await;
    assert!(took < WITHIN, "the other replica refused after {took:?}");
    assert_eq!(second.state.auth.remembered_sessions(), 0);
}

#[tokio::test]
async fn a_change_made_in_sql_by_hand_reaches_the_replicas_too() {
    let (first, second, _, _) = replicas("admin").await;
    assert_eq!(second.get("/api/v1/users").await.status(), 200);

    let mut sql = PgConnection::connect(&first.database.url).await.expect("connect");
    sqlx::query("DELETE FROM role_permissions WHERE role = 'admin' AND permission = 'users:read'")
        .execute(&mut sql)
        .await
        .expect("delete");

    let took = until_status(&second, "/api/v1/users", 403).await;
    assert!(took < WITHIN, "the other replica denied after {took:?}");
}

#[tokio::test]
async fn a_quiet_replica_keeps_remembering_while_it_hears_the_heartbeats() {
    let (first, mut second, _, _) = replicas("user").await;
    let other = first.user("other@example.com", "user").await;
    // Longer than a change may take to arrive, and nothing changes meanwhile: only the
    // heartbeats say that nothing was missed.
    tokio::time::sleep(WITHIN + Duration::from_millis(500)).await;

    second.act_as(&other);
    assert_eq!(second.get("/api/v1/auth/me").await.status(), 200);
    assert_eq!(
        second.state.auth.remembered_sessions(),
        2,
        "the new session was remembered"
    );
}
