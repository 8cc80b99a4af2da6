//! Rate limits over HTTP: per client address for anonymous requests (with `X-Forwarded-For`
//! believed only from a trusted proxy){%- if auth == "issuer" %}, per account for authenticated ones, and per address
//! and per account on sign-in{%- endif %}; 429 problems with `Retry-After`; probes never limited.

use axum::http::StatusCode;
use axum::routing::post;
use reqwest::{Method, Response};
{%- if auth == "issuer" %}
use serde_json::json;
{%- endif %}
use service::config::Config;

{% if auth == "issuer" %}use crate::auth::{PASSWORD, authorized, signed_in};
{% endif %}use crate::helpers::{TestApp, problem};

/// The service with its rate limits on, and an API route that does nothing.
async fn spawn(configure: impl FnOnce(&mut Config)) -> TestApp {
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

async fn assert_limited(response: Response) {
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
{%- if auth == "issuer" %}

#[tokio::test]
async fn authenticated_requests_are_limited_per_account() {
    let app = spawn(|config| config.rate_limit.per_user_per_minute = 2).await;
    let ada = signed_in(&app, "ada@example.com").await;
    let grace = signed_in(&app, "grace@example.com").await;
    let me = |session: &serde_json::Value| {
        let token = session["access_token"].clone();
        let app = &app;
        async move { authorized(app, Method::GET, "/api/v1/auth/me", &token, None).await }
    };

    assert_eq!(me(&ada).await.status(), 200);
    assert_eq!(me(&ada).await.status(), 200);
    assert_limited(me(&ada).await).await;
    assert_eq!(me(&grace).await.status(), 200);
}

#[tokio::test]
async fn sign_ins_are_limited_per_account_and_per_address() {
    let app = spawn(|config| {
        config.rate_limit.sign_in_per_account_per_minute = 2;
        config.rate_limit.sign_in_per_ip_per_minute = 4;
        config.rate_limit.trusted_proxies = "127.0.0.1".to_owned();
    })
    .await;
    let attempt = |email: &str, from: &str| {
        app.request(Method::POST, "/api/v1/auth/login")
            .header("x-forwarded-for", from)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
    };

    // One account guessed from many addresses.
    for from in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(attempt("ada@EXAMPLE.com", from).await.expect("request").status(), 401);
    }
    assert_limited(attempt("ada@example.com", "203.0.113.3").await.expect("request")).await;
    // Many accounts guessed from one address.
    for n in 0..3 {
        let email = format!("user{n}@example.com");
        assert_eq!(attempt(&email, "198.51.100.7").await.expect("request").status(), 401);
    }
    // The fourth from this address passed the address limit but not the account limit of
    // ada; a fifth attempt is over the address limit whatever the account.
    assert_limited(attempt("ada@example.com", "198.51.100.7").await.expect("request")).await;
    assert_limited(attempt("new@example.com", "198.51.100.7").await.expect("request")).await;
}
{%- endif %}
