//! The middleware every route shares: errors as problem+json, request ids, limits, timeouts,
//! panics, compression, CORS and security headers. Probe routes added here run through the
//! same stack as the real ones.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use service::AppState;
use service::db::DbError;
use service::http::error::ApiError;
use service::http::extract::{Json, Valid};
use validator::Validate;

use crate::helpers::{Gate, TestApp, json, problem, raw_exchange};

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
struct Echo {
    #[validate(length(min = 1, max = 5, message = "must be 1 to 5 characters"))]
    name: String,
    #[validate(range(min = 1, max = 10))]
    count: u32,
}

async fn echo(Valid(body): Valid<Echo>) -> Json<serde_json::Value> {
    Json(json!({ "name": body.name, "count": body.count }))
}

async fn panics() -> &'static str {
    panic!("probe route panicked on purpose")
}

async fn needs_a_connection(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let _conn = state.db.acquire().await?;
    Ok("connected")
}

async fn sleeps_in_the_database(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let mut conn = state.db.acquire().await?;
    sqlx::query("SELECT pg_sleep(2)")
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    Ok("slept")
}

/// Takes a connection, waits at the gate, then queries on that connection.
async fn queries_after_the_gate(state: AppState, gate: Gate) -> Result<&'static str, ApiError> {
    let mut conn = state.db.acquire().await?;
    gate.pass().await;
    sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    Ok("queried")
}

fn probes(gate: &Gate) -> Router<AppState> {
    let gated = gate.clone();
    Router::new()
        .route("/probe/echo", post(echo))
        .route("/probe/hold", gate.route())
        .route(
            "/probe/query-after-gate",
            get(move |State(state): State<AppState>| queries_after_the_gate(state, gated.clone())),
        )
        .route("/probe/panic", get(panics))
        .route("/probe/db", get(needs_a_connection))
        .route("/probe/sleep", get(sleeps_in_the_database))
}

async fn spawn_with(configure: impl FnOnce(&mut service::config::Config)) -> TestApp {
    TestApp::spawn_with(configure, probes(&Gate::new())).await
}

