//! Webhooks end to end: endpoints registered through the API, deliveries sent by a worker to a
//! real HTTP receiver on this machine, signed, retried, recorded, neither following a redirect
//! nor reading an answer past its cap, held back by an open circuit, refused towards internal
//! addresses at registration and at connection time, traced from the request through the job
//! to the call, delivered again by another worker process when the one delivering is killed,
//! and their records pruned when old.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use service::config::Config;
use service::jobs::{Job as _, JobsConfig, Registry, Worker};
use service::webhooks::{Deliver, PruneDeliveries, WebhooksConfig, signature};
use tokio::io::AsyncWriteExt;

use crate::callers::TestUser;
use crate::helpers::{TestApp, eventually, http_client, json, problem};
use crate::process::{free_port, running, terminate, wait_until_live};
use crate::traces::{Collector, PARENT, TRACE, traceparent};

/// What the receiver got: one request's headers and body.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver on a free port: records every request as it arrives, and answers each
/// with the next scripted status after the scripted delay, then 204 once the script is used up.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<(u16, u64)>>>,
}

impl Receiver {
    async fn start(script: &[(u16, u64)]) -> (Self, SocketAddr) {
        let receiver = Self {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ..Self::default()
        };
        let app = Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (receiver, address)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (status, delay_ms) = receiver.script.lock().expect("lock").pop_front().unwrap_or((204, 0));
    receiver.received.lock().expect("lock").push(Received {
        headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8"),
    });
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    StatusCode::from_u16(status).expect("status")
}

/// Quick retries and a short delivery timeout; private destinations allowed unless the test
/// says otherwise, since the receiver runs on loopback.
fn quick(config: &mut Config) {
    config.jobs = JobsConfig {
        poll_interval_ms: 100,
        retry_base_ms: 20,
        retry_max_secs: 1,
        shutdown_timeout_secs: 1,
        ..JobsConfig::default()
    };
    config.webhooks = WebhooksConfig {
        allow_private_destinations: true,
        timeout_ms: 300,
        ..WebhooksConfig::default()
    };
}

async fn signed_in(configure: impl FnOnce(&mut Config)) -> (TestApp, TestUser) {
    let mut app = TestApp::spawn_with(
        |config| {
            quick(config);
            configure(config);
        },
        Router::new(),
    )
    .await;
    let user = app.user("owner@example.com", "user").await;
    app.act_as(&user);
    (app, user)
}

fn worker(app: &TestApp) -> Worker {
    Worker::start_with(app.state.clone(), Registry::default().with::<Deliver>()).expect("start the worker")
}

/// Registers an endpoint at `address` for `events`; returns its id and secret.
async fn register(app: &TestApp, address: SocketAddr, events: &[&str]) -> (String, String) {
    let response = app
        .post(
            "/api/v1/webhooks",
            &json!({ "url": format!("http://{address}/hook"), "events": events }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body = json(response).await;
    (
        body["id"].as_str().expect("id").to_owned(),
        body["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let response = app.get(&format!("/api/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(response.status(), 200);
    json(response).await["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn an_endpoint_shows_its_secret_once_and_only_to_its_owner() {
    let (mut app, _) = signed_in(|_| {}).await;
    let (id, secret) = register(&app, "127.0.0.1:9".parse().expect("address"), &["task.created"]).await;
    assert!(secret.starts_with("whsec_"), "{secret}");

    let read = json(app.get(&format!("/api/v1/webhooks/{id}")).await).await;
    assert_eq!(read["events"], json!(["task.created"]));
    assert!(read.get("secret").is_none(), "{read}");
    let listed = json(app.get("/api/v1/webhooks").await).await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);
    assert!(!listed.to_string().contains(&secret));

    let other = app.user("other@example.com", "user").await;
    app.act_as(&other);
    problem(app.get(&format!("/api/v1/webhooks/{id}")).await, 404).await;
    problem(app.get(&format!("/api/v1/webhooks/{id}/deliveries")).await, 404).await;
    problem(app.delete(&format!("/api/v1/webhooks/{id}"), None).await, 404).await;
    assert_eq!(json(app.get("/api/v1/webhooks").await).await["items"], json!([]));
}

#[tokio::test]
async fn a_committed_change_is_delivered_signed_and_a_refused_one_is_not_delivered() {
    let (app, _) = signed_in(|_| {}).await;
    let (receiver, address) = Receiver::start(&[]).await;
    let (endpoint, secret) = register(&app, address, &["project.created", "project.updated"]).await;
    let worker = worker(&app);

    let created = app.post("/api/v1/projects", &json!({ "name": "Apollo" })).await;
    assert_eq!(created.status(), 201);
    let request_id = created.headers()["x-request-id"].clone();
    let project = json(created).await;
    // A stale version: refused, so its transaction and its delivery roll back.
    let path = format!("/api/v1/projects/{}", project["id"].as_str().expect("id"));
    problem(
        app.patch(&path, Some("\"7\""), &json!({ "name": "Artemis" })).await,
        412,
    )
    .await;
    eventually("the creation is delivered", || async {
        !receiver.received().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;

    let requests = receiver.received();
    assert_eq!(requests.len(), 1, "only the committed change: {requests:?}");
    let delivery = &requests[0];
    let body: Value = serde_json::from_str(&delivery.body).expect("JSON");
    assert_eq!(body["type"], "project.created");
    assert_eq!(body["data"], project);
    let header = |name: &str| delivery.headers[name].to_str().expect("ascii").to_owned();
    let timestamp: i64 = header("webhook-timestamp").parse().expect("seconds");
    assert_eq!(
        header("webhook-signature"),
        signature::sign(&secret, &header("webhook-id"), timestamp, &delivery.body).expect("sign")
    );
    assert_eq!(delivery.headers["x-request-id"], request_id);
    assert_eq!(header("content-type"), "application/json");
    let records = deliveries(&app, &endpoint).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 204);
    assert_eq!(records[0]["attempt"], 1);
    assert_eq!(records[0]["message_id"], header("webhook-id"));
}

#[tokio::test]
async fn a_5xx_and_a_timeout_are_retried_under_the_same_message_id_and_recorded() {
    let (app, _) = signed_in(|_| {}).await;
    // 500, then an answer slower than the 300 ms timeout, then the default 204.
    let (_, address) = Receiver::start(&[(500, 0), (200, 1_000)]).await;
    let (endpoint, _) = register(&app, address, &["project.created"]).await;
    let worker = worker(&app);

    app.post("/api/v1/projects", &json!({ "name": "Gemini" })).await;
    eventually("the third attempt is recorded", || async {
        deliveries(&app, &endpoint).await.len() == 3
    })
    .await;
    worker.stop().await;

    let records = deliveries(&app, &endpoint).await;
    let (third, second, first) = (&records[0], &records[1], &records[2]);
    assert_eq!(
        (first["attempt"].clone(), first["status"].clone()),
        (json!(1), json!(500))
    );
    assert_eq!(first["error"], "answered 500 Internal Server Error");
    assert_eq!(
        (second["attempt"].clone(), second["status"].clone()),
        (json!(2), Value::Null)
    );
    assert_eq!(second["error"], "timed out");
    assert!(second["latency_ms"].as_i64().expect("ms") >= 300, "{second}");
    assert_eq!(
        (third["attempt"].clone(), third["status"].clone()),
        (json!(3), json!(204))
    );
    assert!(third.get("error").is_none_or(Value::is_null), "{third}");
    let ids: Vec<&Value> = records.iter().map(|record| &record["message_id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

/// A receiver that starts every answer with `head` at once, without reading the request, then
/// sends, when `endless`, a chunked body that never ends.
async fn raw_receiver(head: String, endless: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let head = head.clone();
            tokio::spawn(async move {
                let chunk = format!("2000\r\n{}\r\n", "x".repeat(0x2000));
                let mut sent = stream.write_all(head.as_bytes()).await;
                // Until the client hangs up.
                while endless && sent.is_ok() {
                    sent = stream.write_all(chunk.as_bytes()).await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let (app, _) = signed_in(|_| {}).await;
    let (receiver, target) = Receiver::start(&[]).await;
    let moved =
        format!("HTTP/1.1 308 Permanent Redirect\r\nlocation: http://{target}/hook\r\ncontent-length: 0\r\n\r\n");
    let (endpoint, _) = register(&app, raw_receiver(moved, false).await, &["project.created"]).await;
    let worker = worker(&app);

    app.post("/api/v1/projects", &json!({ "name": "Skylab" })).await;
    eventually("the attempt is recorded", || async {
        !deliveries(&app, &endpoint).await.is_empty()
    })
    .await;
    worker.stop().await;

    let records = deliveries(&app, &endpoint).await;
    let first = records.last().expect("a record");
    assert_eq!(first["status"], 308);
    assert_eq!(
        first["error"],
        "answered 308 Permanent Redirect; redirects are not followed"
    );
    assert!(receiver.received().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn an_answer_that_never_ends_is_read_up_to_the_cap_and_the_delivery_counts() {
    // Read to its end, the body would run into the 300 ms timeout.
    let (app, _) = signed_in(|_| {}).await;
    let endless = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned();
    let (endpoint, _) = register(&app, raw_receiver(endless, true).await, &["project.created"]).await;
    let worker = worker(&app);

    app.post("/api/v1/projects", &json!({ "name": "Salyut" })).await;
    eventually("the attempt is recorded", || async {
        !deliveries(&app, &endpoint).await.is_empty()
    })
    .await;
    worker.stop().await;

    let records = deliveries(&app, &endpoint).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["status"], 200);
    assert!(records[0].get("error").is_none_or(Value::is_null), "{}", records[0]);
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_a_trial_closes_it() {
    let (app, _) = signed_in(|config| {
        config.webhooks.circuit_failures = 2;
        config.webhooks.circuit_open_secs = 1;
    })
    .await;
    let (receiver, address) = Receiver::start(&[(503, 0), (503, 0)]).await;
    let (endpoint, _) = register(&app, address, &["project.created"]).await;
    let worker = worker(&app);

    app.post("/api/v1/projects", &json!({ "name": "Mercury" })).await;
    eventually("the circuit refuses an attempt", || async {
        deliveries(&app, &endpoint).await.iter().any(|record| {
            record["error"]
                .as_str()
                .is_some_and(|error| error.starts_with("the circuit for 127.0.0.1:"))
        })
    })
    .await;
    let gauge = |level: u8| {
        [
            "webhook_circuit_state{destination=\"",
            &address.to_string(),
            "\"} ",
            &level.to_string(),
        ]
        .concat()
    };
    assert!(
        app.get("/metrics")
            .await
            .text()
            .await
            .expect("text")
            .contains(&gauge(2))
    );
    assert_eq!(receiver.received().len(), 2, "no request while open");

    eventually("the trial delivers", || async {
        deliveries(&app, &endpoint).await[0]["status"] == 204
    })
    .await;
    worker.stop().await;
    assert_eq!(receiver.received().len(), 3);
    assert!(
        app.get("/metrics")
            .await
            .text()
            .await
            .expect("text")
            .contains(&gauge(0))
    );
}

#[tokio::test]
async fn internal_destinations_are_refused_at_registration() {
    let (app, _) = signed_in(|config| config.webhooks.allow_private_destinations = false).await;

    for (url, message) in [
        (
            "http://127.0.0.1:8080/hook",
            "is a loopback, private or otherwise internal address",
        ),
        (
            "http://169.254.169.254/latest/meta-data",
            "is a loopback, private or otherwise internal address",
        ),
        (
            "http://[::ffff:10.0.0.1]/hook",
            "is a loopback, private or otherwise internal address",
        ),
        (
            "http://localhost:8080/hook",
            "localhost resolves to a loopback, private or otherwise internal address",
        ),
        (
            "http://user:secret@example.com/hook",
            "must not carry credentials; the signature authenticates deliveries",
        ),
        ("file:///etc/passwd", "must be an http or https URL"),
    ] {
        let response = app
            .post(
                "/api/v1/webhooks",
                &json!({ "url": url, "events": ["project.created"] }),
            )
            .await;
        let body = problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "url", "{url}");
        assert_eq!(body["errors"][0]["message"], message, "{url}");
    }
    assert_eq!(json(app.get("/api/v1/webhooks").await).await["items"], json!([]));
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_at_delivery_is_refused_without_a_request() {
    // Registered while the name was harmless; by delivery it resolves to loopback.
    let (app, owner) = signed_in(|config| config.webhooks.allow_private_destinations = false).await;
    let (receiver, address) = Receiver::start(&[]).await;
    let endpoint: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO webhook_endpoints (id, owner_id, url, events, secret) \
         VALUES (gen_random_uuid(), $1, $2, '{project.created}', $3) RETURNING id",
    )
    .bind(owner.id)
    .bind(format!("http://localhost:{}/hook", address.port()))
    .bind(signature::new_secret().expect("secret"))
    .fetch_one(app.state.db.pool())
    .await
    .expect("endpoint");
    let worker = worker(&app);

    app.post("/api/v1/projects", &json!({ "name": "Vostok" })).await;
    eventually("the attempt is recorded", || async {
        !deliveries(&app, &endpoint.to_string()).await.is_empty()
    })
    .await;
    worker.stop().await;

    let records = deliveries(&app, &endpoint.to_string()).await;
    let error = records[0]["error"].as_str().expect("an error");
    assert!(
        error.contains("localhost resolves only to internal addresses"),
        "{error}"
    );
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn one_trace_spans_the_request_the_job_and_the_delivery() {
    // The compiled binary, with its development settings (a worker in process, deliveries to
    // loopback allowed), on the database and with the account of a test app.
    let (app, _) = signed_in(|_| {}).await;
    let (receiver, hook) = Receiver::start(&[]).await;
    let (collector, otlp) = Collector::start().await;
    let port = free_port();
    let mut command = running("serve", &app.database.url, port);
{%- if auth == "verifier" %}
    // Trusting the test's issuer, as the app does.
    let auth = &app.state.config.auth;
    command
        .env("APP_AUTH__ISSUER", &auth.issuer)
        .env("APP_AUTH__AUDIENCE", &auth.audience)
        .env("APP_AUTH__JWKS_URL", &auth.jwks_url);
{%- endif %}
    let child = command
        .env("APP_TELEMETRY__OTLP_ENDPOINT", format!("http://{otlp}"))
        .spawn()
        .expect("start the service");
    wait_until_live(port).await;
    let client = http_client()
        .default_headers(app.headers.clone())
        .build()
        .expect("client");
    let url = |path: &str| format!("http://127.0.0.1:{port}/api/v1/{path}");

    let registered = client
        .post(url("webhooks"))
        .json(&json!({ "url": format!("http://{hook}/hook"), "events": ["project.created"] }))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let created = client
        .post(url("projects"))
        .header("traceparent", traceparent())
        .json(&json!({ "name": "Traced" }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    eventually("the delivery arrives", || async { !receiver.received().is_empty() }).await;
    let (code, _) = terminate(child).await;

    assert_eq!(code, Some(0));
    let request = collector.span("POST /api/v1/projects");
    assert_eq!(request.parent_span_id, PARENT);
    let job = collector.span("job webhook-delivery");
    assert_eq!(job.parent_span_id, request.span_id);
    let call = collector.span("webhook delivery");
    assert_eq!(call.parent_span_id, job.span_id);
    let sent = receiver.received()[0].headers["traceparent"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(sent, format!("00-{TRACE}-{}-01", call.span_id));
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_leaves_it_to_another_once_its_lease_runs_out() {
    let (app, _) = signed_in(|_| {}).await;
    // The first request is answered long after the test; the second at once.
    let (receiver, hook) = Receiver::start(&[(204, 60_000)]).await;
    let (endpoint, _) = register(&app, hook, &["project.created"]).await;
    app.post("/api/v1/projects", &json!({ "name": "Killed" })).await;
    // Worker processes of the compiled binary, with its development settings.
    let worker = || {
        let port = free_port();
        let child = running("worker", &app.database.url, port)
            .env("APP_JOBS__LEASE_MS", "1000")
            .spawn()
            .expect("start a worker");
        (child, port)
    };

    let (mut first, _) = worker();
    eventually("the first worker is delivering", || async {
        receiver.received().len() == 1
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let (second, port) = worker();
    wait_until_live(port).await;
    eventually("the second worker delivers again", || async {
        receiver.received().len() == 2
    })
    .await;
    eventually("the job is done", || async {
        deliveries(&app, &endpoint).await.len() == 1
    })
    .await;
    let (code, _) = terminate(second).await;

    assert_eq!(code, Some(0));
    let requests = receiver.received();
    assert_eq!(requests[0].headers["webhook-id"], requests[1].headers["webhook-id"]);
    let records = deliveries(&app, &endpoint).await;
    assert_eq!(records.len(), 1, "one success recorded: {records:?}");
    assert_eq!(records[0]["status"], 204);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'webhook-delivery'")
        .fetch_one(app.state.db.pool())
        .await
        .expect("count jobs");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_built_in_prune_deletes_only_old_delivery_records() {
    let (app, _) = signed_in(|_| {}).await;
    let (endpoint, _) = register(&app, "127.0.0.1:9".parse().expect("address"), &["task.created"]).await;
    for (message, age) in [("msg_old", "15 days"), ("msg_recent", "1 day")] {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, event, attempt, status, latency_ms, created_at) \
             VALUES (gen_random_uuid(), $1::uuid, $2, 'task.created', 1, 204, 3, now() - $3::interval)",
        )
        .bind(&endpoint)
        .bind(message)
        .bind(age)
        .execute(app.state.db.pool())
        .await
        .expect("insert");
    }

    PruneDeliveries.run(app.state.clone()).await.expect("prune");

    let left: Vec<Value> = deliveries(&app, &endpoint)
        .await
        .into_iter()
        .map(|record| record["message_id"].clone())
        .collect();
    assert_eq!(left, [json!("msg_recent")]);
}
