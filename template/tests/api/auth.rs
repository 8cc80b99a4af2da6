//! Accounts and sessions over HTTP: registration that reveals nothing, sign-in failures that
//! look and cost the same, refresh-token rotation with reuse detection and the concurrent
//! race, logout, password changes, expiry, rehashing, hashing saturation, and the 401/403
//! contract of protected routes.

use std::sync::atomic::Ordering;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use service::auth::Passwords;
use service::db;
use uuid::Uuid;

use crate::callers::TestUser;
use crate::helpers::{TestApp, json, problem};

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// A new account with `role`, put straight into the database, a session and an access
    /// token for it: the tests of signing in cover that path, the others need not pay for
    /// password hashing.
    pub async fn user(&self, email: &str, role: &str) -> TestUser {
        let mut conn = self.state.db.acquire().await.expect("connection");
        let id = db::users::insert(&mut conn, email, "not a password hash", role)
            .await
            .expect("insert user")
            .expect("a new address");
        drop(conn);
        let token = self.token_for(id).await;
        TestUser { id, token }
    }

    /// An access token of a new session of the account `id`.
    pub async fn token_for(&self, id: Uuid) -> String {
        let mut conn = self.state.db.acquire().await.expect("connection");
        let (_, refresh_hash) = service::auth::refresh::generate().expect("refresh token");
        let session =
            db::refresh_tokens::start_family(&mut conn, id, &refresh_hash, self.state.config.auth.session_lifetimes())
                .await
                .expect("session");
        let permissions = db::users::live_session(&mut conn, id, session)
            .await
            .expect("permissions")
            .expect("an active account")
            .permissions;
        self.state
            .auth
            .tokens
            .issue_access(id, session, &permissions)
            .expect("access token")
    }
}

