//! Tokens of another service: accepted with the permissions in their `scope`; refused for
//! every claim that is off and every forgery; the issuer's keys cached, fetched again on an
//! unknown key id at a bounded rate, kept while the issuer is down, and read no further than
//! their size cap.

use std::io::{Read, Write};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Response;
use serde_json::{Value, json};
use service::auth::Tokens;
use service::config::{Config, Environment};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{TestApp, json, problem};
use crate::issuer::{Key, claims, sign};

async fn me(app: &TestApp, token: &str) -> Response {
    app.client
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request failed")
}

async fn refused(app: &TestApp, token: &str) {
    let response = me(app, token).await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    problem(response, 401).await;
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(configure, axum::Router::new()).await
}

#[tokio::test]
async fn a_token_of_the_issuer_is_accepted_with_the_permissions_in_its_scope() {
    let app = TestApp::spawn().await;
    let user = Uuid::now_v7();

    let response = me(&app, &app.issuer.token(user, "resources:any users:read")).await;

    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["id"], user.to_string());
    assert_eq!(body["permissions"], json!(["resources:any", "users:read"]));
    let anonymous = app.get("/api/v1/me").await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    problem(anonymous, 401).await;
}

#[tokio::test]
async fn tokens_with_a_claim_off_or_a_forged_signature_are_refused() {
    let app = TestApp::spawn().await;
    let user = Uuid::now_v7();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let bent = |key: &str, value: Value| {
        let mut claims = claims(user, "");
        claims[key] = value;
        app.issuer.sign(&claims)
    };

    refused(&app, &bent("iss", json!("https://elsewhere.example"))).await;
    refused(&app, &bent("aud", json!("another-api"))).await;
    refused(&app, &bent("exp", json!(now - 120))).await;
    refused(&app, &bent("nbf", json!(now + 120))).await;
    let kid = app.issuer.current_kid();
    let current = Key::new(0);
    // Another type from the same issuer and key, such as a refresh or an ID token.
    refused(
        &app,
        &sign(&claims(user, ""), Algorithm::EdDSA, "JWT", &kid, &current.private),
    )
    .await;
    // A stranger's key under the issuer's key id, and a stranger's key under its own.
    let stranger = Key::new(2);
    refused(
        &app,
        &sign(&claims(user, ""), Algorithm::EdDSA, "at+jwt", &kid, &stranger.private),
    )
    .await;
    refused(
        &app,
        &sign(
            &claims(user, ""),
            Algorithm::EdDSA,
            "at+jwt",
            &stranger.kid,
            &stranger.private,
        ),
    )
    .await;
    // HMAC keyed with something public, and no signature at all.
    let hmac = EncodingKey::from_secret(kid.as_bytes());
    refused(&app, &sign(&claims(user, ""), Algorithm::HS256, "at+jwt", &kid, &hmac)).await;
    let token = app.issuer.token(user, "");
    let unsigned = format!("{}.", token.rsplit_once('.').expect("three parts").0);
    refused(&app, &unsigned).await;
    // A payload swapped under a valid signature.
    let granted = app.issuer.token(user, "resources:any");
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = granted.split('.').nth(1).expect("payload");
    refused(&app, &parts.join(".")).await;

    assert_eq!(me(&app, &token).await.status(), 200, "the untampered token still works");
}

