//! GraphQL at `/graphql`: the same callers, scopes, rules and versions as the REST API, told
//! apart by `extensions.code`; task lists batched across projects; the limits refusing a query
//! before it runs; GraphiQL from the binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use uuid::Uuid;

use crate::callers::TestUser;
use crate::helpers::{TestApp, json, metric, problem};

/// Sends `query` with `variables` and returns the response body.
async fn graphql(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app
        .post("/graphql", &json!({ "query": query, "variables": variables }))
        .await;
    assert_eq!(response.status(), 200, "a GraphQL response");
    json(response).await
}

/// The `extensions.code` of each error, in order.
fn codes(response: &Value) -> Vec<&str> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| error["extensions"]["code"].as_str().unwrap_or("none"))
                .collect()
        })
        .unwrap_or_default()
}

/// The one error of a response, asserting its code.
fn error<'a>(response: &'a Value, code: &str) -> &'a Value {
    assert_eq!(codes(response), [code], "{response}");
    &response["errors"][0]
}

const PROJECT: &str = "query($id: UUID!) { project(id: $id) { id name version } }";
const PROJECTS: &str = "query { projects { edges { node { id } } } }";
const TASK: &str = "query($id: UUID!) { task(id: $id) { id title } }";
const TASKS: &str = "query { tasks { edges { node { id } } } }";
const CREATE_PROJECT: &str =
    "mutation($input: CreateProjectInput!) { createProject(input: $input) { id name version } }";
const UPDATE_PROJECT: &str = "mutation($id: UUID!, $version: Int!, $input: UpdateProjectInput!) { \
                              updateProject(id: $id, version: $version, input: $input) { id name version } }";
const DELETE_PROJECT: &str = "mutation($id: UUID!, $version: Int) { deleteProject(id: $id, version: $version) }";
const CREATE_TASK: &str =
    "mutation($input: CreateTaskInput!) { createTask(input: $input) { id title status version } }";
const UPDATE_TASK: &str = "mutation($id: UUID!, $version: Int!, $input: UpdateTaskInput!) { \
                           updateTask(id: $id, version: $version, input: $input) { id title status version } }";
const DELETE_TASK: &str = "mutation($id: UUID!, $version: Int) { deleteTask(id: $id, version: $version) }";

async fn create_project(app: &TestApp, name: &str) -> Value {
    let response = graphql(app, CREATE_PROJECT, json!({ "input": { "name": name } })).await;
    assert!(response["errors"].is_null(), "{response}");
    response["data"]["createProject"].clone()
}

async fn create_task(app: &TestApp, project: &Value, title: &str) -> Value {
    let input = json!({ "input": { "projectId": project["id"], "title": title } });
    let response = graphql(app, CREATE_TASK, input).await;
    assert!(response["errors"].is_null(), "{response}");
    response["data"]["createTask"].clone()
}

/// Alice's project with one task, and Bob signed in.
async fn alice_and_bob() -> (TestApp, TestUser, Value, Value) {
    let (mut app, alice) = TestApp::signed_in().await;
    let project = create_project(&app, "Apollo").await;
    let task = create_task(&app, &project, "Launch").await;
    let bob = app.user("bob@example.com", "user").await;
    app.act_as(&bob);
    (app, alice, project, task)
}

#[tokio::test]
async fn every_operation_refuses_an_anonymous_caller() {
    let app = TestApp::spawn().await;
    let id = Uuid::now_v7();
    let operations = [
        (PROJECT, json!({ "id": id })),
        (PROJECTS, json!({})),
        (TASK, json!({ "id": id })),
        (TASKS, json!({})),
        (CREATE_PROJECT, json!({ "input": { "name": "Apollo" } })),
        (
            UPDATE_PROJECT,
            json!({ "id": id, "version": 1, "input": { "name": "Artemis" } }),
        ),
        (DELETE_PROJECT, json!({ "id": id })),
        (CREATE_TASK, json!({ "input": { "projectId": id, "title": "Launch" } })),
        (
            UPDATE_TASK,
            json!({ "id": id, "version": 1, "input": { "title": "Land" } }),
        ),
        (DELETE_TASK, json!({ "id": id })),
    ];
    for (query, variables) in operations {
        let response = graphql(&app, query, variables).await;
        let error = error(&response, "UNAUTHENTICATED");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("access token")),
            "{query}"
        );
    }

    let mut app = app;
    app.act_as(&TestUser {
        id,
        token: "not-a-token".to_owned(),
    });
    let response = graphql(&app, PROJECTS, json!({})).await;
    error(&response, "UNAUTHENTICATED");
}