/// Registers `email` with [`PASSWORD`] and signs in; returns the token pair.
pub async fn signed_in(app: &TestApp, email: &str) -> Value {
    let registered = app
        .post("/api/v1/auth/register", &json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(registered.status(), 202);
    let login = login(app, email, PASSWORD).await;
    assert_eq!(login.status(), 200);
    json(login).await
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.post("/api/v1/auth/login", &json!({"email": email, "password": password}))
        .await
}

pub async fn authorized(app: &TestApp, method: Method, path: &str, token: &Value, body: Option<&Value>) -> Response {
    let mut request = app
        .request(method, path)
        .bearer_auth(token.as_str().expect("a token string"));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request failed")
}

async fn refresh(app: &TestApp, refresh_token: &Value) -> Response {
    app.post("/api/v1/auth/refresh", &json!({"refresh_token": refresh_token}))
        .await
}

/// Gives the account of `email` the admin role, as `create-admin` or an administrator would.
pub async fn make_admin(app: &TestApp, email: &str) {
    sqlx::query("INSERT INTO user_roles (user_id, role) SELECT id, 'admin' FROM users WHERE email = $1")
        .bind(email)
        .execute(app.state.db.pool())
        .await
        .expect("grant admin");
}

fn hashes(app: &TestApp) -> u64 {
    app.state.auth.passwords.performed.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_registered_account_signs_in_and_reads_itself() {
    let app = TestApp::spawn().await;

    let session = signed_in(&app, "Ada@Example.com").await;

    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["refresh_token"].as_str().map(str::len), Some(43));
    let me = authorized(&app, Method::GET, "/api/v1/auth/me", &session["access_token"], None).await;
    assert_eq!(me.status(), 200);
    let me = json(me).await;
    assert_eq!(me["email"], "Ada@Example.com");
    assert_eq!(me["roles"], json!(["user"]));
    assert_eq!(me["permissions"], json!([]));
    // Addresses compare without letter case.
    assert_eq!(login(&app, "ada@EXAMPLE.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn registering_a_taken_address_answers_exactly_as_a_free_one() {
    let app = TestApp::spawn().await;
    let body = |email: &str| json!({"email": email, "password": "another long password"});

    let before = hashes(&app);
    let fresh = app.post("/api/v1/auth/register", &body("grace@example.com")).await;
    let (fresh_status, fresh_body) = (fresh.status(), json(fresh).await);
    let after_fresh = hashes(&app);
    let taken = app.post("/api/v1/auth/register", &body("GRACE@example.com")).await;
    let (taken_status, taken_body) = (taken.status(), json(taken).await);

    assert_eq!((fresh_status.as_u16(), taken_status.as_u16()), (202, 202));
    assert_eq!(fresh_body, taken_body);
    assert_eq!(after_fresh - before, 1);
    assert_eq!(hashes(&app) - after_fresh, 1, "both paths hash once");
    // The first password still holds: the second registration changed nothing.
    assert_eq!(
        login(&app, "grace@example.com", "another long password").await.status(),
        200
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.state.db.pool())
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn unknown_account_wrong_password_and_disabled_account_fail_alike_after_the_same_work() {
    let app = TestApp::spawn().await;
    signed_in(&app, "known@example.com").await;
    signed_in(&app, "disabled@example.com").await;
    sqlx::query("UPDATE users SET status = 'disabled' WHERE email = 'disabled@example.com'")
        .execute(app.state.db.pool())
        .await
        .expect("disable");

    let mut answers = Vec::new();
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("known@example.com", "not the password at all"),
        ("disabled@example.com", PASSWORD),
    ] {
        let before = hashes(&app);
        let response = login(&app, email, password).await;
        assert_eq!(hashes(&app) - before, 1, "{email}: one password check");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        answers.push(problem(response, 401).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(answers[0]["detail"], "the email or password is wrong");
}

#[tokio::test]
async fn passwords_outside_the_policy_are_refused_before_any_hashing() {
    let app = TestApp::spawn().await;
    let before = hashes(&app);

    for password in ["too short".to_owned(), "x".repeat(129)] {
        let response = app
            .post(
                "/api/v1/auth/register",
                &json!({"email": "ada@example.com", "password": password}),
            )
            .await;
        let body = problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "password", "{body}");
        assert!(!body.to_string().contains(&password), "the password was echoed: {body}");
    }
    let flood = login(&app, "ada@example.com", &"x".repeat(100_000)).await;
    problem(flood, 422).await;
    let not_an_email = app
        .post("/api/v1/auth/register", &json!({"email": "ada", "password": PASSWORD}))
        .await;
    problem(not_an_email, 422).await;

    assert_eq!(hashes(&app), before);
}

#[tokio::test]
async fn common_passwords_are_refused_for_new_accounts_and_changes() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, "ada@example.com").await;
    let refused = |response: Response, field: &'static str| async move {
        let body = problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        assert_eq!(body["errors"][0]["code"], "guessable", "{body}");
        assert!(
            !body.to_string().contains("Password123"),
            "the password was echoed: {body}"
        );
    };

    let register = json!({"email": "grace@example.com", "password": "Password123!"});
    refused(app.post("/api/v1/auth/register", &register).await, "password").await;
    let change = json!({"current_password": PASSWORD, "new_password": "Password123!"});
    let changed = authorized(
        &app,
        Method::POST,
        "/api/v1/auth/password",
        &session["access_token"],
        Some(&change),
    )
    .await;
    refused(changed, "new_password").await;

    // Nothing was stored: the old password still works and the address is still free.
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.status(), 200);
    let register = json!({"email": "grace@example.com", "password": PASSWORD});
    assert_eq!(app.post("/api/v1/auth/register", &register).await.status(), 202);
    assert_eq!(login(&app, "grace@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_refresh_token_works_once_and_its_reuse_ends_the_session() {
    let app = TestApp::spawn().await;
    let first = signed_in(&app, "ada@example.com").await;

    let second = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(second.status(), 200);
    let second = json(second).await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let me = authorized(&app, Method::GET, "/api/v1/auth/me", &second["access_token"], None).await;
    assert_eq!(me.status(), 200);

    // The first token again: a thief or the owner replaying it. Either way the family dies,
    // the newest token too.
    let replay = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(replay.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    problem(replay, 401).await;
    problem(refresh(&app, &second["refresh_token"]).await, 401).await;
    // Another session of the same account is untouched.
    let other = json(login(&app, "ada@example.com", PASSWORD).await).await;
    assert_eq!(refresh(&app, &other["refresh_token"]).await.status(), 200);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_never_leave_two_live_sessions() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, "ada@example.com").await;

    let responses = concurrently(
        &app,
        "/api/v1/auth/refresh",
        8,
        |_| json!({"refresh_token": session["refresh_token"]}),
    )
    .await;
    let mut issued = Vec::new();
    for (status, body) in responses {
        match status {
            200 => issued.push(body["refresh_token"].clone()),
            401 => {}
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(issued.len() <= 1, "{} refreshes succeeded", issued.len());

    let mut live = 0;
    for token in &issued {
        if refresh(&app, token).await.status() == 200 {
            live += 1;
        }
    }
    assert!(live <= 1);
    let live_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL")
            .fetch_one(app.state.db.pool())
            .await
            .expect("count");
    assert!(live_rows <= 1, "{live_rows} live refresh tokens");
}

#[tokio::test]
async fn a_revocation_during_a_rotation_also_revokes_the_token_it_adds() {
    let app = TestApp::spawn().await;
    let user = app.user("ada@example.com", "user").await;
    let lifetimes = app.state.config.auth.session_lifetimes();
    let [first, second, third] = ["first", "second", "third"].map(service::auth::refresh::hash);
    let mut conn = app.state.db.acquire().await.expect("connection");
    db::refresh_tokens::start_family(&mut conn, user.id, &first, lifetimes)
        .await
        .expect("family");

    // A rotation in flight: its transaction has added the next token but not committed.
    let mut rotating = app.state.db.begin().await.expect("transaction");
    let rotated = db::refresh_tokens::rotate(&mut rotating, &first, &second, lifetimes.idle)
        .await
        .expect("rotate");
    assert!(matches!(rotated, db::refresh_tokens::Rotation::Rotated { .. }));
    let database = app.state.db.clone();
    let revoking = tokio::spawn(async move {
        let mut tx = database.begin().await.expect("transaction");
        let revoked = db::refresh_tokens::revoke_family_of(&mut tx, &first)
            .await
            .expect("revoke");
        db::commit(tx).await.expect("commit");
        revoked
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!revoking.is_finished(), "the revocation waits for the family's lock");
    rotating.commit().await.expect("commit");
    assert!(revoking.await.expect("task"));

    let mut tx = app.state.db.begin().await.expect("transaction");
    let after = db::refresh_tokens::rotate(&mut tx, &second, &third, lifetimes.idle)
        .await
        .expect("rotate");
    assert_eq!(
        after,
        db::refresh_tokens::Rotation::Refused,
        "the newest token is revoked too"
    );
}

/// Sends `body` to `path` from `count` tasks at once; the responses' statuses and bodies.
async fn concurrently(app: &TestApp, path: &str, count: usize, body: impl Fn(usize) -> Value) -> Vec<(u16, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let request = app.client.post(app.url(path)).json(&body(n));
        tasks.spawn(async move {
            let response = request.send().await.expect("request failed");
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let mut body: Value = response.json().await.expect("a JSON body");
            if let Some(value) = retry_after {
                body["retry-after header"] = json!(value.to_str().expect("ascii"));
            }
            (status, body)
        });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn logout_ends_the_session_and_answers_alike_for_unknown_tokens() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, "ada@example.com").await;
    let other = json(login(&app, "ada@example.com", PASSWORD).await).await;
    let me = |token| authorized(&app, Method::GET, "/api/v1/auth/me", token, None);

    let logout = app
        .post(
            "/api/v1/auth/logout",
            &json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_eq!(logout.status(), 204);
    problem(refresh(&app, &session["refresh_token"]).await, 401).await;
    // The session's access token ends with it, long before it expires; another session lives.
    problem(me(&session["access_token"]).await, 401).await;
    assert_eq!(me(&other["access_token"]).await.status(), 200);
    let unknown = app
        .post("/api/v1/auth/logout", &json!({"refresh_token": "no-such-token"}))
        .await;
    assert_eq!(unknown.status(), 204);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let first = signed_in(&app, "ada@example.com").await;
    let second = json(login(&app, "ada@example.com", PASSWORD).await).await;
    let change = |current: &str| json!({"current_password": current, "new_password": "a brand new passphrase"});

    let wrong = authorized(
        &app,
        Method::POST,
        "/api/v1/auth/password",
        &first["access_token"],
        Some(&change("a wrong passphrase")),
    )
    .await;
    problem(wrong, 403).await;
    let changed = authorized(
        &app,
        Method::POST,
        "/api/v1/auth/password",
        &first["access_token"],
        Some(&change(PASSWORD)),
    )
    .await;
    assert_eq!(changed.status(), 204);

    problem(refresh(&app, &first["refresh_token"]).await, 401).await;
    problem(refresh(&app, &second["refresh_token"]).await, 401).await;
    for session in [&first, &second] {
        let me = authorized(&app, Method::GET, "/api/v1/auth/me", &session["access_token"], None).await;
        problem(me, 401).await;
    }
    problem(login(&app, "ada@example.com", PASSWORD).await, 401).await;
    let renewed = login(&app, "ada@example.com", "a brand new passphrase").await;
    assert_eq!(renewed.status(), 200);
    let renewed = json(renewed).await;
    let me = authorized(&app, Method::GET, "/api/v1/auth/me", &renewed["access_token"], None).await;
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn tokens_are_not_interchangeable_and_protected_routes_say_how_to_authenticate() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, "ada@example.com").await;

    let missing = app.get("/api/v1/auth/me").await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    problem(missing, 401).await;
    for token in [&session["refresh_token"], &json!("not.a.jwt")] {
        let refused = authorized(&app, Method::GET, "/api/v1/auth/me", token, None).await;
        assert_eq!(refused.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
        problem(refused, 401).await;
    }
    let basic = app
        .request(Method::GET, "/api/v1/auth/me")
        .basic_auth("ada@example.com", Some(PASSWORD))
        .send()
        .await
        .expect("request");
    problem(basic, 401).await;
    // An access token where a refresh token belongs.
    problem(refresh(&app, &session["access_token"]).await, 401).await;
}

#[tokio::test]
async fn refresh_tokens_lapse_when_idle_and_at_the_absolute_limit() {
    let app = TestApp::spawn().await;
    let idle = signed_in(&app, "idle@example.com").await;
    let absolute = signed_in(&app, "absolute@example.com").await;
    let age = |email: &'static str, column: &'static str| {
        let sql = format!(
            "UPDATE refresh_tokens SET {column} = now() - interval '1 second'
             WHERE user_id = (SELECT id FROM users WHERE email = $1)"
        );
        let pool = app.state.db.pool().clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(email)
                .execute(&pool)
                .await
                .expect("age the token");
        }
    };

    age("idle@example.com", "expires_at").await;
    age("absolute@example.com", "family_expires_at").await;

    problem(refresh(&app, &idle["refresh_token"]).await, 401).await;
    problem(refresh(&app, &absolute["refresh_token"]).await, 401).await;
}

#[tokio::test]
async fn families_past_their_idle_or_absolute_expiry_are_deleted_and_live_ones_kept() {
    let app = TestApp::spawn().await;
    let live = signed_in(&app, "live@example.com").await;
    assert_eq!(refresh(&app, &live["refresh_token"]).await.status(), 200);
    signed_in(&app, "idle@example.com").await;
    signed_in(&app, "absolute@example.com").await;
    // The live family's used first token lapsed too: its newest token keeps the family.
    for sql in [
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' \
         WHERE user_id IN (SELECT id FROM users WHERE email IN ('idle@example.com', 'live@example.com')) \
         AND (used_at IS NOT NULL OR user_id = (SELECT id FROM users WHERE email = 'idle@example.com'))",
        "UPDATE refresh_tokens SET family_expires_at = now() - interval '1 second' \
         WHERE user_id = (SELECT id FROM users WHERE email = 'absolute@example.com')",
    ] {
        sqlx::query(sql).execute(app.state.db.pool()).await.expect("age tokens");
    }

    let mut conn = app.state.db.acquire().await.expect("connection");
    let deleted = db::refresh_tokens::delete_expired(&mut conn).await.expect("delete");

    assert_eq!(deleted, 2);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM refresh_tokens JOIN users ON users.id = refresh_tokens.user_id ORDER BY email",
    )
    .fetch_all(app.state.db.pool())
    .await
    .expect("tokens left");
    assert_eq!(left, ["live@example.com", "live@example.com"]);
}

#[tokio::test]
async fn a_session_lasts_as_configured_and_a_refresh_never_extends_it() {
    let app = TestApp::spawn_with(
        |config| {
            config.auth.refresh_token_idle_secs = 600;
            config.auth.refresh_token_absolute_secs = 3600;
        },
        axum::Router::new(),
    )
    .await;
    let first = signed_in(&app, "ada@example.com").await;
    assert_eq!(refresh(&app, &first["refresh_token"]).await.status(), 200);

    // Each token's idle lifetime from its own creation, its family's end from the sign-in.
    let lifetimes: Vec<(f64, f64)> = sqlx::query_as(
        "SELECT extract(epoch FROM t.expires_at - t.created_at)::float8,
                extract(epoch FROM t.family_expires_at - f.created_at)::float8
         FROM refresh_tokens t JOIN refresh_tokens f ON f.id = t.family_id
         ORDER BY t.created_at",
    )
    .fetch_all(app.state.db.pool())
    .await
    .expect("lifetimes");
    assert_eq!(lifetimes.len(), 2, "the sign-in's token and the refresh's");
    for (idle, absolute) in lifetimes {
        assert!((idle - 600.0).abs() < 2.0, "idle lifetime {idle} s");
        assert!((absolute - 3600.0).abs() < 2.0, "session lifetime {absolute} s");
    }
}

#[tokio::test]
async fn a_hash_made_with_weaker_parameters_is_replaced_at_sign_in() {
    let app = TestApp::spawn().await;
    signed_in(&app, "ada@example.com").await;
    let mut weak = app.state.config.auth.clone();
    weak.password_memory_kib = 1024;
    weak.password_iterations = 1;
    let weak_hash = Passwords::new(&weak)
        .expect("weak settings")
        .hash(&PASSWORD.into())
        .await
        .expect("a permit")
        .expect("hash");
    let stored = || async {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users")
            .fetch_one(app.state.db.pool())
            .await
            .expect("hash")
    };
    sqlx::query("UPDATE users SET password_hash = $1")
        .bind(&weak_hash)
        .execute(app.state.db.pool())
        .await
        .expect("store");

    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.status(), 200);

    let rehashed = stored().await;
    assert!(rehashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{rehashed}");
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_sign_in_flood_gets_503_instead_of_queueing_while_other_routes_answer() {
    let app = TestApp::spawn_with(
        |config| {
            config.auth.password_hashing_concurrency = Some(1);
            config.auth.password_queue_timeout_ms = 1;
        },
        axum::Router::new(),
    )
    .await;

    let flood = concurrently(
        &app,
        "/api/v1/auth/login",
        12,
        |n| json!({"email": format!("flood{n}@example.com"), "password": PASSWORD}),
    );
    let (responses, live) = tokio::join!(flood, app.get("/health/live"));

    assert_eq!(live.status(), 200);
    let statuses: Vec<u16> = responses.iter().map(|(status, _)| *status).collect();
    assert!(
        statuses.iter().all(|status| [401, 503].contains(status)),
        "{statuses:?}"
    );
    let (_, shed) = responses
        .iter()
        .find(|(status, _)| *status == 503)
        .expect("at least one sign-in turned away");
    assert_eq!(shed["retry-after header"], "1");
    assert_eq!(shed["detail"], "too many sign-ins at once; retry shortly");
}

#[tokio::test]
async fn only_administrators_manage_accounts_and_no_one_grants_themselves_a_role() {
    let app = TestApp::spawn().await;
    let user = signed_in(&app, "user@example.com").await;
    let admin_session = signed_in(&app, "admin@example.com").await;
    make_admin(&app, "admin@example.com").await;
    let me = json(authorized(&app, Method::GET, "/api/v1/auth/me", &user["access_token"], None).await).await;
    let user_id = me["id"].as_str().expect("id").to_owned();
    let grant_admin = json!({"roles": ["user", "admin"]});

    problem(
        authorized(&app, Method::GET, "/api/v1/users", &user["access_token"], None).await,
        403,
    )
    .await;
    let escalation = authorized(
        &app,
        Method::PUT,
        &format!("/api/v1/users/{user_id}/roles"),
        &user["access_token"],
        Some(&grant_admin),
    )
    .await;
    problem(escalation, 403).await;

    let admin = &admin_session["access_token"];
    let listed = json(authorized(&app, Method::GET, "/api/v1/users?limit=1", admin, None).await).await;
    assert_eq!(listed["items"][0]["email"], "user@example.com");
    let next = listed["next_cursor"].as_str().expect("a second page");
    let page2 = json(
        authorized(
            &app,
            Method::GET,
            &format!("/api/v1/users?limit=1&cursor={next}"),
            admin,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(page2["items"][0]["email"], "admin@example.com");
    assert!(page2["next_cursor"].is_null());

    let unknown_role = authorized(
        &app,
        Method::PUT,
        &format!("/api/v1/users/{user_id}/roles"),
        admin,
        Some(&json!({"roles": ["superuser"]})),
    )
    .await;
    problem(unknown_role, 422).await;
    let missing = authorized(
        &app,
        Method::PUT,
        &format!("/api/v1/users/{}/roles", Uuid::new_v4()),
        admin,
        Some(&grant_admin),
    )
    .await;
    problem(missing, 404).await;
    let granted = authorized(
        &app,
        Method::PUT,
        &format!("/api/v1/users/{user_id}/roles"),
        admin,
        Some(&grant_admin),
    )
    .await;
    assert_eq!(json(granted).await["roles"], json!(["admin", "user"]));
    // The same access token now carries the new permission: they are read per request.
    let now_allowed = authorized(&app, Method::GET, "/api/v1/users", &user["access_token"], None).await;
    assert_eq!(now_allowed.status(), 200);
}

#[tokio::test]
async fn each_account_route_needs_its_own_permission_not_a_neighbour() {
    let app = TestApp::spawn().await;
    // Roles with one permission each: a check that accepted any permission would let them by.
    sqlx::raw_sql(
        "INSERT INTO roles (name, description) VALUES ('reader', 'reads'), ('writer', 'writes');
         INSERT INTO role_permissions (role, permission) VALUES
             ('reader', 'users:read'), ('writer', 'users:write');",
    )
    .execute(app.state.db.pool())
    .await
    .expect("roles");
    let reader = app.user("reader@example.com", "reader").await;
    let writer = app.user("writer@example.com", "writer").await;
    let target = app.user("target@example.com", "user").await;
    let status = |user: &TestUser, method: Method, path: String, body: Option<Value>| {
        let token = json!(user.token);
        let app = &app;
        async move {
            authorized(app, method, &path, &token, body.as_ref())
                .await
                .status()
                .as_u16()
        }
    };
    let roles = format!("/api/v1/users/{}/roles", target.id);
    let disable = format!("/api/v1/users/{}/disable", target.id);
    let same_roles = Some(json!({"roles": ["user"]}));

    assert_eq!(status(&reader, Method::GET, "/api/v1/users".into(), None).await, 200);
    assert_eq!(
        status(&reader, Method::PUT, roles.clone(), same_roles.clone()).await,
        403
    );
    assert_eq!(status(&reader, Method::POST, disable.clone(), None).await, 403);
    assert_eq!(status(&writer, Method::GET, "/api/v1/users".into(), None).await, 403);
    assert_eq!(status(&writer, Method::PUT, roles, same_roles).await, 200);
    assert_eq!(status(&writer, Method::POST, disable, None).await, 204);
}

#[tokio::test]
async fn disabling_an_account_stops_its_tokens_at_once() {
    let app = TestApp::spawn().await;
    let user = signed_in(&app, "user@example.com").await;
    let admin = signed_in(&app, "admin@example.com").await;
    make_admin(&app, "admin@example.com").await;
    let me = json(authorized(&app, Method::GET, "/api/v1/auth/me", &user["access_token"], None).await).await;
    let path = format!("/api/v1/users/{}/disable", me["id"].as_str().expect("id"));

    let disabled = authorized(&app, Method::POST, &path, &admin["access_token"], None).await;
    assert_eq!(disabled.status(), 204);

    problem(
        authorized(&app, Method::GET, "/api/v1/auth/me", &user["access_token"], None).await,
        401,
    )
    .await;
    problem(refresh(&app, &user["refresh_token"]).await, 401).await;
    problem(login(&app, "user@example.com", PASSWORD).await, 401).await;
    let missing = format!("/api/v1/users/{}/disable", Uuid::new_v4());
    problem(
        authorized(&app, Method::POST, &missing, &admin["access_token"], None).await,
        404,
    )
    .await;
}

#[tokio::test]
async fn security_events_are_counted_in_the_metrics() {
    let app = TestApp::spawn().await;
    let session = signed_in(&app, "ada@example.com").await;
    problem(login(&app, "ada@example.com", "not the password at all").await, 401).await;
    problem(
        authorized(&app, Method::GET, "/api/v1/users", &session["access_token"], None).await,
        403,
    )
    .await;
    // The reuse ends the session, its access token with it.
    refresh(&app, &session["refresh_token"]).await;
    refresh(&app, &session["refresh_token"]).await;

    let text = app.get("/metrics").await.text().await.expect("metrics");

    for (event, count) in [
        ("login_succeeded", 1),
        ("login_failed", 1),
        ("refresh_token_reused", 1),
        ("permission_denied", 1),
    ] {
        let series = format!("security_events_total{}event=\"{event}\"{} {count}", '{', '}');
        assert!(text.contains(&series), "no {series}: {text}");
    }
}

#[tokio::test]
async fn access_tokens_carry_the_permissions_for_services_without_the_database() {
    let app = TestApp::spawn().await;
    let plain = signed_in(&app, "plain@example.com").await;
    signed_in(&app, "root@example.com").await;
    make_admin(&app, "root@example.com").await;
    let root = json(login(&app, "root@example.com", PASSWORD).await).await;

    let claims = async |session: &Value| {
        let token = session["access_token"].as_str().expect("a token");
        app.state.auth.tokens.verify_access(token).await.expect("valid")
    };
    assert!(claims(&plain).await.permissions().is_empty());
    let mut permissions = claims(&root).await.permissions();
    permissions.sort();
    let granted: Vec<String> = sqlx::query_scalar(
        "SELECT permission FROM role_permissions WHERE role = 'admin' ORDER BY permission COLLATE \"C\"",
    )
    .fetch_all(app.state.db.pool())
    .await
    .expect("the admin role's permissions");
    assert!(granted.len() >= 3, "{granted:?}");
    assert_eq!(permissions, granted);
}
