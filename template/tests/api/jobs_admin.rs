//! The dead-jobs API: only callers holding `jobs:manage` list, retry and discard dead jobs;
//! pending jobs are out of its reach.

use reqwest::Method;
use service::jobs::{self, Job, Options, PruneDeadJobs};
use uuid::Uuid;

use crate::helpers::{TestApp, json, problem};

/// A dead job, as a worker leaves one, that died `ago` before now.
async fn dead_job(app: &TestApp, ago: &str, dedupe_key: Option<&str>) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, queue, kind, version, payload, dedupe_key, state, attempts, max_attempts, run_at, last_error, updated_at) \
         VALUES ($1, 'default', 'prune-dead-jobs', 1, 'null', $2, 'dead', 3, 3, now(), 'it broke', now() - $3::interval)",
    )
    .bind(id)
    .bind(dedupe_key)
    .bind(ago)
    .execute(app.state.db.pool())
    .await
    .expect("insert a dead job");
    id
}

async fn state_of(app: &TestApp, id: Uuid) -> Option<(String, i32)> {
    sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(app.state.db.pool())
        .await
        .expect("read the job")
}

#[tokio::test]
async fn only_an_operator_lists_retries_and_discards_dead_jobs() {
    let mut app = TestApp::spawn().await;
    let older = dead_job(&app, "2 hours", None).await;
    let newer = dead_job(&app, "1 hour", None).await;
    let paths = [
        (Method::GET, "/api/v1/jobs/dead".to_owned()),
        (Method::POST, format!("/api/v1/jobs/{older}/retry")),
        (Method::DELETE, format!("/api/v1/jobs/{older}")),
    ];

    for (method, path) in &paths {
        let response = app.request(method.clone(), path).send().await.expect("request");
        problem(response, 401).await;
    }
    let member = app.user("member@example.com", "user").await;
    app.act_as(&member);
    for (method, path) in &paths {
        let response = app.request(method.clone(), path).send().await.expect("request");
        problem(response, 403).await;
    }
    assert_eq!(state_of(&app, older).await, Some(("dead".into(), 3)), "untouched");

    let operator = app.user("ops@example.com", "admin").await;
    app.act_as(&operator);
    let listed = json(app.get("/api/v1/jobs/dead").await).await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|job| job["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [newer.to_string(), older.to_string()], "most recent first");
    assert_eq!(listed["items"][0]["last_error"], "it broke");
    assert_eq!(listed["items"][0]["kind"], PruneDeadJobs::KIND);
    let one = json(app.get("/api/v1/jobs/dead?limit=1").await).await;
    assert_eq!(one["items"].as_array().expect("items").len(), 1);

    let retried = app
        .request(Method::POST, &format!("/api/v1/jobs/{older}/retry"))
        .send()
        .await
        .expect("retry");
    assert_eq!(retried.status(), 204);
    assert_eq!(state_of(&app, older).await, Some(("ready".into(), 0)), "fresh attempts");
    let again = app
        .request(Method::POST, &format!("/api/v1/jobs/{older}/retry"))
        .send()
        .await
        .expect("retry");
    assert_eq!(problem(again, 404).await["detail"], "no such dead job");
    let pending = app.delete(&format!("/api/v1/jobs/{older}"), None).await;
    problem(pending, 404).await;
    assert!(state_of(&app, older).await.is_some(), "a pending job is not discarded");

    assert_eq!(app.delete(&format!("/api/v1/jobs/{newer}"), None).await.status(), 204);
    assert_eq!(state_of(&app, newer).await, None);
}

#[tokio::test]
async fn a_dead_job_whose_dedupe_key_is_pending_again_is_not_retried() {
    let mut app = TestApp::spawn().await;
    let dead = dead_job(&app, "1 hour", Some("nightly")).await;
    let mut conn = app.state.db.pool().acquire().await.expect("connection");
    let options = Options {
        dedupe_key: Some("nightly".into()),
        ..Options::default()
    };
    jobs::enqueue(&mut conn, &PruneDeadJobs, options)
        .await
        .expect("enqueue")
        .expect("a dead job does not hold its key");
    let operator = app.user("ops@example.com", "admin").await;
    app.act_as(&operator);

    let refused = app
        .request(Method::POST, &format!("/api/v1/jobs/{dead}/retry"))
        .send()
        .await
        .expect("retry");

    assert_eq!(
        problem(refused, 409).await["detail"],
        "a job with the same dedupe key is already pending"
    );
    assert_eq!(state_of(&app, dead).await, Some(("dead".into(), 3)));
}
