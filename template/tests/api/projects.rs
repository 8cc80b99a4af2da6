//! `/api/v1/projects`: CRUD, validation, uniqueness, pagination and optimistic concurrency.

use serde_json::{Value, json};

use service::db::DbError;
use service::domain::project::NewProject;

use crate::helpers::{TestApp, all_pages, json, problem};

async fn create(app: &TestApp, name: &str) -> (Value, String) {
    let response = app.post("/api/v1/projects", &json!({ "name": name })).await;
    assert_eq!(response.status(), 201, "create {name}");
    let etag = response.headers()["etag"].to_str().expect("ascii").to_owned();
    (json(response).await, etag)
}

#[tokio::test]
async fn a_created_project_can_be_read_back() {
    let (app, _) = TestApp::signed_in().await;

    let response = app
        .post(
            "/api/v1/projects",
            &json!({ "name": "  Website relaunch ", "description": "Q3" }),
        )
        .await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().expect("ascii").to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created = json(response).await;
    assert_eq!(created["name"], "Website relaunch", "names are trimmed");
    assert_eq!(created["description"], "Q3");
    assert_eq!(created["version"], 1);
    assert_eq!(
        location,
        format!("/api/v1/projects/{}", created["id"].as_str().expect("id"))
    );

    let fetched = app.get(&location).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["etag"], "\"1\"");
    assert_eq!(json(fetched).await, created);
}

#[tokio::test]
async fn names_are_unique_regardless_of_case() {
    let (app, _) = TestApp::signed_in().await;
    create(&app, "Apollo").await;

    let response = app.post("/api/v1/projects", &json!({ "name": "APOLLO" })).await;

    let body = problem(response, 409).await;
    assert_eq!(body["detail"], "a project with this name already exists");
}

