//! Access tokens and their keys: the published key set, key rotation, and every way a token
//! can be forged or misused (other key, tampering, `none` and HMAC algorithm confusion, wrong
//! type, issuer or audience, expiry, not-before, missing claims).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use service::auth::AuthConfig;
use service::auth::claims::ACCESS_TOKEN_TYPE;
use service::auth::keys::DEVELOPMENT_KEY_ID;
use service::auth::{InvalidToken, Tokens};
use service::config::Environment;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::callers::development_auth;
use crate::helpers::TestApp;

/// A second key pair, for tests only: a stranger's key, or the next key in a rotation.
pub const OTHER_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMkVH+XuSFbmdD+OdX4HkTHKYxB3toJrpF9DFO2BHwKW
-----END PRIVATE KEY-----
";
const OTHER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAyPx1CBDf5GviRyCdZnQ7XHEei76pPqMeKo1K6wXA6EY=
-----END PUBLIC KEY-----
";
/// The development key's public half, as `openssl pkey -pubout` prints it.
const DEVELOPMENT_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAEvXKH+8xS/nR9fyYm1lOTo8lvtqDOSaH0c82WfpUbso=
-----END PUBLIC KEY-----
";

fn tokens(configure: impl FnOnce(&mut AuthConfig)) -> Tokens {
    let mut config = development_auth();
    configure(&mut config);
    Tokens::new(&config, Environment::Development).expect("valid keys")
}

fn development_key() -> EncodingKey {
    let config = development_auth();
    let pem = secrecy::ExposeSecret::expose_secret(config.signing_key.as_ref().expect("a development key")).to_owned();
    EncodingKey::from_ed_pem(pem.as_bytes()).expect("an Ed25519 key")
}

/// Claims as the service issues them, for tests to bend one at a time.
fn valid_claims() -> Value {
    let config = development_auth();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "sub": Uuid::new_v4(), "iss": config.issuer, "aud": config.audience,
        "iat": now, "nbf": now, "exp": now + 300, "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
    })
}

fn sign(claims: &Value, algorithm: Algorithm, typ: &str, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

fn signed(claims: &Value) -> String {
    sign(
        claims,
        Algorithm::EdDSA,
        ACCESS_TOKEN_TYPE,
        DEVELOPMENT_KEY_ID,
        &development_key(),
    )
}

#[tokio::test]
async fn an_issued_token_verifies_with_its_claims_and_lifetime() {
    let tokens = tokens(|_| {});
    let user = Uuid::new_v4();

    let token = tokens.issue_access(user, Uuid::new_v4(), &[]).expect("issue");
    let claims = tokens.verify_access(&token).await.expect("valid");

    assert_eq!(claims.sub, user);
    assert_eq!(claims.exp - claims.iat, 15 * 60);
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(DEVELOPMENT_KEY_ID));
}

#[tokio::test]
async fn the_issuer_honours_a_token_only_within_a_live_session_of_its_account() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@example.com", "user").await;
    let grace = app.user("grace@example.com", "user").await;
    let status = |token: String| async {
        let request = app.request(Method::GET, "/api/v1/auth/me").bearer_auth(token);
        request.send().await.expect("request").status().as_u16()
    };
    let session_of = |token: &str| {
        let token = token.to_owned();
        let tokens = &app.state.auth.tokens;
        async move {
            tokens
                .verify_access(&token)
                .await
                .expect("valid")
                .sid
                .expect("a session")
        }
    };
    assert_eq!(status(ada.token.clone()).await, 200);
    let mut claims = valid_claims();
    claims["sub"] = json!(ada.id);

    // Signed with the service's own key and current, yet naming no session, an unknown one,
    // or another account's.
    claims.as_object_mut().expect("claims").remove("sid");
    assert_eq!(status(signed(&claims)).await, 401);
    claims["sid"] = json!(Uuid::new_v4());
    assert_eq!(status(signed(&claims)).await, 401);
    claims["sid"] = json!(session_of(&grace.token).await);
    assert_eq!(status(signed(&claims)).await, 401);
    claims["sid"] = json!(session_of(&ada.token).await);
    assert_eq!(status(signed(&claims)).await, 200);
}

#[test]
fn the_development_key_id_matches_the_development_key() {
    let tokens = tokens(|_| {});
    let (kid, _) = tokens.keys().signing();
    assert_eq!(kid, DEVELOPMENT_KEY_ID);
}

