//! The verifier's settings (`[auth]`, `APP_AUTH__*`): whose access tokens to accept and where
//! its keys are, and what it runs with: the issuer's cached keys and the limit per account.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;
use uuid::Uuid;

use super::{AccessClaims, Tokens};
use crate::config::Environment;
use crate::db::{Database, DbError};
use crate::limits::{Limit, Limits};

/// Access tokens issued by another service: whose, for which API, and where its keys are.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` the issuer puts in its tokens.
    pub issuer: String,
    /// The `aud`: the API the tokens are for.
    pub audience: String,
    /// Where the issuer publishes its public keys (JWKS), e.g.
    /// `https://accounts.example.com/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Keys older than this are fetched again on the next token.
    pub jwks_max_age_secs: u64,
    /// Fetches happen at most this often, whatever tokens arrive.
    pub jwks_min_refetch_secs: u64,
    pub jwks_timeout_ms: u64,
    /// Production refuses an `http://` key set unless this is set, for an issuer reached only
    /// inside a trusted network.
    pub jwks_allow_http: bool,
    /// Requests with a valid access token, per account (instead of per address).
    pub per_account_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: env!("CARGO_PKG_NAME").to_owned(),
            jwks_url: String::new(),
            jwks_max_age_secs: 300,
            jwks_min_refetch_secs: 30,
            jwks_timeout_ms: 2_000,
            jwks_allow_http: false,
            per_account_per_minute: 600,
        }
    }
}

impl AuthConfig {
    pub fn jwks_max_age(&self) -> Duration {
        Duration::from_secs(self.jwks_max_age_secs)
    }

    pub fn jwks_min_refetch(&self) -> Duration {
        Duration::from_secs(self.jwks_min_refetch_secs)
    }

    pub fn jwks_timeout(&self) -> Duration {
        Duration::from_millis(self.jwks_timeout_ms)
    }

    /// Checks what types alone cannot, naming the environment variable to fix. The issuer and
    /// the key set's URL are checked when the keys are set up (`Tokens::new`).
    pub fn validate(&self, _environment: Environment) -> anyhow::Result<()> {
        for (name, value) in [
            ("APP_AUTH__JWKS_MAX_AGE_SECS", self.jwks_max_age_secs),
            ("APP_AUTH__JWKS_MIN_REFETCH_SECS", self.jwks_min_refetch_secs),
            ("APP_AUTH__JWKS_TIMEOUT_MS", self.jwks_timeout_ms),
            (
                "APP_AUTH__PER_ACCOUNT_PER_MINUTE",
                u64::from(self.per_account_per_minute),
            ),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        Ok(())
    }
}

/// What authentication runs with, shared by every request.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Tokens,
    pub per_account: Limit<Uuid>,
}

impl Auth {
    /// Fails when the token settings are unusable.
    pub fn new(config: &AuthConfig, limits: &Limits, environment: Environment, _db: &Database) -> anyhow::Result<Self> {
        Ok(Self {
            tokens: Tokens::new(config, environment)?,
            per_account: limits.per_key("per account", config.per_account_per_minute),
        })
    }

    /// The permissions a verified token carries in its `scope`: as current as the token,
    /// which lives minutes, since the accounts live at the issuer.
    #[allow(
        clippy::unused_async,
        reason = "one signature with the issuer's, which reads its database"
    )]
    pub async fn permissions(&self, _db: &Database, claims: &AccessClaims) -> Result<Option<Arc<[String]>>, DbError> {
        Ok(Some(claims.permissions().into()))
    }
}