#[tokio::test]
async fn invalid_projects_are_refused_field_by_field() {
    let (app, _) = TestApp::signed_in().await;

    let blank = problem(app.post("/api/v1/projects", &json!({ "name": "   " })).await, 422).await;
    assert_eq!(blank["errors"][0]["field"], "name");
    assert_eq!(blank["errors"][0]["code"], "blank");

    let long = json!({ "name": "n".repeat(101), "description": "d".repeat(2001) });
    let long = problem(app.post("/api/v1/projects", &long).await, 422).await;
    let fields: Vec<&str> = long["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["description", "name"]);

    let two_lines = problem(app.post("/api/v1/projects", &json!({ "name": "a\nb" })).await, 422).await;
    assert_eq!(two_lines["errors"][0]["code"], "single_line");

    let missing = problem(app.post("/api/v1/projects", &json!({})).await, 422).await;
    assert!(
        missing["detail"].as_str().is_some_and(|detail| detail.contains("name")),
        "{missing}"
    );

    let listed = json(app.get("/api/v1/projects").await).await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_told_apart() {
    let (app, _) = TestApp::signed_in().await;

    problem(
        app.get(&format!("/api/v1/projects/{}", uuid::Uuid::new_v4())).await,
        404,
    )
    .await;
    problem(app.get("/api/v1/projects/not-a-uuid").await, 400).await;
}

#[tokio::test]
async fn pages_walk_every_project_once_in_order() {
    let (app, _) = TestApp::signed_in().await;
    let names = ["delta", "alpha", "echo", "charlie", "bravo"];
    for name in names {
        create(&app, name).await;
    }

    let names = |items: Vec<Value>| items.into_iter().map(|item| item["name"].clone()).collect::<Vec<_>>();
    let ascending = names(all_pages(&app, "/api/v1/projects?sort=name&limit=2", 2).await);
    let descending = names(all_pages(&app, "/api/v1/projects?sort=-name&limit=2", 2).await);

    assert_eq!(ascending, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(descending, ["echo", "delta", "charlie", "bravo", "alpha"]);
}

#[tokio::test]
async fn the_default_order_is_newest_first_across_pages() {
    let (app, _) = TestApp::signed_in().await;
    for name in ["first", "second", "third"] {
        create(&app, name).await;
    }

    let first = json(app.get("/api/v1/projects?limit=2").await).await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = json(app.get(&format!("/api/v1/projects?limit=2&cursor={cursor}")).await).await;

    let names: Vec<&Value> = [&first, &second]
        .iter()
        .flat_map(|page| page["items"].as_array().expect("items"))
        .map(|item| &item["name"])
        .collect();
    assert_eq!(names, ["third", "second", "first"]);
}

#[tokio::test]
async fn page_sizes_are_clamped_and_sorts_and_cursors_are_checked() {
    let (app, owner) = TestApp::signed_in().await;
    for name in ["one", "two", "three"] {
        create(&app, name).await;
    }

    sqlx::query(
        "INSERT INTO projects (id, owner_id, name) \
         SELECT gen_random_uuid(), $1, 'bulk ' || n FROM generate_series(1, 120) n",
    )
    .bind(owner.id)
    .execute(app.state.db.pool())
    .await
    .expect("bulk insert");

    let smallest = json(app.get("/api/v1/projects?limit=0").await).await;
    assert_eq!(smallest["items"].as_array().expect("items").len(), 1);
    let largest = json(app.get("/api/v1/projects?limit=100000").await).await;
    assert_eq!(largest["items"].as_array().expect("items").len(), 100);
    assert!(largest["next_cursor"].is_string());

    problem(app.get("/api/v1/projects?sort=password").await, 400).await;
    problem(app.get("/api/v1/projects?colour=blue").await, 400).await;
    problem(app.get("/api/v1/projects?cursor=garbage").await, 400).await;

    let page = json(app.get("/api/v1/projects?sort=name&limit=1").await).await;
    let cursor = page["next_cursor"].as_str().expect("more pages");
    let replayed = problem(
        app.get(&format!("/api/v1/projects?sort=-created_at&cursor={cursor}"))
            .await,
        400,
    )
    .await;
    assert!(
        replayed["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("sort=name")),
        "{replayed}"
    );
}

#[tokio::test]
async fn updates_need_the_current_version() {
    let (app, _) = TestApp::signed_in().await;
    let (project, etag) = create(&app, "Gemini").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().expect("id"));

    problem(app.patch(&path, None, &json!({ "name": "Gemini 2" })).await, 428).await;

    let updated = app
        .patch(
            &path,
            Some(&etag),
            &json!({ "name": "Gemini 2", "description": "crewed" }),
        )
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let updated = json(updated).await;
    assert_eq!(
        (updated["name"].as_str(), updated["version"].as_i64()),
        (Some("Gemini 2"), Some(2))
    );

    let stale = problem(
        app.patch(&path, Some(&etag), &json!({ "name": "lost update" })).await,
        412,
    )
    .await;
    assert!(
        stale["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("current version 2")),
        "{stale}"
    );
    assert_eq!(json(app.get(&path).await).await["name"], "Gemini 2");

    let cleared = json(app.patch(&path, Some("*"), &json!({ "description": null })).await).await;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["name"], "Gemini 2", "omitted fields stay");
    let version = cleared["version"].as_i64().expect("version");

    problem(app.patch(&path, Some(&format!("\"{version}\"")), &json!({})).await, 422).await;
    problem(
        app.patch(&path, Some(&format!("\"{version}\"")), &json!({ "name": null }))
            .await,
        422,
    )
    .await;
    problem(app.patch(&path, Some("3"), &json!({ "name": "x" })).await, 400).await;
    // Weak tags never match under strong comparison; a list matches any of its tags.
    problem(
        app.patch(&path, Some(&format!("W/\"{version}\"")), &json!({ "name": "x" }))
            .await,
        412,
    )
    .await;
    let listed = app
        .patch(
            &path,
            Some(&format!("\"1\", \"{version}\"")),
            &json!({ "name": "Gemini 3" }),
        )
        .await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn a_precondition_on_a_missing_project_fails_instead_of_404() {
    let (app, _) = TestApp::signed_in().await;
    let path = format!("/api/v1/projects/{}", uuid::Uuid::new_v4());

    problem(app.patch(&path, Some("*"), &json!({ "name": "ghost" })).await, 412).await;
    problem(app.delete(&path, Some("\"1\"")).await, 412).await;
    problem(app.delete(&path, None).await, 404).await;
}

#[tokio::test]
async fn of_two_concurrent_updates_from_the_same_version_exactly_one_wins() {
    let (app, _) = TestApp::signed_in().await;
    let (project, etag) = create(&app, "Race").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().expect("id"));

    let (left, right) = (json!({ "description": "left" }), json!({ "description": "right" }));
    let (left, right) = tokio::join!(
        app.patch(&path, Some(&etag), &left),
        app.patch(&path, Some(&etag), &right)
    );

    let mut statuses = [left.status().as_u16(), right.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412]);
    assert_eq!(json(app.get(&path).await).await["version"], 2);
}

#[tokio::test]
async fn a_value_postgresql_cannot_store_is_a_client_error_even_past_validation() {
    let (app, owner) = TestApp::signed_in().await;
    let mut conn = app.state.db.acquire().await.expect("connection");
    let new = NewProject {
        owner_id: owner.id,
        name: "Nul".to_owned(),
        description: Some("a\u{0}b".to_owned()),
    };

    let err = service::db::projects::insert(&mut conn, &new)
        .await
        .expect_err("PostgreSQL refuses NUL");

    assert!(matches!(err, DbError::InvalidValue), "{err:?}");
}

#[tokio::test]
async fn text_postgresql_cannot_store_is_refused_as_invalid() {
    let (app, _) = TestApp::signed_in().await;

    let body = problem(
        app.post("/api/v1/projects", &json!({ "name": "Nul", "description": "a\u{0}b" }))
            .await,
        422,
    )
    .await;

    assert_eq!(body["errors"][0]["field"], "description");
    assert_eq!(body["errors"][0]["code"], "nul");
}

#[tokio::test]
async fn renaming_onto_an_existing_name_conflicts() {
    let (app, _) = TestApp::signed_in().await;
    create(&app, "Mercury").await;
    let (venus, etag) = create(&app, "Venus").await;
    let path = format!("/api/v1/projects/{}", venus["id"].as_str().expect("id"));

    problem(app.patch(&path, Some(&etag), &json!({ "name": "mercury" })).await, 409).await;
}

#[tokio::test]
async fn deleting_checks_the_version_when_given_and_removes_the_tasks() {
    let (app, _) = TestApp::signed_in().await;
    let (project, etag) = create(&app, "Skylab").await;
    let id = project["id"].as_str().expect("id");
    let path = format!("/api/v1/projects/{id}");
    let task = json(
        app.post("/api/v1/tasks", &json!({ "project_id": id, "title": "Launch" }))
            .await,
    )
    .await;

    problem(app.delete(&path, Some("\"99\"")).await, 412).await;
    assert_eq!(app.delete(&path, Some(&etag)).await.status(), 204);

    problem(app.get(&path).await, 404).await;
    problem(app.delete(&path, None).await, 404).await;
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("task id"));
    problem(app.get(&task_path).await, 404).await;
}