#[tokio::test]
async fn another_account_s_records_answer_exactly_like_missing_ones() {
    let (app, _, project, task) = alice_and_bob().await;
    let missing = Uuid::now_v7();

    for (query, id) in [(PROJECT, &project["id"]), (TASK, &task["id"])] {
        let theirs = graphql(&app, query, json!({ "id": id })).await;
        let absent = graphql(&app, query, json!({ "id": missing })).await;
        assert_eq!(theirs["data"], absent["data"], "{query}");
        assert_eq!(
            error(&theirs, "NOT_FOUND")["message"],
            error(&absent, "NOT_FOUND")["message"]
        );
    }
    for (query, ids) in [
        (UPDATE_PROJECT, [&project["id"], &json!(missing)]),
        (UPDATE_TASK, [&task["id"], &json!(missing)]),
    ] {
        let input = if query == UPDATE_PROJECT {
            json!({ "name": "Mine now" })
        } else {
            json!({ "title": "Mine now" })
        };
        let [theirs, absent] = ids.map(|id| json!({ "id": id, "version": 1, "input": input }));
        let theirs = graphql(&app, query, theirs).await;
        let absent = graphql(&app, query, absent).await;
        assert_eq!(
            error(&theirs, "NOT_FOUND")["message"],
            error(&absent, "NOT_FOUND")["message"]
        );
    }
    for (query, id) in [(DELETE_TASK, &task["id"]), (DELETE_PROJECT, &project["id"])] {
        let response = graphql(&app, query, json!({ "id": id })).await;
        error(&response, "NOT_FOUND");
    }
    let lists = graphql(
        &app,
        "{ projects { edges { node { id } } } tasks { edges { node { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(lists["data"]["projects"]["edges"], json!([]));
    assert_eq!(lists["data"]["tasks"]["edges"], json!([]));
    let theirs = graphql(
        &app,
        CREATE_TASK,
        json!({ "input": { "projectId": project["id"], "title": "Mine" } }),
    )
    .await;
    let absent = graphql(
        &app,
        CREATE_TASK,
        json!({ "input": { "projectId": missing, "title": "Mine" } }),
    )
    .await;
    assert_eq!(
        error(&theirs, "BAD_USER_INPUT")["message"],
        error(&absent, "BAD_USER_INPUT")["message"]
    );
}

#[tokio::test]
async fn only_an_account_with_resources_any_reaches_another_account_s_records() {
    let (mut app, alice, project, task) = alice_and_bob().await;
    let admin = app.user("admin@example.com", "admin").await;
    app.act_as(&admin);

    let read = graphql(
        &app,
        "query($id: UUID!) { project(id: $id) { ownerId } }",
        json!({ "id": project["id"] }),
    )
    .await;
    assert_eq!(read["data"]["project"]["ownerId"], alice.id.to_string());
    let renamed = graphql(
        &app,
        UPDATE_PROJECT,
        json!({ "id": project["id"], "version": 1, "input": { "name": "Artemis" } }),
    )
    .await;
    assert_eq!(renamed["data"]["updateProject"]["name"], "Artemis", "{renamed}");
    let deleted = graphql(&app, DELETE_TASK, json!({ "id": task["id"] })).await;
    assert_eq!(deleted["data"]["deleteTask"], task["id"]);
}

#[tokio::test]
async fn bad_input_is_refused_by_the_rest_api_s_rules_with_each_field_named() {
    let (app, _) = TestApp::signed_in().await;

    let response = graphql(
        &app,
        CREATE_PROJECT,
        json!({ "input": { "name": "", "description": "a\u{0}b" } }),
    )
    .await;
    let fields = &error(&response, "BAD_USER_INPUT")["extensions"]["fields"];
    let named: Vec<(&str, &str)> = fields
        .as_array()
        .expect("fields")
        .iter()
        .map(|field| {
            (
                field["field"].as_str().unwrap_or(""),
                field["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let expected = [
        ("input.description", "nul"),
        ("input.name", "blank"),
        ("input.name", "length"),
    ];
    assert_eq!(named, expected, "{response}");

    let project = create_project(&app, "Apollo").await;
    let empty = json!({ "id": project["id"], "version": 1, "input": {} });
    error(&graphql(&app, UPDATE_PROJECT, empty).await, "BAD_USER_INPUT");
    let multiline = json!({ "input": { "projectId": project["id"], "title": "two\nlines" } });
    let response = graphql(&app, CREATE_TASK, multiline).await;
    assert_eq!(
        error(&response, "BAD_USER_INPUT")["extensions"]["fields"][0]["field"],
        "input.title"
    );
    let cursor = graphql(
        &app,
        "{ projects(after: \"not-a-cursor\") { edges { cursor } } }",
        json!({}),
    )
    .await;
    error(&cursor, "BAD_USER_INPUT");
    let duplicate = graphql(&app, CREATE_PROJECT, json!({ "input": { "name": "APOLLO" } })).await;
    error(&duplicate, "CONFLICT");
    let mistyped = graphql(&app, CREATE_PROJECT, json!({ "input": { "name": 7 } })).await;
    assert!(
        mistyped["data"].is_null() && mistyped["errors"].is_array(),
        "{mistyped}"
    );
}

#[tokio::test]
async fn a_stale_version_is_refused_with_the_current_one_and_changes_nothing() {
    let (app, _) = TestApp::signed_in().await;
    let project = create_project(&app, "Apollo").await;
    let task = create_task(&app, &project, "Launch").await;
    let rename =
        |version: i32, name: &str| json!({ "id": project["id"], "version": version, "input": { "name": name } });

    let renamed = graphql(&app, UPDATE_PROJECT, rename(1, "Artemis")).await;
    assert_eq!(renamed["data"]["updateProject"]["version"], 2);
    let stale = graphql(&app, UPDATE_PROJECT, rename(1, "Gemini")).await;
    assert_eq!(error(&stale, "PRECONDITION_FAILED")["extensions"]["currentVersion"], 2);
    let stale_task = json!({ "id": task["id"], "version": 7, "input": { "status": "DONE" } });
    let stale_task = graphql(&app, UPDATE_TASK, stale_task).await;
    assert_eq!(
        error(&stale_task, "PRECONDITION_FAILED")["extensions"]["currentVersion"],
        1
    );
    let stale_delete = graphql(&app, DELETE_PROJECT, json!({ "id": project["id"], "version": 1 })).await;
    error(&stale_delete, "PRECONDITION_FAILED");

    let read = graphql(&app, PROJECT, json!({ "id": project["id"] })).await;
    assert_eq!(read["data"]["project"]["name"], "Artemis");
    let rest = app
        .get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap_or("")))
        .await;
    assert_eq!(json(rest).await["status"], "todo");
    let deleted = graphql(&app, DELETE_PROJECT, json!({ "id": project["id"], "version": 2 })).await;
    assert_eq!(deleted["data"]["deleteProject"], project["id"]);
}

#[tokio::test]
async fn what_graphql_writes_the_rest_api_reads_and_the_reverse() {
    let (app, _) = TestApp::signed_in().await;
    let project = create_project(&app, "Apollo").await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().unwrap_or(""));

    let rest = app.get(&path).await;
    assert_eq!(rest.headers()["etag"], "\"1\"");
    assert_eq!(json(rest).await["name"], "Apollo");
    let patched = app
        .patch(&path, Some("\"1\""), &json!({ "description": "To the moon" }))
        .await;
    assert_eq!(patched.status(), 200);
    let read = graphql(
        &app,
        "query($id: UUID!) { project(id: $id) { description version } }",
        json!({ "id": project["id"] }),
    )
    .await;
    assert_eq!(
        read["data"]["project"],
        json!({ "description": "To the moon", "version": 2 })
    );
    let cleared = json!({ "id": project["id"], "version": 2, "input": { "description": null } });
    let cleared = graphql(&app, UPDATE_PROJECT, cleared).await;
    assert!(cleared["errors"].is_null(), "{cleared}");
    assert!(json(app.get(&path).await).await["description"].is_null());
    graphql(&app, DELETE_PROJECT, json!({ "id": project["id"] })).await;
    problem(app.get(&path).await, 404).await;
}

#[tokio::test]
async fn pages_follow_the_rest_api_s_keyset_cursors() {
    let (app, _) = TestApp::signed_in().await;
    for name in ["Gemini", "Apollo", "Mercury"] {
        create_project(&app, name).await;
    }
    let query = "query($after: String) { projects(first: 2, after: $after, orderBy: NAME) { \
                 edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }";

    let first = graphql(&app, query, json!({})).await;
    let page = &first["data"]["projects"];
    let names: Vec<&Value> = page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| &edge["node"]["name"])
        .collect();
    assert_eq!(names, [&json!("Apollo"), &json!("Gemini")]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["pageInfo"]["endCursor"], page["edges"][1]["cursor"]);
    let rest = json(app.get("/api/v1/projects?sort=name&limit=2").await).await;
    assert_eq!(
        rest["next_cursor"], page["pageInfo"]["endCursor"],
        "the same cursor as REST"
    );

    let second = graphql(&app, query, json!({ "after": page["pageInfo"]["endCursor"] })).await;
    let page = &second["data"]["projects"];
    assert_eq!(page["edges"][0]["node"]["name"], "Mercury");
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    let other_order = "query($after: String) { projects(after: $after) { edges { cursor } } }";
    let mixed = graphql(
        &app,
        other_order,
        json!({ "after": first["data"]["projects"]["pageInfo"]["endCursor"] }),
    )
    .await;
    error(&mixed, "BAD_USER_INPUT");
}

