//! The issuer's own rate limits over HTTP: per account for requests with an access token,
//! and per address and per account on sign-in and password changes, so that neither one
//! address guessing many accounts, nor many addresses guessing one, nor a stolen access token
//! guessing its account's password get far.

use reqwest::Method;
use serde_json::json;

use crate::auth::{PASSWORD, authorized, signed_in};
use crate::rate_limits::{assert_limited, spawn};

#[tokio::test]
async fn authenticated_requests_are_limited_per_account() {
    let app = spawn(|config| config.auth.per_account_per_minute = 2).await;
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
        config.auth.sign_in_per_account_per_minute = 2;
        config.auth.sign_in_per_ip_per_minute = 4;
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

#[tokio::test]
async fn password_changes_are_limited_like_sign_ins() {
    let app = spawn(|config| config.auth.sign_in_per_account_per_minute = 2).await;
    let ada = signed_in(&app, "ada@example.com").await;
    let change = json!({"current_password": "a guess at the password", "new_password": "a brand new password"});
    let guess = || {
        authorized(
            &app,
            Method::POST,
            "/api/v1/auth/password",
            &ada["access_token"],
            Some(&change),
        )
    };

    assert_eq!(guess().await.status(), 403);
    assert_eq!(guess().await.status(), 403);
    assert_limited(guess().await).await;
}
