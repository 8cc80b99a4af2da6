//! The issuer's settings (`[auth]`, `APP_AUTH__*`) and what it runs with: the signing keys,
//! password hashing, and the limits that only exist because there are accounts (per account,
//! and per sign-in target).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::sessions::{Sessions, Watch};
use super::{AccessClaims, Passwords, Tokens};
use crate::config::Environment;
use crate::db::{Database, DbError};
use crate::domain::user::SessionLifetimes;
use crate::limits::{AddressLimit, Limit, Limited, Limits};

/// Access tokens: who issues them, for which API, for how long, and the keys; sessions,
/// password hashing, and the limits per account.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` of the tokens this service issues and accepts, such as its public base URL.
    pub issuer: String,
    /// The `aud`: the API the tokens are for.
    pub audience: String,
    pub access_token_ttl_secs: u64,
    /// The Ed25519 private key (PKCS#8 PEM) that signs new tokens. A secret: in production it
    /// comes from the environment only, and the development key is refused.
    pub signing_key: Option<SecretString>,
    /// Public keys (PEM, one after another) still accepted, such as the previous signing key
    /// while tokens it signed may still be alive.
    pub verification_keys: String,
    /// A refresh token unused for this long lapses.
    pub refresh_token_idle_secs: u64,
    /// No session outlives this, however often it is refreshed.
    pub refresh_token_absolute_secs: u64,
    /// Argon2id memory cost; the default is OWASP's minimum for Argon2id.
    pub password_memory_kib: u32,
    pub password_iterations: u32,
    pub password_parallelism: u32,
    /// Passwords hashed at once; defaults to the number of CPUs.
    pub password_hashing_concurrency: Option<usize>,
    /// How long a login may wait for a hashing slot before it gets 503.
    pub password_queue_timeout_ms: u64,
    /// Requests with a valid access token, per account (instead of per address).
    pub per_account_per_minute: u32,
    /// Sign-in and registration attempts per client address.
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-in and registration attempts per email address.
    pub sign_in_per_account_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: env!("CARGO_PKG_NAME").to_owned(),
            audience: env!("CARGO_PKG_NAME").to_owned(),
            access_token_ttl_secs: 15 * 60,
            signing_key: None,
            verification_keys: String::new(),
            refresh_token_idle_secs: 14 * 24 * 3600,
            refresh_token_absolute_secs: 30 * 24 * 3600,
            password_memory_kib: 19_456,
            password_iterations: 2,
            password_parallelism: 1,
            password_hashing_concurrency: None,
            password_queue_timeout_ms: 1_000,
            per_account_per_minute: 600,
            sign_in_per_ip_per_minute: 20,
            sign_in_per_account_per_minute: 10,
        }
    }
}

impl AuthConfig {
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn session_lifetimes(&self) -> SessionLifetimes {
        SessionLifetimes {
            idle: Duration::from_secs(self.refresh_token_idle_secs),
            absolute: Duration::from_secs(self.refresh_token_absolute_secs),
        }
    }

