//! Object-level authorization on the example resource: an account reaches only its own
//! projects and their tasks, whatever it tries; administrators reach everyone's; and the
//! queries enforce it themselves, not only the handlers.

use reqwest::Method;
use serde_json::{Value, json};
use service::db;
use service::domain::scope::Scope;
use uuid::Uuid;

use crate::callers::TestUser;
use crate::helpers::{TestApp, json, problem};

async fn create(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = app.post(path, body).await;
    assert_eq!(response.status(), 201, "create at {path}");
    json(response).await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("id")
}

/// Alice's project with one task, and Bob signed in.
async fn alice_and_bob() -> (TestApp, TestUser, Value, Value) {
    let (mut app, alice) = TestApp::signed_in().await;
    let project = create(&app, "/api/v1/projects", &json!({ "name": "Apollo" })).await;
    let task = create(
        &app,
        "/api/v1/tasks",
        &json!({ "project_id": id(&project), "title": "Launch" }),
    )
    .await;
    assert_eq!(project["owner_id"], alice.id.to_string());
    let bob = app.user("bob@example.com", "user").await;
    app.act_as(&bob);
    (app, alice, project, task)
}

#[tokio::test]
async fn the_resource_needs_an_access_token() {
    let app = TestApp::spawn().await;

    for (method, path) in [(Method::GET, "/api/v1/projects"), (Method::GET, "/api/v1/tasks")] {
        let response = app.request(method, path).send().await.expect("request");
        assert_eq!(response.status(), 401, "{path}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn another_account_can_neither_see_nor_change_a_project() {
    let (app, _, project, _) = alice_and_bob().await;
    let path = format!("/api/v1/projects/{}", id(&project));

    problem(app.get(&path).await, 404).await;
    let listed = json(app.get("/api/v1/projects").await).await;
    assert_eq!(listed["items"], json!([]));
    problem(app.patch(&path, Some("*"), &json!({ "name": "Mine now" })).await, 412).await;
    problem(app.delete(&path, None).await, 404).await;
    // The same name is free for Bob: names are unique per owner.
    create(&app, "/api/v1/projects", &json!({ "name": "Apollo" })).await;

    let mut conn = app.state.db.acquire().await.expect("connection");
    let untouched = db::projects::find(
        &mut conn,
        Scope::Any,
        project["id"].as_str().expect("id").parse().expect("uuid"),
    )
    .await
    .expect("query")
    .expect("still there");
    assert_eq!((untouched.name.as_str(), untouched.version), ("Apollo", 1));
}

#[tokio::test]
async fn another_account_can_neither_see_nor_change_a_task() {
    let (app, _, project, task) = alice_and_bob().await;
    let path = format!("/api/v1/tasks/{}", id(&task));

    problem(app.get(&path).await, 404).await;
    let listed = json(app.get(&format!("/api/v1/tasks?project_id={}", id(&project))).await).await;
    assert_eq!(listed["items"], json!([]));
    problem(app.patch(&path, Some("*"), &json!({ "title": "Scrubbed" })).await, 412).await;
    problem(app.delete(&path, None).await, 404).await;

    // Nor add tasks to the project, nor move a task of their own into it.
    let refused = problem(
        app.post(
            "/api/v1/tasks",
            &json!({ "project_id": id(&project), "title": "Sneak" }),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(refused["detail"], "project_id refers to a project that does not exist");
    let own = create(&app, "/api/v1/projects", &json!({ "name": "Gemini" })).await;
    let own_task = create(
        &app,
        "/api/v1/tasks",
        &json!({ "project_id": id(&own), "title": "Mine" }),
    )
    .await;
    let own_path = format!("/api/v1/tasks/{}", id(&own_task));
    problem(
        app.patch(&own_path, Some("\"1\""), &json!({ "project_id": id(&project) }))
            .await,
        422,
    )
    .await;
    assert_eq!(json(app.get(&own_path).await).await["project_id"], id(&own));

    let mut conn = app.state.db.acquire().await.expect("connection");
    let alices: Uuid = id(&project).parse().expect("uuid");
    let tasks: Vec<String> = sqlx::query_scalar("SELECT title FROM tasks WHERE project_id = $1")
        .bind(alices)
        .fetch_all(&mut *conn)
        .await
        .expect("query");
    assert_eq!(tasks, ["Launch"]);
}

#[tokio::test]
async fn the_queries_filter_by_owner_without_the_handlers() {
    let (app, alice, project, task) = alice_and_bob().await;
    let stranger = Scope::OwnedBy(Uuid::now_v7());
    let project_id: Uuid = id(&project).parse().expect("uuid");
    let task_id: Uuid = id(&task).parse().expect("uuid");
    let mut conn = app.state.db.acquire().await.expect("connection");

    assert!(
        db::projects::find(&mut conn, stranger, project_id)
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        db::tasks::find(&mut conn, stranger, task_id)
            .await
            .expect("query")
            .is_none()
    );
    let owner = Scope::OwnedBy(alice.id);
    assert!(
        db::projects::find(&mut conn, owner, project_id)
            .await
            .expect("query")
            .is_some()
    );
    assert!(
        db::tasks::find(&mut conn, owner, task_id)
            .await
            .expect("query")
            .is_some()
    );
}

#[tokio::test]
async fn administrators_reach_every_account_s_records() {
    let (mut app, alice, project, task) = alice_and_bob().await;
    create(&app, "/api/v1/projects", &json!({ "name": "Bob's" })).await;
    let admin = app.user("admin@example.com", "admin").await;
    app.act_as(&admin);

    let listed = json(app.get("/api/v1/projects?sort=name").await).await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert_eq!(names, ["Apollo", "Bob's"]);
    let path = format!("/api/v1/projects/{}", id(&project));
    let renamed = app.patch(&path, Some("\"1\""), &json!({ "name": "Artemis" })).await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(json(renamed).await["owner_id"], alice.id.to_string(), "the owner stays");
    let task_path = format!("/api/v1/tasks/{}", id(&task));
    assert_eq!(app.get(&task_path).await.status(), 200);
    assert_eq!(app.delete(&task_path, None).await.status(), 204);
}