/// Counts the SQL statements sqlx runs on this thread (where the test's server runs too) that
/// read tasks; background work such as a job worker's polling reads other tables.
#[derive(Clone, Default)]
struct TaskStatements(Arc<AtomicUsize>);

impl<S: Subscriber> Layer<S> for TaskStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct ReadsTasks(bool);
        impl tracing::field::Visit for ReadsTasks {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "db.statement" {
                    self.0 |= format!("{value:?}").contains("FROM tasks");
                }
            }
        }
        if event.metadata().target() == "sqlx::query" {
            let mut reads = ReadsTasks(false);
            event.record(&mut reads);
            if reads.0 {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl TaskStatements {
    /// The statements `request` causes.
    async fn during<T>(&self, request: impl Future<Output = T>) -> (usize, T) {
        // A test on another thread can register sqlx's callsites while this test's subscriber is
        // being set, and cache them as unwanted; recomputing the cache makes them count again.
        tracing::callsite::rebuild_interest_cache();
        let before = self.0.load(Ordering::Relaxed);
        let output = request.await;
        (self.0.load(Ordering::Relaxed) - before, output)
    }
}

#[tokio::test]
async fn the_tasks_of_a_page_of_twenty_projects_are_read_in_one_statement() {
    let statements = TaskStatements::default();
    let _counting = tracing::subscriber::set_default(tracing_subscriber::registry().with(statements.clone()));
    let (app, _) = TestApp::signed_in().await;
    let query = "{ projects(first: 20) { edges { node { name tasks(first: 5) { edges { node { title } } \
                 pageInfo { hasNextPage } } } } } }";
    let project = create_project(&app, "Project 0").await;
    for n in 0..6 {
        create_task(&app, &project, &format!("Task {n}")).await;
    }

    let (one, response) = statements.during(graphql(&app, query, json!({}))).await;
    let tasks = &response["data"]["projects"]["edges"][0]["node"]["tasks"];
    assert_eq!(tasks["edges"].as_array().map(Vec::len), Some(5), "{response}");
    assert_eq!(tasks["pageInfo"]["hasNextPage"], true);
    for n in 1..20 {
        let project = create_project(&app, &format!("Project {n}")).await;
        create_task(&app, &project, "Only task").await;
    }
    let (twenty, response) = statements.during(graphql(&app, query, json!({}))).await;

    let edges = response["data"]["projects"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 20);
    assert!(
        edges
            .iter()
            .all(|edge| !edge["node"]["tasks"]["edges"].as_array().is_none_or(Vec::is_empty))
    );
    assert_eq!(one, 1, "the tasks of one project in one statement");
    assert_eq!(twenty, 1, "the tasks of twenty projects in one statement");
}

#[tokio::test]
async fn queries_over_the_depth_complexity_or_alias_limits_are_refused_before_they_run() {
    let app = TestApp::spawn_with(|config| config.graphql.max_depth = 5, axum::Router::new()).await;
    // Anonymous: a query that ran would fail with UNAUTHENTICATED; a refused one never starts.
    let deep = "{ projects { edges { node { tasks { edges { node { id } } } } } } }";
    let costly = "{ projects(first: 100) { edges { node { tasks(first: 100) { edges { node { id } } } } } } }";
    let aliases: Vec<String> = (0..31)
        .map(|n| format!("p{n}: ") + "projects { pageInfo { hasNextPage } }")
        .collect();

    let response = graphql(&app, deep, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too deep")),
        "{response}"
    );
    assert!(response["data"].is_null());
    let app = TestApp::spawn().await;
    let response = graphql(&app, costly, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex")),
        "{response}"
    );
    let response = graphql(&app, &("{ ".to_owned() + &aliases.join(" ") + " }"), json!({})).await;
    error(&response, "ALIAS_LIMIT");
    let within = graphql(&app, "{ a: projects { pageInfo { hasNextPage } } }", json!({})).await;
    error(&within, "UNAUTHENTICATED");
}

#[tokio::test]
async fn batches_and_bodies_over_their_limits_are_refused() {
    let (app, _) = TestApp::signed_in().await;
    let one = json!({ "query": "{ projects { edges { cursor } } }" });

    let batch = app.post("/graphql", &json!(vec![one.clone(); 2])).await;
    let answers = json(batch).await;
    assert_eq!(answers.as_array().map(Vec::len), Some(2), "{answers}");
    problem(app.post("/graphql", &json!(vec![one; 11])).await, 400).await;
    let large = json!({ "query": "{ projects { edges { cursor } } } #".to_owned() + &"x".repeat(70_000) });
    problem(app.post("/graphql", &large).await, 413).await;
}

#[tokio::test]
async fn get_runs_queries_but_not_mutations_even_ones_parsed_before() {
    let (app, _) = TestApp::signed_in().await;
    create_project(&app, "Apollo").await;
    let delete = "mutation { deleteProject(id: \"00000000-0000-0000-0000-000000000000\") }";
    // The same text over POST first, so that its parsed document is kept.
    let posted = graphql(&app, delete, json!({})).await;
    error(&posted, "NOT_FOUND");

    let query = app
        .request(Method::GET, "/graphql")
        .query(&[("query", "{ projects { edges { node { name } } } }")])
        .send()
        .await
        .expect("request");
    assert_eq!(
        json(query).await["data"]["projects"]["edges"][0]["node"]["name"],
        "Apollo"
    );
    let mutation = app
        .request(Method::GET, "/graphql")
        .query(&[("query", delete)])
        .send()
        .await
        .expect("request");
    error(&json(mutation).await, "BAD_REQUEST");
}

#[tokio::test]
async fn graphiql_is_served_from_the_binary_under_its_own_policy() {
    let app = TestApp::spawn().await;

    let page = app
        .request(Method::GET, "/graphql")
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-eval"),
        "{policy}"
    );
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    let assets: Vec<&str> = html
        .split("\"/graphql/assets/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(assets.len(), 5, "{html}");
    for asset in assets {
        let response = app.get(&format!("/graphql/assets/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        let kind = response.headers()["content-type"].to_str().expect("text").to_owned();
        let expected = if asset == "graphiql.min.css" {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(kind.starts_with(expected), "{asset}: {kind}");
        assert!(response.bytes().await.expect("body").len() > 100, "{asset}");
    }
    assert_eq!(app.get("/graphql/assets/secret.toml").await.status(), 404);
}

#[tokio::test]
async fn without_introspection_the_schema_and_graphiql_stay_hidden() {
    let (open, _) = TestApp::signed_in().await;
    let introspection = "{ __schema { types { name } } }";
    let shown = graphql(&open, introspection, json!({})).await;
    assert!(
        shown["data"]["__schema"]["types"].is_array(),
        "development shows the schema"
    );

    let mut app = TestApp::spawn_with(|config| config.graphql.introspection = false, axum::Router::new()).await;
    let user = app.user("owner@example.com", "user").await;
    app.act_as(&user);
    let closed = graphql(&app, introspection, json!({})).await;
    assert!(closed["data"]["__schema"].is_null(), "{closed}");
    assert!(
        graphql(&app, PROJECTS, json!({})).await["errors"].is_null(),
        "queries still run"
    );
    problem(app.request(Method::GET, "/graphql").send().await.expect("page"), 400).await;
    problem(app.get("/graphql/assets/graphiql.min.js").await, 404).await;
}

#[tokio::test]
async fn operations_are_counted_by_name_and_outcome() {
    let (app, _) = TestApp::signed_in().await;

    graphql(&app, "query ListProjects { projects { edges { cursor } } }", json!({})).await;
    graphql(
        &app,
        "query Missing { project(id: \"00000000-0000-0000-0000-000000000000\") { id } }",
        json!({}),
    )
    .await;

    assert_eq!(
        metric(
            &app,
            "graphql_operations_total{operation=\"ListProjects\",outcome=\"ok\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            &app,
            "graphql_operations_total{operation=\"Missing\",outcome=\"error\"}"
        )
        .await,
        1
    );
}
