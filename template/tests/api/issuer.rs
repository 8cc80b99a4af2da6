//! A stand-in token issuer for the verifier's tests: it signs access tokens with keys of its
//! own and serves their public halves as a JWKS over real HTTP, and a test can rotate its key,
//! take it down, and count the requests for its key set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use service::auth::AuthConfig;
use service::auth::claims::ACCESS_TOKEN_TYPE;
use service::domain::scope::RESOURCES_ANY;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::callers::TestUser;
use crate::helpers::TestApp;

/// The `iss` and `aud` of the stand-in's tokens, as the service under test expects them.
pub const ISSUER: &str = "https://accounts.example.com";
pub const AUDIENCE: &str = "orders";

/// Ed25519 keys in PKCS#8 PEM: the first two the issuer signs with in turn, the third never
/// published.
const PRIVATE_KEYS: [&str; 3] = [
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFjc0kUiJ5wZKUhThCDCOUTzQfh/bT5T+Qkz+rmjmJXP\n-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINYcd2DBsPhJmcjrQCUrtPiXzZo/U8RT9yY1I+SM/MXv\n-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKIENftfejyCBXa28PjTozV4OaZLZaNkSabCSqkWXZdI\n-----END PRIVATE KEY-----\n",
];

/// A signing key with its public half as a JWK, named by its thumbprint.
pub struct Key {
    pub kid: String,
    pub private: EncodingKey,
    jwk: Jwk,
}

impl Key {
    pub fn new(index: usize) -> Self {
        let private = EncodingKey::from_ed_pem(PRIVATE_KEYS[index].as_bytes()).expect("an Ed25519 key");
        let mut jwk = Jwk::from_encoding_key(&private, Algorithm::EdDSA).expect("a JWK");
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).expect("a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Self { kid, private, jwk }
    }
}

#[derive(Default)]
struct Published {
    jwks: Mutex<Vec<Jwk>>,
    down: AtomicBool,
    requests: AtomicUsize,
}

pub struct TestIssuer {
    address: SocketAddr,
    /// Signing keys in turn; the last one signs.
    keys: Mutex<Vec<Key>>,
    published: Arc<Published>,
    server: JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    pub async fn start() -> Self {
        let published = Arc::new(Published::default());
        let router = Router::new()
            .route("/.well-known/jwks.json", get(key_set))
            .with_state(published.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("the issuer serves");
        });
        let issuer = Self {
            address,
            keys: Mutex::new(Vec::new()),
            published,
            server,
        };
        issuer.rotate();
        issuer
    }

    /// `[auth]` settings that trust this issuer.
    pub fn config(&self) -> AuthConfig {
        AuthConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            jwks_url: format!("http://{}/.well-known/jwks.json", self.address),
            ..AuthConfig::default()
        }
    }

    /// Signs with the next key from now on, publishing it beside the earlier ones.
    pub fn rotate(&self) {
        let mut keys = self.keys.lock().expect("keys");
        let key = Key::new(keys.len());
        self.published.jwks.lock().expect("jwks").push(key.jwk.clone());
        keys.push(key);
    }

    /// Whether the key set answers 503 instead.
    pub fn set_down(&self, down: bool) {
        self.published.down.store(down, Ordering::Relaxed);
    }

    /// Requests for the key set so far.
    pub fn requests(&self) -> usize {
        self.published.requests.load(Ordering::Relaxed)
    }

    /// An access token for `sub` with `scope`, as the issuer would sign it.
    pub fn token(&self, sub: Uuid, scope: &str) -> String {
        self.sign(&claims(sub, scope))
    }

    /// `claims` signed with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        let keys = self.keys.lock().expect("keys");
        let key = keys.last().expect("a key");
        sign(claims, Algorithm::EdDSA, ACCESS_TOKEN_TYPE, &key.kid, &key.private)
    }

    /// The key id the current key is published under.
    pub fn current_kid(&self) -> String {
        self.keys.lock().expect("keys").last().expect("a key").kid.clone()
    }
}

/// Valid claims for `sub`, for a test to bend one at a time.
pub fn claims(sub: Uuid, scope: &str) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 300, "jti": Uuid::new_v4(), "scope": scope,
    })
}

pub fn sign(claims: &Value, algorithm: Algorithm, typ: &str, kid: &str, key: &EncodingKey) -> String {
    let mut header = Header::new(algorithm);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

async fn key_set(State(published): State<Arc<Published>>) -> Response {
    published.requests.fetch_add(1, Ordering::Relaxed);
    if published.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = published.jwks.lock().expect("jwks").clone();
    axum::Json(JwkSet { keys }).into_response()
}

impl TestApp {
    /// A new account at the issuer and a token for it; `admin` holds what an issuer made from
    /// this template grants its administrators: `resources:any`, and `jobs:manage` (which a
    /// service without jobs ignores).
    #[allow(clippy::unused_async, reason = "tests await every setup step alike")]
    pub async fn user(&self, _email: &str, role: &str) -> TestUser {
        let id = Uuid::now_v7();
        let scope = if role == "admin" {
            &format!("{RESOURCES_ANY} jobs:manage")
        } else {
            ""
        };
        TestUser {
            id,
            token: self.issuer.token(id, scope),
        }
    }

    /// Another access token of the account `id`, of role `user`; async like the issuer's.
    #[allow(dead_code, clippy::unused_async, reason = "for realtime tests")]
    pub async fn token_for(&self, id: Uuid) -> String {
        self.issuer.token(id, "")
    }
}
