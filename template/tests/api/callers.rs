//! Callers with accounts, for services that check access tokens: a test account signed in,
//! whose token every later request of the test app carries. How an account and its token are
//! made depends on who issues tokens (`auth.rs` for the issuer, `issuer.rs` for the verifier).

use figment::Figment;
use figment::providers::{Format, Toml};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use service::auth::AuthConfig;
use uuid::Uuid;

use crate::helpers::TestApp;

/// An account of the test's own making.
pub struct TestUser {
    #[allow(dead_code, reason = "resource tests use it; a service without resources does not")]
    pub id: Uuid,
    pub token: String,
}

/// The `[auth]` settings of `config/development.toml`.
pub fn development_auth() -> AuthConfig {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/development.toml");
    Figment::from(Toml::file_exact(file))
        .extract_inner("auth")
        .expect("[auth] in config/development.toml")
}

impl TestApp {
    /// A service with an account of role `user` signed in: every request carries its token.
    #[allow(dead_code, reason = "resource tests use it; a service without resources does not")]
    pub async fn signed_in() -> (Self, TestUser) {
        let mut app = Self::spawn().await;
        let user = app.user("owner@example.com", "user").await;
        app.act_as(&user);
        (app, user)
    }

    /// Sends every later request with `user`'s access token.
    pub fn act_as(&mut self, user: &TestUser) {
        let value = HeaderValue::from_str(&format!("Bearer {}", user.token)).expect("a header value");
        self.headers.insert(AUTHORIZATION, value);
    }
}