#[test]
fn the_keys_print_their_ids_and_never_the_private_key() {
    let config = development_auth();
    let pem = secrecy::ExposeSecret::expose_secret(config.signing_key.as_ref().expect("a development key")).to_owned();
    let secret = pem
        .lines()
        .find(|line| !line.is_empty() && !line.starts_with("-----"))
        .expect("the key's base64");

    let printed = format!("{:?}", tokens(|_| {}));

    assert!(printed.contains(DEVELOPMENT_KEY_ID), "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let tokens = tokens(|_| {});
    let stranger = EncodingKey::from_ed_pem(OTHER_PRIVATE_KEY.as_bytes()).expect("key");
    let claims = valid_claims();

    // Signed by another key under our key id.
    let forged = sign(
        &claims,
        Algorithm::EdDSA,
        ACCESS_TOKEN_TYPE,
        DEVELOPMENT_KEY_ID,
        &stranger,
    );
    assert_eq!(
        tokens.verify_access(&forged).await,
        Err(InvalidToken::Rejected("bad signature"))
    );
    // Signed by another key under its own id.
    let foreign = sign(&claims, Algorithm::EdDSA, ACCESS_TOKEN_TYPE, "someone-else", &stranger);
    assert_eq!(tokens.verify_access(&foreign).await, Err(InvalidToken::UnknownKey));

    // A genuine token whose payload was swapped for another user's.
    let genuine = signed(&claims);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let mut other = claims.clone();
    other["sub"] = json!(Uuid::new_v4());
    let payload = base64_url(&serde_json::to_vec(&other).expect("json"));
    parts[1] = &payload;
    assert_eq!(
        tokens.verify_access(&parts.join(".")).await,
        Err(InvalidToken::Rejected("bad signature"))
    );

    // `alg: none` with no signature.
    let header = base64_url(br#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{header}.{}.", base64_url(&serde_json::to_vec(&claims).expect("json")));
    assert_eq!(tokens.verify_access(&unsigned).await, Err(InvalidToken::Malformed));

    // HS256 keyed with the public key: the classic algorithm confusion.
    let confused = sign(
        &claims,
        Algorithm::HS256,
        ACCESS_TOKEN_TYPE,
        DEVELOPMENT_KEY_ID,
        &EncodingKey::from_secret(DEVELOPMENT_PUBLIC_KEY.as_bytes()),
    );
    assert_eq!(
        tokens.verify_access(&confused).await,
        Err(InvalidToken::Rejected("algorithm not allowed"))
    );

    assert_eq!(tokens.verify_access("not a token").await, Err(InvalidToken::Malformed));
}

#[tokio::test]
async fn tokens_of_another_type_issuer_audience_or_time_are_refused() {
    let tokens = tokens(|_| {});
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let with = |key: &str, value: Value| {
        let mut claims = valid_claims();
        claims[key] = value;
        signed(&claims)
    };

    let refresh_typed = sign(
        &valid_claims(),
        Algorithm::EdDSA,
        "JWT",
        DEVELOPMENT_KEY_ID,
        &development_key(),
    );
    assert_eq!(tokens.verify_access(&refresh_typed).await, Err(InvalidToken::WrongType));
    assert_eq!(
        tokens.verify_access(&with("aud", json!("another-api"))).await,
        Err(InvalidToken::Rejected("wrong audience"))
    );
    assert_eq!(
        tokens
            .verify_access(&with("iss", json!("https://elsewhere.example")))
            .await,
        Err(InvalidToken::Rejected("wrong issuer"))
    );
    // Past the 30-second leeway on either side.
    assert_eq!(
        tokens.verify_access(&with("exp", json!(now - 60))).await,
        Err(InvalidToken::Expired)
    );
    assert_eq!(
        tokens.verify_access(&with("nbf", json!(now + 60))).await,
        Err(InvalidToken::Rejected("not yet valid"))
    );
    let mut claims = valid_claims();
    claims.as_object_mut().expect("object").remove("nbf");
    assert_eq!(
        tokens.verify_access(&signed(&claims)).await,
        Err(InvalidToken::Malformed)
    );
}

#[tokio::test]
async fn after_a_rotation_tokens_of_the_previous_key_still_verify() {
    let before = tokens(|_| {});
    let old_token = before.issue_access(Uuid::new_v4(), Uuid::new_v4(), &[]).expect("issue");
    let after = tokens(|config| {
        config.signing_key = Some(OTHER_PRIVATE_KEY.into());
        config.verification_keys = DEVELOPMENT_PUBLIC_KEY.to_owned();
    });

    assert!(after.verify_access(&old_token).await.is_ok());
    let new_token = after.issue_access(Uuid::new_v4(), Uuid::new_v4(), &[]).expect("issue");
    assert!(after.verify_access(&new_token).await.is_ok());
    // The service that never knew the new key refuses what it signs.
    assert_eq!(before.verify_access(&new_token).await, Err(InvalidToken::UnknownKey));
}

#[test]
fn unusable_keys_and_the_development_key_in_production_are_refused() {
    let error = |configure: fn(&mut AuthConfig), environment| {
        let mut config = development_auth();
        configure(&mut config);
        format!("{:#}", Tokens::new(&config, environment).expect_err("refused"))
    };

    assert!(error(|_| {}, Environment::Production).contains("is the development key"));
    assert!(
        error(
            |config| {
                config.signing_key = Some(OTHER_PRIVATE_KEY.into());
                config.verification_keys = DEVELOPMENT_PUBLIC_KEY.to_owned();
            },
            Environment::Production
        )
        .contains("APP_AUTH__VERIFICATION_KEYS: key 1 is the development key")
    );
    assert!(
        error(|config| config.signing_key = None, Environment::Development)
            .contains("APP_AUTH__SIGNING_KEY is not set")
    );
    assert!(
        error(
            |config| config.signing_key = Some(OTHER_PUBLIC_KEY.into()),
            Environment::Development
        )
        .contains("not an Ed25519 private key")
    );
    assert!(
        error(
            |config| config.verification_keys = format!("{OTHER_PUBLIC_KEY}garbage"),
            Environment::Development
        )
        .contains("key 2 is not an Ed25519 public key")
    );
}

#[tokio::test]
async fn the_key_set_publishes_every_verification_key_and_may_be_cached() {
    let app = TestApp::spawn_with(
        |config| config.auth.verification_keys = OTHER_PUBLIC_KEY.to_owned(),
        axum::Router::new(),
    )
    .await;

    let response = app.get("/.well-known/jwks.json").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let body: Value = response.json().await.expect("json");
    let keys = body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{body}");
    assert_eq!(keys[0]["kid"], DEVELOPMENT_KEY_ID);
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "a private part was published: {key}");
    }
    // The published key verifies tokens the service issues.
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(keys[0]["x"].as_str().expect("x")).expect("key");
    let token = app
        .state
        .auth
        .tokens
        .issue_access(Uuid::new_v4(), Uuid::new_v4(), &[])
        .expect("issue");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[&app.state.config.auth.audience]);
    assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok());
}

fn base64_url(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}