async fn spawn_gated(configure: impl FnOnce(&mut service::config::Config)) -> (TestApp, Gate) {
    let gate = Gate::new();
    (TestApp::spawn_with(configure, probes(&gate)).await, gate)
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_with(|_| {}).await;

    let body = problem(app.get("/no/such/route").await, 404).await;

    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_naming_the_allowed_ones() {
    let app = spawn_with(|_| {}).await;

    let response = app
        .request(Method::DELETE, "/health/live")
        .send()
        .await
        .expect("request");

    let allow = response
        .headers()
        .get("allow")
        .map(|value| value.to_str().expect("ascii").to_owned());
    problem(response, 405).await;
    assert!(allow.is_some_and(|allow| allow.contains("GET")));
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_with(|_| {}).await;

    let response = app
        .request(Method::POST, "/probe/echo")
        .header("content-type", "application/json")
        .body(r#"{"name": "ab""#)
        .send()
        .await
        .expect("request");

    let body = problem(response, 400).await;
    assert!(
        body["detail"].as_str().is_some_and(|detail| !detail.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_is_read_only_as_a_json_object() {
    let app = spawn_with(|_| {}).await;

    // serde would read the struct from its fields in order; the API takes objects only.
    let array = problem(app.post("/probe/echo", &json!(["ab", 1])).await, 422).await;
    assert!(
        array["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("a JSON object")),
        "{array}"
    );
    let unknown = problem(
        app.post("/probe/echo", &json!({"name": "ab", "count": 1, "extra": 1}))
            .await,
        422,
    )
    .await;
    assert!(
        unknown["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("unknown field `extra`")),
        "{unknown}"
    );
    let echoed = app.post("/probe/echo", &json!({"name": "ab", "count": 1})).await;
    assert_eq!(json(echoed).await, json!({"name": "ab", "count": 1}));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_with(|_| {}).await;

    let response = app
        .request(Method::POST, "/probe/echo")
        .header("content-type", "text/plain")
        .body(r#"{"name": "ab", "count": 1}"#)
        .send()
        .await
        .expect("request");

    problem(response, 415).await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_problem_with_one_entry_per_field() {
    let app = spawn_with(|_| {}).await;

    let response = app
        .post("/probe/echo", &json!({ "name": "much too long", "count": 99 }))
        .await;

    let body = problem(response, 422).await;
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["field"], "count");
    assert_eq!(errors[0]["code"], "range");
    assert_eq!(errors[1]["field"], "name");
    assert_eq!(errors[1]["message"], "must be 1 to 5 characters");
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422_problems() {
    let app = spawn_with(|_| {}).await;

    let wrong_type = app
        .post("/probe/echo", &json!({ "name": "ab", "count": "three" }))
        .await;
    let unknown = app
        .post("/probe/echo", &json!({ "name": "ab", "count": 1, "admin": true }))
        .await;

    let wrong_type = problem(wrong_type, 422).await;
    assert!(
        wrong_type["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("count")),
        "{wrong_type}"
    );
    let unknown = problem(unknown, 422).await;
    assert!(
        unknown["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("admin")),
        "{unknown}"
    );
}

#[tokio::test]
async fn a_valid_body_reaches_the_handler() {
    let app = spawn_with(|_| {}).await;

    let response = app.post("/probe/echo", &json!({ "name": "ab", "count": 2 })).await;

    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await, json!({ "name": "ab", "count": 2 }));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem_with_or_without_content_length() {
    let app = spawn_with(|config| config.server.body_limit_bytes = 64).await;
    let big = json!({ "name": "x".repeat(100), "count": 1 }).to_string();

    let declared = app
        .request(Method::POST, "/probe/echo")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("request");
    problem(declared, 413).await;

    let chunk = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let chunked = raw_exchange(
        app.address,
        format!(
            "POST /probe/echo HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunk}"
        )
        .as_bytes(),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("application/problem+json"), "{chunked}");
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_minted_otherwise() {
    let app = spawn_with(|_| {}).await;

    let given = app
        .request(Method::GET, "/health/live")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(given.headers()["x-request-id"], "abc-123");

    let minted = app.get("/health/live").await;
    let id = minted.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let hostile = "x".repeat(300);
    let replaced = app
        .request(Method::GET, "/health/live")
        .header("x-request-id", &hostile)
        .send()
        .await
        .expect("request");
    let id = replaced.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_ne!(id, hostile);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_keeps_serving() {
    let app = spawn_with(|_| {}).await;

    let body = problem(app.get("/probe/panic").await, 500).await;

    assert!(
        !body.to_string().contains("on purpose"),
        "panic messages stay in the log: {body}"
    );
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn a_handler_over_the_request_timeout_is_a_503_problem_and_only_safe_methods_may_retry() {
    let app = spawn_with(|config| config.server.request_timeout_secs = 1).await;

    let read = app.get("/probe/hold").await;
    let write = app.request(Method::POST, "/probe/hold").send().await.expect("request");

    assert_eq!(read.headers()["retry-after"], "1");
    problem(read, 503).await;
    assert!(
        write.headers().get("retry-after").is_none(),
        "a timed-out write may have been applied"
    );
    let body = problem(write, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("may or may not")),
        "{body}"
    );
}

#[tokio::test]
async fn api_requests_beyond_the_concurrency_limit_are_shed_while_probes_still_answer() {
    let (app, gate) = spawn_gated(|config| config.server.max_concurrent_requests = 1).await;
    let busy = tokio::spawn(app.request(Method::GET, "/probe/hold").send());
    gate.entered().await;

    let shed = app.get("/probe/db").await;
    let live = app.get("/health/live").await;
    let ready = app.get("/health/ready").await;

    assert_eq!(shed.headers()["retry-after"], "1");
    problem(shed, 503).await;
    assert_eq!(live.status(), 200, "liveness must not be shed");
    assert_eq!(ready.status(), 200, "readiness must not be shed");
    gate.open();
    let busy = busy.await.expect("task").expect("request");
    assert_eq!(busy.status(), 200, "the request holding the slot completes");
}

#[tokio::test]
async fn a_statement_over_the_statement_timeout_is_a_503_problem() {
    let app = spawn_with(|config| config.database.statement_timeout_ms = 100).await;

    let response = app.get("/probe/sleep").await;

    let body = problem(response, 503).await;
    assert_eq!(body["detail"], "the database did not answer in time");
}

#[tokio::test]
async fn a_connection_lost_mid_request_is_a_503_problem_with_retry_after() {
    let (app, gate) = spawn_gated(|_| {}).await;
    let request = tokio::spawn(app.request(Method::GET, "/probe/query-after-gate").send());
    gate.entered().await;

    // What a restart or a failover does to the connections open at the time.
    let name = app.database.name().to_owned();
    app.database
        .admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
    gate.open();

    let response = request.await.expect("task").expect("request");
    assert_eq!(response.headers()["retry-after"], "1");
    problem(response, 503).await;
    assert_eq!(
        app.get("/probe/db").await.status(),
        200,
        "a new connection serves again"
    );
}

#[tokio::test]
async fn an_exhausted_pool_is_a_503_problem_with_retry_after() {
    let app = spawn_with(|config| {
        config.database.max_connections = 1;
        config.database.acquire_timeout_ms = 200;
    })
    .await;
    let held = app.state.db.acquire().await.expect("the only connection");

    let response = app.get("/probe/db").await;

    assert_eq!(response.headers()["retry-after"], "1");
    problem(response, 503).await;
    drop(held);
    assert_eq!(app.get("/probe/db").await.status(), 200);
}

#[tokio::test]
async fn responses_carry_security_headers_and_large_ones_are_compressed_when_asked() {
    let app = spawn_with(|_| {}).await;

    let small = app.get("/health/live").await;
    let large = app
        .request(Method::GET, "/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");

    let headers = small.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(large.headers()["content-encoding"], "gzip");
    let unasked = app.get("/openapi.json").await;
    assert!(
        unasked.headers().get("content-encoding").is_none(),
        "compressed only when asked"
    );
}

#[tokio::test]
async fn hsts_goes_only_to_clients_a_trusted_proxy_saw_over_https() {
    let behind_proxy = spawn_with(|config| config.rate_limit.trusted_proxies = "127.0.0.1".to_owned()).await;
    let exposed = spawn_with(|_| {}).await;
    let hsts = |app: &TestApp, proto: &'static str| {
        let request = app
            .request(Method::GET, "/health/live")
            .header("x-forwarded-proto", proto)
            .send();
        async move {
            let response = request.await.expect("request");
            response.headers().get("strict-transport-security").cloned()
        }
    };

    assert_eq!(
        hsts(&behind_proxy, "https").await.expect("HSTS over HTTPS"),
        "max-age=63072000; includeSubDomains"
    );
    assert_eq!(hsts(&behind_proxy, "http").await, None);
    assert_eq!(hsts(&exposed, "https").await, None, "an untrusted peer's word");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_with(|config| config.server.cors_allowed_origins = "https://app.example.com".to_owned()).await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/health/live")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };

    let allowed = preflight("https://app.example.com").await.expect("request");
    let refused = preflight("https://evil.example.com").await.expect("request");

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let simple = app
        .request(Method::GET, "/probe/panic")
        .header("origin", "https://app.example.com")
        .send()
        .await;
    let simple = simple.expect("request");
    assert_eq!(simple.status(), 500);
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example.com",
        "even on a panic"
    );
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("x-request-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn cors_allows_every_method_the_api_documents() {
    let app = spawn_with(|config| config.server.cors_allowed_origins = "https://app.example.com".to_owned()).await;
    let document = json(app.get("/openapi.json").await).await;
    let mut methods: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|operations| operations.as_object().expect("operations").keys())
        .map(|method| method.to_uppercase())
        .collect();
    methods.sort();
    methods.dedup();
    assert!(!methods.is_empty(), "no operations in the document");

    for method in methods {
        let preflight = app
            .request(Method::OPTIONS, "/health/live")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", &method)
            .send()
            .await
            .expect("request");
        let allowed = preflight.headers()["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            allowed.split(',').any(|allowed| allowed.trim() == method),
            "{method} is not in {allowed}"
        );
    }
}
