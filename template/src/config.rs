//! Typed settings: defaults, then `config/<environment>.toml` when present, then environment
//! variables (`APP_SECTION__KEY`, plus `DATABASE_URL`). Checked once at start so that a bad
//! value stops the process with one line naming the setting.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

/// Everything the service reads from its environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub log: LogConfig,
{%- if auth != "none" %}
    #[serde(default)]
    pub auth: AuthConfig,
{%- endif %}
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

/// Where the service runs; production tightens defaults such as the log format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// The HTTP listener and the limits that protect it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Longest a handler may run before the client gets 503.
    pub request_timeout_secs: u64,
    /// Longest a client may take to send its request headers before it is disconnected.
    pub header_read_timeout_secs: u64,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Open connections at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Requests handled at once; excess requests get 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// How long to keep serving after a shutdown signal, with readiness failing, so that load
    /// balancers stop routing here before the listener closes.
    pub shutdown_delay_secs: u64,
    /// How long in-flight requests may run on once the listener has closed.
    pub shutdown_timeout_secs: u64,
    /// Comma-separated origins allowed by CORS, e.g. `https://app.example.com`; empty allows none.
    pub cors_allowed_origins: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            request_timeout_secs: 30,
            header_read_timeout_secs: 10,
            body_limit_bytes: 1024 * 1024,
            max_connections: 1024,
            max_concurrent_requests: 512,
            shutdown_delay_secs: 0,
            shutdown_timeout_secs: 15,
            cors_allowed_origins: String::new(),
        }
    }
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// The configured CORS origins, one per entry, blanks dropped.
    pub fn cors_origins(&self) -> impl Iterator<Item = &str> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
    }
}

/// The PostgreSQL pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// From `DATABASE_URL`; may carry a password, so it never reaches a log line.
    pub url: Option<SecretString>,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a free connection before it gets 503.
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Server-side limit on any single statement.
    #[serde(default = "defaults::statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: defaults::max_connections(),
            acquire_timeout_ms: defaults::acquire_timeout_ms(),
            statement_timeout_ms: defaults::statement_timeout_ms(),
        }
    }
}

impl DatabaseConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

mod defaults {
    pub fn max_connections() -> u32 {
        10
    }

    pub fn acquire_timeout_ms() -> u64 {
        3_000
    }

    pub fn statement_timeout_ms() -> u64 {
        5_000
    }
}
{%- if auth == "issuer" %}

/// Access tokens: who issues them, for which API, for how long, and the keys.
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
        }
    }
}

impl AuthConfig {
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_lifetimes(&self) -> crate::db::refresh_tokens::Lifetimes {
        crate::db::refresh_tokens::Lifetimes {
            idle: Duration::from_secs(self.refresh_token_idle_secs),
            absolute: Duration::from_secs(self.refresh_token_absolute_secs),
        }
    }

    pub fn password_hashing_concurrency(&self) -> usize {
        self.password_hashing_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }
}
{%- elsif auth == "verifier" %}

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
}
{%- endif %}

/// Request rate limits (per minute, with a minute's quota allowed as a burst) and the proxies
/// whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
{%- if auth != "none" %}
    /// Requests without a valid access token, per client address.
    pub per_ip_per_minute: u32,
    /// Requests with a valid access token, per account.
    pub per_user_per_minute: u32,
{%- else %}
    /// Requests per client address.
    pub per_ip_per_minute: u32,
{%- endif %}
{%- if auth == "issuer" %}
    /// Sign-in and registration attempts per client address.
    pub sign_in_per_ip_per_minute: u32,
    /// Sign-in and registration attempts per email address.
    pub sign_in_per_account_per_minute: u32,
{%- endif %}
    /// Comma-separated addresses or CIDR ranges of the proxies in front of the service, e.g.
    /// `10.0.0.0/8`. Only a request from one of them may name its client in `X-Forwarded-For`.
    pub trusted_proxies: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip_per_minute: 300,
{%- if auth != "none" %}
            per_user_per_minute: 600,
{%- endif %}
{%- if auth == "issuer" %}
            sign_in_per_ip_per_minute: 20,
            sign_in_per_account_per_minute: 10,
{%- endif %}
            trusted_proxies: String::new(),
        }
    }
}

impl RateLimitConfig {
    /// The trusted proxy ranges; a single address is a range of one.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<IpNet>> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| {
                        format!("APP_RATE_LIMIT__TRUSTED_PROXIES: {entry:?} is not an address or CIDR range")
                    })
            })
            .collect()
    }
}