    pub fn password_hashing_concurrency(&self) -> usize {
        self.password_hashing_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Checks what types alone cannot, naming the environment variable to fix.
    pub fn validate(&self, environment: Environment) -> anyhow::Result<()> {
        for (name, value) in [
            ("APP_AUTH__ACCESS_TOKEN_TTL_SECS", self.access_token_ttl_secs),
            ("APP_AUTH__REFRESH_TOKEN_IDLE_SECS", self.refresh_token_idle_secs),
            (
                "APP_AUTH__REFRESH_TOKEN_ABSOLUTE_SECS",
                self.refresh_token_absolute_secs,
            ),
            (
                "APP_AUTH__PASSWORD_HASHING_CONCURRENCY",
                self.password_hashing_concurrency() as u64,
            ),
            (
                "APP_AUTH__PER_ACCOUNT_PER_MINUTE",
                u64::from(self.per_account_per_minute),
            ),
            (
                "APP_AUTH__SIGN_IN_PER_IP_PER_MINUTE",
                u64::from(self.sign_in_per_ip_per_minute),
            ),
            (
                "APP_AUTH__SIGN_IN_PER_ACCOUNT_PER_MINUTE",
                u64::from(self.sign_in_per_account_per_minute),
            ),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        // OWASP's minimum for Argon2id; development may go lower for speed, production may not.
        if environment == Environment::Production && (self.password_memory_kib < 19_456 || self.password_iterations < 2)
        {
            bail!(
                "APP_AUTH__PASSWORD_MEMORY_KIB must be at least 19456 and APP_AUTH__PASSWORD_ITERATIONS at least 2 in production"
            );
        }
        Ok(())
    }
}

/// What authentication runs with, shared by every request.
#[derive(Debug)]
pub struct Auth {
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub per_account: Limit<Uuid>,
    pub sign_in: SignInLimits,
    sessions: Arc<Sessions>,
    _watch: Watch,
}

impl Auth {
    /// Fails when the signing keys or the password hashing settings are unusable. Starts
    /// listening for account changes on `db`, so it must be called inside a Tokio runtime.
    pub fn new(config: &AuthConfig, limits: &Limits, environment: Environment, db: &Database) -> anyhow::Result<Self> {
        let sessions = Arc::new(Sessions::default());
        Ok(Self {
            _watch: sessions.watch(db),
            sessions,
            tokens: Tokens::new(config, environment)?,
            passwords: Passwords::new(config)?,
            per_account: limits.per_key("per account", config.per_account_per_minute),
            sign_in: SignInLimits {
                per_address: limits.per_address("sign-ins per client address", config.sign_in_per_ip_per_minute),
                per_account: limits.per_key("sign-ins per account", config.sign_in_per_account_per_minute),
            },
        })
    }

    /// The permissions of the account a verified token names while the token's session is
    /// live; `None` when the account may no longer act. Remembered between requests, and
    /// forgotten on every replica within a second of a change (see `sessions`), so that a
    /// disabled account, a revoked role or an ended session stops working at once rather than
    /// when its token expires.
    pub async fn permissions(&self, db: &Database, claims: &AccessClaims) -> Result<Option<Arc<[String]>>, DbError> {
        // A token of ours names its session; one without is not ours to honour.
        let Some(session) = claims.sid else {
            return Ok(None);
        };
        if let Some(permissions) = self.sessions.get(claims.sub, session) {
            return Ok(Some(permissions));
        }
        let epoch = self.sessions.epoch();
        let mut conn = db.acquire().await?;
        let live = crate::db::users::live_session(&mut conn, claims.sub, session).await?;
        conn.release();
        let Some(live) = live else {
            return Ok(None);
        };
        self.sessions.remember(epoch, claims.sub, session, &live);
        Ok(Some(live.permissions))
    }

    /// How many sessions this replica remembers now.
    pub fn remembered_sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// The limits on sign-in and registration attempts.
#[derive(Debug)]
pub struct SignInLimits {
    per_address: AddressLimit,
    per_account: Limit<String>,
}

impl SignInLimits {
    /// An attempt for `email` from `ip`: both limits must allow it, so that neither one
    /// address guessing many accounts nor many addresses guessing one succeed.
    pub async fn check(&self, ip: IpAddr, email: &str) -> Result<(), Limited> {
        self.per_address.check(ip).await?;
        self.per_account.check(&email.trim().to_lowercase()).await
    }

    /// An attempt to prove the password of the signed-in account `id` (changing it): the same
    /// limits, so that a stolen access token buys no more guesses than a sign-in form.
    pub async fn check_signed_in(&self, ip: IpAddr, id: Uuid) -> Result<(), Limited> {
        self.per_address.check(ip).await?;
        // A UUID never equals a normalised email address, so the two keep apart buckets.
        self.per_account.check(&id.to_string()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_password_hashing_below_the_owasp_minimum() {
        let config = |memory, iterations| AuthConfig {
            password_memory_kib: memory,
            password_iterations: iterations,
            ..AuthConfig::default()
        };

        let error = config(1024, 2).validate(Environment::Production).expect_err("refused");
        assert!(error.to_string().contains("APP_AUTH__PASSWORD_MEMORY_KIB"), "{error}");
        let error = config(19_456, 1)
            .validate(Environment::Production)
            .expect_err("refused");
        assert!(error.to_string().contains("APP_AUTH__PASSWORD_ITERATIONS"), "{error}");
        assert!(config(1024, 1).validate(Environment::Development).is_ok());
        assert!(config(19_456, 2).validate(Environment::Production).is_ok());
        assert!(config(19_456, 3).validate(Environment::Production).is_ok());
    }

    #[test]
    fn passwords_are_hashed_on_every_cpu_unless_configured() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(AuthConfig::default().password_hashing_concurrency(), cpus);
        let configured = AuthConfig {
            password_hashing_concurrency: Some(cpus + 3),
            ..AuthConfig::default()
        };
        assert_eq!(configured.password_hashing_concurrency(), cpus + 3);
    }

    #[test]
    fn a_zero_limit_is_refused_with_its_variable_named() {
        let config = AuthConfig {
            sign_in_per_ip_per_minute: 0,
            ..AuthConfig::default()
        };

        let error = config.validate(Environment::Development).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "APP_AUTH__SIGN_IN_PER_IP_PER_MINUTE must be greater than 0"
        );
    }
}
