//! Connection hygiene and graceful shutdown of the hyper accept loop: timeouts, the limits on
//! open connections in all and per client, and the idle timeout.

use std::time::{Duration, Instant};

use axum::Router;
use reqwest::Method;
use service::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Gate, TestApp, http_client, json};

fn probes(gate: &Gate) -> Router<AppState> {
    Router::new().route("/probe/hold", gate.route())
}

/// Reads until the server closes the connection; returns how long that took and what it sent.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open longer than {limit:?}"
    );
    (started.elapsed(), received)
}

/// A client that speaks HTTP/2 from the first byte, as a gRPC or service-mesh client does.
fn http2_client() -> reqwest::Client {
    http_client().http2_prior_knowledge().build().expect("client")
}

async fn with_header_timeout() -> TestApp {
    TestApp::spawn_with(|config| config.server.header_read_timeout_secs = 1, Router::new()).await
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let app = with_header_timeout().await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");

    let (elapsed, received) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(received.is_empty());
    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn a_client_that_stalls_mid_headers_is_disconnected() {
    let app = with_header_timeout().await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: test\r\n")
        .await
        .expect("write");

    let (elapsed, _) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn a_kept_alive_client_that_stalls_mid_headers_is_disconnected() {
    let app = with_header_timeout().await;
    let mut stream = served_connection(&app).await;
    stream.write_all(b"GET /health/live HTTP/1.1\r\n").await.expect("write");

    let (elapsed, received) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(received.is_empty(), "no answer to half a request");
    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn a_request_that_outlasts_the_header_timeout_is_answered_then_its_idle_connection_closed() {
    let gate = Gate::new();
    let app = TestApp::spawn_with(|config| config.server.header_read_timeout_secs = 1, probes(&gate)).await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    stream
        .write_all(b"GET /probe/hold HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    gate.entered().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    gate.open();

    let mut buffer = [0_u8; 512];
    let read = stream.read(&mut buffer).await.expect("response");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "answered after 1.5 s");
    let (elapsed, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        elapsed >= Duration::from_millis(900),
        "the timeout runs from the answer; closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn a_client_that_trickles_the_http2_preface_is_disconnected() {
    let app = with_header_timeout().await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");

    let (elapsed, received) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(received.is_empty());
    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn http2_clients_are_served() {
    let app = TestApp::spawn().await;
    let client = http2_client();

    let response = client.get(app.url("/health/live")).send().await.expect("request");

    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(json(response).await["status"], "up");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let app = TestApp::spawn_with(|config| config.server.max_connections = 1, Router::new()).await;
    let request = b"GET /health/live HTTP/1.1\r\nhost: test\r\n\r\n";
    let mut first = TcpStream::connect(app.address).await.expect("connect");
    first.write_all(request).await.expect("write");
    let mut buffer = [0_u8; 512];
    let read = first.read(&mut buffer).await.expect("first response");
    assert!(
        buffer[..read].starts_with(b"HTTP/1.1 200"),
        "first connection is served"
    );

    let mut second = TcpStream::connect(app.address)
        .await
        .expect("the kernel still accepts the connection");
    second.write_all(request).await.expect("write");
    let waiting = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buffer)).await;
    assert!(
        waiting.is_err(),
        "the second connection must wait while the first is open"
    );

    drop(first);
    let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buffer))
        .await
        .expect("served once the first connection closed")
        .expect("read");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
}

/// Sends one request on a new connection and checks the answer; returns the open connection.
async fn served_connection(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let mut buffer = [0_u8; 512];
    let read = stream.read(&mut buffer).await.expect("response");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"), "served");
    stream
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_connections() {
    let app = TestApp::spawn_with(|config| config.server.max_connections_per_client = 2, Router::new()).await;
    let _held = [served_connection(&app).await, served_connection(&app).await];

    let mut third = TcpStream::connect(app.address).await.expect("the kernel accepts it");
    let (_, received) = until_closed(&mut third, Duration::from_secs(5)).await;

    assert!(received.is_empty(), "closed without an answer");
    let metrics = app.state.metrics.render(app.state.db.stats());
    assert!(
        metrics.contains(r#"security_events_total{event="connection_refused"} 1"#),
        "{metrics}"
    );
    assert_eq!(app.state.metrics.open_connections.get(), 2);
}

#[tokio::test]
async fn a_trusted_proxy_may_hold_any_number_of_connections() {
    let app = TestApp::spawn_with(
        |config| {
            config.server.max_connections_per_client = 1;
            config.rate_limit.trusted_proxies = "127.0.0.1".to_owned();
        },
        Router::new(),
    )
    .await;

    let _held = [served_connection(&app).await, served_connection(&app).await];

    assert_eq!(app.state.metrics.open_connections.get(), 2);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let app = TestApp::spawn_with(|config| config.server.idle_timeout_secs = 1, Router::new()).await;
    let client = http2_client();
    let response = client.get(app.url("/health/live")).send().await.expect("request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(app.state.metrics.open_connections.get(), 1);
    let started = Instant::now();

    let closed = async {
        while app.state.metrics.open_connections.get() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection is closed");

    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(800), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let gate = Gate::new();
    let mut app = TestApp::spawn_with(|_| {}, probes(&gate)).await;
    let in_flight = tokio::spawn(app.request(Method::GET, "/probe/hold").send());
    gate.entered().await;

    let server = app.begin_shutdown();
    let closed = async {
        while TcpStream::connect(app.address).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the listener closes");

    assert!(app.state.lifecycle.is_draining());
    assert!(!server.is_finished(), "the server waits for the request in flight");
    gate.open();
    let response = in_flight.await.expect("task").expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "released");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("drained")
        .expect("server task");
}

#[tokio::test]
async fn during_the_shutdown_delay_readiness_fails_but_requests_are_still_served() {
    let mut app = TestApp::spawn_with(|config| config.server.shutdown_delay_secs = 5, Router::new()).await;

    let server = app.begin_shutdown();
    let draining = async {
        while !app.state.lifecycle.is_draining() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), draining)
        .await
        .expect("draining starts");

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(json(ready).await["draining"], true);
    assert_eq!(app.get("/health/live").await.status(), 200);
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("stopped")
        .expect("server task");
    assert!(
        TcpStream::connect(app.address).await.is_err(),
        "the listener is closed after the delay"
    );
}

#[tokio::test]
async fn shutdown_cuts_off_requests_that_outlast_the_deadline() {
    let gate = Gate::new();
    let mut app = TestApp::spawn_with(|config| config.server.shutdown_timeout_secs = 1, probes(&gate)).await;
    let in_flight = tokio::spawn(app.request(Method::GET, "/probe/hold").send());
    gate.entered().await;

    let started = Instant::now();
    app.shut_down().await;

    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "the server waited for the stuck request: {elapsed:?}"
    );
    let outcome = in_flight.await.expect("task");
    assert!(
        outcome.is_err(),
        "the stuck request's connection is closed: {outcome:?}"
    );
}
