//! Connection hygiene and graceful shutdown of the hyper accept loop.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use reqwest::Method;
use service::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(2)).await;
    "finished"
}

fn probes() -> Router<AppState> {
    Router::new().route("/probe/slow", get(slow))
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

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let app = TestApp::spawn_with(|config| config.server.header_read_timeout_secs = 1, Router::new()).await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");

    let (elapsed, received) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(received.is_empty());
    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
}

#[tokio::test]
async fn a_client_that_stalls_mid_headers_is_disconnected() {
    let app = TestApp::spawn_with(|config| config.server.header_read_timeout_secs = 1, Router::new()).await;
    let mut stream = TcpStream::connect(app.address).await.expect("connect");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: test\r\n")
        .await
        .expect("write");

    let (elapsed, _) = until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
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

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let mut app = TestApp::spawn_with(|_| {}, probes()).await;
    let in_flight = tokio::spawn(app.request(Method::GET, "/probe/slow").send());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert!(app.state.lifecycle.is_draining());
    assert!(TcpStream::connect(app.address).await.is_err(), "the listener is closed");
    let response = in_flight.await.expect("task").expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "finished");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("drained")
        .expect("server task");
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_deadline() {
    let mut app = TestApp::spawn_with(|config| config.server.shutdown_timeout_secs = 1, probes()).await;
    let started = Instant::now();
    let in_flight = tokio::spawn(app.request(Method::GET, "/probe/slow").send());
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.shut_down().await;

    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1900),
        "the server waited for the slow request: {elapsed:?}"
    );
    in_flight.abort();
}
