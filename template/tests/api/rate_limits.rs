//! Rate limits over HTTP: per client address for anonymous requests (with `X-Forwarded-For`
//! believed only from a trusted proxy); 429 problems with `Retry-After`; probes never limited.

use axum::http::StatusCode;
use axum::routing::post;
use reqwest::{Method, Response};
use service::config::Config;

use crate::helpers::{TestApp, problem};

/// The service with its rate limits on, and an API route that does nothing.
pub async fn spawn(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(
        |config| {
            config.rate_limit.enabled = true;
            configure(config);
        },
        axum::Router::new().route("/probe/noop", post(|| async { StatusCode::NO_CONTENT })),
    )
    .await
}

/// An anonymous API request that does no work.
async fn anonymous(app: &TestApp, forwarded_for: &str) -> Response {
    app.request(Method::POST, "/probe/noop")
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .expect("request failed")
}

pub async fn assert_limited(response: Response) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    problem(response, 429).await;
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_forwarded_address_behind_a_trusted_proxy() {
    let app = spawn(|config| {
        config.rate_limit.per_ip_per_minute = 3;
        config.rate_limit.trusted_proxies = "127.0.0.1".to_owned();
    })
    .await;

    for _ in 0..3 {
        assert_eq!(anonymous(&app, "203.0.113.1").await.status(), 204);
    }
    assert_limited(anonymous(&app, "203.0.113.1").await).await;
    // A spoofed first entry does not help: the proxy's last entry names the client.
    assert_limited(anonymous(&app, "198.51.100.1, 203.0.113.1").await).await;
    assert_eq!(anonymous(&app, "203.0.113.2").await.status(), 204);
    for _ in 0..10 {
        assert_eq!(app.get("/health/ready").await.status(), 200);
    }
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let app = spawn(|config| config.rate_limit.per_ip_per_minute = 3).await;

    for n in 0..3 {
        assert_eq!(anonymous(&app, &format!("203.0.113.{n}")).await.status(), 204);
    }
    assert_limited(anonymous(&app, "203.0.113.99").await).await;
}