#[tokio::test]
async fn keys_are_cached_and_unknown_key_ids_refetch_at_a_bounded_rate() {
    let app = spawn(|config| config.auth.jwks_min_refetch_secs = 1).await;
    let user = Uuid::now_v7();

    for _ in 0..5 {
        assert_eq!(me(&app, &app.issuer.token(user, "")).await.status(), 200);
    }
    assert_eq!(app.issuer.requests(), 1, "one fetch serves every token");

    // A burst of made-up key ids costs at most one fetch.
    let stranger = Key::new(2);
    let made_up = sign(
        &claims(user, ""),
        Algorithm::EdDSA,
        "at+jwt",
        &stranger.kid,
        &stranger.private,
    );
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app.client.get(app.url("/api/v1/me")).bearer_auth(&made_up);
        burst.spawn(async move { request.send().await.expect("request failed").status() });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.expect("joined"), 401);
    }
    assert!(app.issuer.requests() <= 2, "{} fetches", app.issuer.requests());

    // The issuer rotates: its new key id is fetched, once the refetch interval has passed.
    app.issuer.rotate();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let before = app.issuer.requests();
    assert_eq!(me(&app, &app.issuer.token(user, "")).await.status(), 200);
    assert_eq!(app.issuer.requests(), before + 1);
    assert_eq!(
        app.state.auth.tokens.fetches(),
        u64::try_from(app.issuer.requests()).expect("small")
    );
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    // Every token would refetch: the cache is never fresh and fetches are not rate-limited.
    let app = spawn(|config| {
        config.auth.jwks_max_age_secs = 0;
        config.auth.jwks_min_refetch_secs = 0;
    })
    .await;
    let user = Uuid::now_v7();
    assert_eq!(me(&app, &app.issuer.token(user, "")).await.status(), 200);

    app.issuer.set_down(true);
    assert_eq!(me(&app, &app.issuer.token(user, "")).await.status(), 200);
    assert_eq!(app.issuer.requests(), 2, "the failed fetch was tried");
    // A key published while the issuer is unreachable cannot be known yet.
    app.issuer.rotate();
    refused(&app, &app.issuer.token(user, "")).await;

    app.issuer.set_down(false);
    assert_eq!(me(&app, &app.issuer.token(user, "")).await.status(), 200);
}

#[tokio::test]
async fn the_service_serves_its_probes_while_the_issuer_was_never_reached() {
    let app = TestApp::spawn().await;
    app.issuer.set_down(true);

    assert_eq!(app.get("/health/ready").await.status(), 200);
    refused(&app, &app.issuer.token(Uuid::now_v7(), "")).await;
    assert_eq!(app.state.auth.tokens.fetches(), 1);
}

#[tokio::test]
async fn an_endless_key_set_is_cut_off_at_its_size_cap() {
    // A key set streamed without end, in chunks with no declared length.
    let endless = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let address = endless.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut socket in endless.incoming().flatten() {
            std::thread::spawn(move || {
                let _request = socket.read(&mut [0; 4096]);
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("1000\r\n{}\r\n", " ".repeat(0x1000));
                let _ = socket.write_all(head.as_bytes());
                while socket.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    let app = spawn(|config| {
        config.auth.jwks_url = format!("http://{address}/.well-known/jwks.json");
        config.auth.jwks_timeout_ms = 60_000;
    })
    .await;

    // Refused once the cap is passed, long before the fetch's own timeout would end it.
    let token = app.issuer.token(Uuid::now_v7(), "");
    tokio::time::timeout(Duration::from_secs(10), refused(&app, &token))
        .await
        .expect("the fetch stops at the size cap");
}

#[tokio::test]
async fn requests_with_a_token_are_limited_per_account() {
    let app = spawn(|config| {
        config.rate_limit.enabled = true;
        config.auth.per_account_per_minute = 2;
    })
    .await;
    let (ada, grace) = (
        app.issuer.token(Uuid::now_v7(), ""),
        app.issuer.token(Uuid::now_v7(), ""),
    );

    assert_eq!(me(&app, &ada).await.status(), 200);
    assert_eq!(me(&app, &ada).await.status(), 200);
    let limited = me(&app, &ada).await;
    assert!(limited.headers().contains_key("retry-after"));
    problem(limited, 429).await;
    assert_eq!(me(&app, &grace).await.status(), 200);
}

#[tokio::test]
async fn production_fetches_keys_over_plain_http_only_when_told_to() {
    let app = TestApp::spawn().await;
    let mut config = app.issuer.config();

    let refused = Tokens::new(&config, Environment::Production).expect_err("plain HTTP refused");
    assert!(refused.to_string().contains("APP_AUTH__JWKS_ALLOW_HTTP"), "{refused}");
    assert!(Tokens::new(&config, Environment::Development).is_ok());
    config.jwks_allow_http = true;
    assert!(Tokens::new(&config, Environment::Production).is_ok());
}