/// Log verbosity and shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `info,sqlx=warn`; defaults to `info`.
    pub filter: Option<String>,
    /// Defaults to `json` in production and `pretty` in development.
    pub format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Config {
    /// Reads the configuration from `config_dir` and the process environment.
    pub fn load(config_dir: &Path) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Selector {
            #[serde(default)]
            environment: Environment,
        }
        let Selector { environment } = Figment::new()
            .merge(Env::prefixed("APP_").only(&["environment"]))
            .extract()
            .map_err(|err| anyhow::anyhow!(describe(&err)))?;
        let file = config_dir.join(match environment {
            Environment::Development => "development.toml",
            Environment::Production => "production.toml",
        });
        let mut figment = Figment::new();
        if file.exists() {
            figment = figment.merge(Toml::file_exact(&file));
        }
        let config: Self = figment
            // Only APP_SECTION__KEY names are settings: Kubernetes injects variables such as
            // APP_PORT and APP_SERVICE_HOST for a Service named "app", which must not stop the
            // service, while a misspelt APP_SERVER__PROT still should.
            .merge(
                Env::prefixed("APP_")
                    .filter(|key| key.as_str().eq_ignore_ascii_case("environment") || key.as_str().contains("__"))
                    .split("__"),
            )
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .extract()
            .map_err(|err| anyhow::anyhow!(describe(&err)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot, naming the environment variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        let server = &self.server;
        if server.port == 0 {
            bail!("APP_SERVER__PORT must be between 1 and 65535");
        }
        for (name, value) in [
            ("APP_SERVER__REQUEST_TIMEOUT_SECS", server.request_timeout_secs),
            ("APP_SERVER__HEADER_READ_TIMEOUT_SECS", server.header_read_timeout_secs),
            ("APP_SERVER__BODY_LIMIT_BYTES", server.body_limit_bytes as u64),
            ("APP_SERVER__MAX_CONNECTIONS", server.max_connections as u64),
            (
                "APP_SERVER__MAX_CONCURRENT_REQUESTS",
                server.max_concurrent_requests as u64,
            ),
            (
                "APP_DATABASE__MAX_CONNECTIONS",
                u64::from(self.database.max_connections),
            ),
            ("APP_DATABASE__ACQUIRE_TIMEOUT_MS", self.database.acquire_timeout_ms),
            ("APP_DATABASE__STATEMENT_TIMEOUT_MS", self.database.statement_timeout_ms),
{%- if auth == "issuer" %}
            ("APP_AUTH__ACCESS_TOKEN_TTL_SECS", self.auth.access_token_ttl_secs),
            ("APP_AUTH__REFRESH_TOKEN_IDLE_SECS", self.auth.refresh_token_idle_secs),
            (
                "APP_AUTH__REFRESH_TOKEN_ABSOLUTE_SECS",
                self.auth.refresh_token_absolute_secs,
            ),
            (
                "APP_AUTH__PASSWORD_HASHING_CONCURRENCY",
                self.auth.password_hashing_concurrency() as u64,
            ),
{%- elsif auth == "verifier" %}
            ("APP_AUTH__JWKS_MAX_AGE_SECS", self.auth.jwks_max_age_secs),
            ("APP_AUTH__JWKS_MIN_REFETCH_SECS", self.auth.jwks_min_refetch_secs),
            ("APP_AUTH__JWKS_TIMEOUT_MS", self.auth.jwks_timeout_ms),
{%- endif %}
            (
                "APP_RATE_LIMIT__PER_IP_PER_MINUTE",
                u64::from(self.rate_limit.per_ip_per_minute),
            ),
{%- if auth != "none" %}
            (
                "APP_RATE_LIMIT__PER_USER_PER_MINUTE",
                u64::from(self.rate_limit.per_user_per_minute),
            ),
{%- endif %}
{%- if auth == "issuer" %}
            (
                "APP_RATE_LIMIT__SIGN_IN_PER_IP_PER_MINUTE",
                u64::from(self.rate_limit.sign_in_per_ip_per_minute),
            ),
            (
                "APP_RATE_LIMIT__SIGN_IN_PER_ACCOUNT_PER_MINUTE",
                u64::from(self.rate_limit.sign_in_per_account_per_minute),
            ),
{%- endif %}
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        for origin in server.cors_origins() {
            check_origin(origin)
                .with_context(|| format!("APP_SERVER__CORS_ALLOWED_ORIGINS: invalid origin {origin:?}"))?;
        }
{%- if auth == "issuer" %}
        // OWASP's minimum for Argon2id; development may go lower for speed, production may not.
        if self.environment == Environment::Production
            && (self.auth.password_memory_kib < 19_456 || self.auth.password_iterations < 2)
        {
            bail!(
                "APP_AUTH__PASSWORD_MEMORY_KIB must be at least 19456 and APP_AUTH__PASSWORD_ITERATIONS at least 2 in production"
            );
        }
{%- endif %}
        self.rate_limit.trusted_proxies()?;
        if self.database.url.is_none() {
            bail!("DATABASE_URL is not set: export it or put it in .env (see .env.example)");
        }
        Ok(())
    }
}

/// An origin is a scheme and a host with an optional port, nothing more.
fn check_origin(origin: &str) -> anyhow::Result<()> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .context("must start with http:// or https://")?;
    let valid = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        bail!("must be scheme://host[:port] without a path");
    }
    Ok(())
}

/// Renders a figment error on one line; figment already names the key and its source.
fn describe(err: &figment::Error) -> String {
    let text = err.to_string().replace('\n', "; ");
    format!("invalid configuration: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
{%- if auth == "issuer" %}

    #[test]
    fn production_refuses_password_hashing_below_the_owasp_minimum() {
        let config = |environment, memory| Config {
            environment,
            server: ServerConfig::default(),
            database: DatabaseConfig {
                url: Some("postgres://localhost/app".into()),
                ..DatabaseConfig::default()
            },
            log: LogConfig::default(),
            auth: AuthConfig {
                password_memory_kib: memory,
                ..AuthConfig::default()
            },
            rate_limit: RateLimitConfig::default(),
        };

        let error = config(Environment::Production, 1024).validate().expect_err("refused");
        assert!(error.to_string().contains("APP_AUTH__PASSWORD_MEMORY_KIB"), "{error}");
        assert!(config(Environment::Development, 1024).validate().is_ok());
        assert!(config(Environment::Production, 19_456).validate().is_ok());
    }
{%- endif %}

    #[test]
    fn an_origin_with_a_path_is_refused() {
        assert!(check_origin("https://app.example.com").is_ok());
        assert!(check_origin("http://localhost:3000").is_ok());
        assert!(check_origin("https://app.example.com/path").is_err());
        assert!(check_origin("app.example.com").is_err());
        assert!(check_origin("https://").is_err());
    }
}
