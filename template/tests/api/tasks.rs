//! `/api/v1/tasks`: the relation to projects, filtering, sorting and updates.

use serde_json::{Value, json};

use crate::helpers::{TestApp, all_pages, json, problem};

async fn project(app: &TestApp, name: &str) -> String {
    let response = app.post("/api/v1/projects", &json!({ "name": name })).await;
    assert_eq!(response.status(), 201);
    json(response).await["id"].as_str().expect("id").to_owned()
}

async fn task(app: &TestApp, body: Value) -> Value {
    let response = app.post("/api/v1/tasks", &body).await;
    assert_eq!(response.status(), 201, "create {body}");
    json(response).await
}

fn titles(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["title"].as_str())
        .collect()
}

#[tokio::test]
async fn a_task_needs_an_existing_project() {
    let (app, _) = TestApp::signed_in().await;

    let response = app
        .post(
            "/api/v1/tasks",
            &json!({ "project_id": uuid::Uuid::new_v4(), "title": "Orphan" }),
        )
        .await;

    let body = problem(response, 422).await;
    assert_eq!(body["detail"], "project_id refers to a project that does not exist");
}

#[tokio::test]
async fn a_new_task_starts_as_todo_unless_told_otherwise() {
    let (app, _) = TestApp::signed_in().await;
    let project_id = project(&app, "Voyager").await;

    let plain = task(&app, json!({ "project_id": project_id, "title": "Plan" })).await;
    let started = task(
        &app,
        json!({ "project_id": project_id, "title": "Build", "status": "in_progress", "due_at": "2030-01-02T03:04:05Z" }),
    )
    .await;

    assert_eq!(plain["status"], "todo");
    assert_eq!(plain["due_at"], Value::Null);
    assert_eq!(started["status"], "in_progress");
    assert_eq!(started["due_at"], "2030-01-02T03:04:05Z");
}

#[tokio::test]
async fn invalid_tasks_are_refused() {
    let (app, _) = TestApp::signed_in().await;
    let project_id = project(&app, "Pioneer").await;

    problem(
        app.post(
            "/api/v1/tasks",
            &json!({ "project_id": project_id, "title": "x", "status": "archived" }),
        )
        .await,
        422,
    )
    .await;
    problem(
        app.post(
            "/api/v1/tasks",
            &json!({ "project_id": project_id, "title": "x", "due_at": "tomorrow" }),
        )
        .await,
        422,
    )
    .await;
    let long = problem(
        app.post(
            "/api/v1/tasks",
            &json!({ "project_id": project_id, "title": "t".repeat(201) }),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(long["errors"][0]["field"], "title");
    problem(
        app.post("/api/v1/tasks", &json!({ "project_id": "nope", "title": "x" }))
            .await,
        422,
    )
    .await;
}

#[tokio::test]
async fn tasks_are_filtered_by_project_and_status_and_sorted_by_title() {
    let (app, _) = TestApp::signed_in().await;
    let apollo = project(&app, "Apollo").await;
    let gemini = project(&app, "Gemini").await;
    for (project_id, title, status) in [
        (&apollo, "c-orbit", "done"),
        (&apollo, "a-launch", "todo"),
        (&apollo, "b-land", "todo"),
        (&gemini, "a-dock", "todo"),
    ] {
        task(
            &app,
            json!({ "project_id": project_id, "title": title, "status": status }),
        )
        .await;
    }

    let apollo_todo = json(
        app.get(&format!("/api/v1/tasks?project_id={apollo}&status=todo&sort=title"))
            .await,
    )
    .await;
    assert_eq!(titles(&apollo_todo), ["a-launch", "b-land"]);
    let all_desc = json(app.get("/api/v1/tasks?sort=-title").await).await;
    assert_eq!(titles(&all_desc), ["c-orbit", "b-land", "a-launch", "a-dock"]);
    let done = json(app.get("/api/v1/tasks?status=done").await).await;
    assert_eq!(titles(&done), ["c-orbit"]);

    let first = json(
        app.get(&format!("/api/v1/tasks?project_id={apollo}&sort=title&limit=2"))
            .await,
    )
    .await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = json(
        app.get(&format!(
            "/api/v1/tasks?project_id={apollo}&sort=title&limit=2&cursor={cursor}"
        ))
        .await,
    )
    .await;
    assert_eq!(titles(&second), ["c-orbit"]);

    problem(app.get("/api/v1/tasks?status=archived").await, 400).await;
    problem(app.get("/api/v1/tasks?project_id=nope").await, 400).await;
}

#[tokio::test]
async fn pages_of_equal_titles_neither_repeat_nor_skip_a_task() {
    let (app, _) = TestApp::signed_in().await;
    let project_id = project(&app, "Ties").await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(task(&app, json!({ "project_id": project_id, "title": "same" })).await["id"].clone());
    }

    let seen: Vec<Value> = all_pages(&app, "/api/v1/tasks?sort=title&limit=1", 1)
        .await
        .into_iter()
        .map(|task| task["id"].clone())
        .collect();

    created.sort_by_key(ToString::to_string);
    assert_eq!(seen, created, "ties are broken by id, in order");
}

#[tokio::test]
async fn a_task_moves_between_projects_and_changes_status() {
    let (app, _) = TestApp::signed_in().await;
    let apollo = project(&app, "Apollo").await;
    let gemini = project(&app, "Gemini").await;
    let created = task(
        &app,
        json!({ "project_id": apollo, "title": "Dock", "due_at": "2030-01-01T00:00:00Z" }),
    )
    .await;
    let path = format!("/api/v1/tasks/{}", created["id"].as_str().expect("id"));

    let moved = app
        .patch(
            &path,
            Some("\"1\""),
            &json!({ "project_id": gemini, "status": "done", "due_at": null }),
        )
        .await;

    assert_eq!(moved.status(), 200);
    let moved = json(moved).await;
    assert_eq!(moved["project_id"], gemini.as_str());
    assert_eq!(moved["status"], "done");
    assert_eq!(moved["due_at"], Value::Null);
    assert_eq!(moved["title"], "Dock");

    problem(app.patch(&path, Some("\"2\""), &json!({ "title": null })).await, 422).await;
    problem(app.patch(&path, Some("\"2\""), &json!({ "status": null })).await, 422).await;
    let nowhere = json!({ "project_id": uuid::Uuid::new_v4() });
    problem(app.patch(&path, Some("\"2\""), &nowhere).await, 422).await;
    problem(app.patch(&path, Some("\"1\""), &json!({ "title": "stale" })).await, 412).await;
    assert_eq!(app.delete(&path, Some("\"2\"")).await.status(), 204);
    problem(app.get(&path).await, 404).await;
}
