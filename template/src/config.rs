//! Typed settings: defaults, then `config/<environment>.toml` when present, then environment
//! variables (`APP_SECTION__KEY`, plus `DATABASE_URL`{% if redis %} and `REDIS_URL`{% endif %}).
//! Checked once at start so that a bad value stops the process with one line naming the
//! setting.

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
    #[serde(default)]
    pub telemetry: TelemetryConfig,
{%- if auth != "none" %}
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
{%- endif %}
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
{%- if jobs %}
    #[serde(default)]
    pub jobs: crate::jobs::JobsConfig,
{%- endif %}
{%- if jobs and example %}
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksConfig,
{%- endif %}
{%- if redis %}
    #[serde(default)]
    pub redis: crate::redis::RedisConfig,
{%- endif %}
{%- if realtime %}
    #[serde(default)]
    pub realtime: crate::realtime::RealtimeConfig,
{%- endif %}
{%- if graphql %}
    #[serde(default)]
    pub graphql: crate::http::graphql::GraphqlConfig,
{%- endif %}
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
    /// Longest a client may take to send its request headers, from connecting or from its last
    /// answer, before it is disconnected; so also how long an idle HTTP/1 connection stays open.
    pub header_read_timeout_secs: u64,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Open connections at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections one client address (an IPv6 network) may hold; more are closed at
    /// once. Trusted proxies, which carry many clients, are not limited.
    pub max_connections_per_client: usize,
    /// An HTTP/2 connection that starts no request for this long is closed gracefully (GOAWAY;
    /// requests in flight finish).
    pub idle_timeout_secs: u64,
    /// Requests handled at once; excess requests get 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// How long to keep serving after a shutdown signal, with readiness failing, so that load
    /// balancers stop routing here before the listener closes.
    pub shutdown_delay_secs: u64,
    /// How long in-flight requests may run on once the listener has closed.
    pub shutdown_timeout_secs: u64,
    /// Comma-separated origins allowed by CORS, e.g. `https://app.example.com`; empty allows none.
    pub cors_allowed_origins: String,
    /// Whether `/docs` and `/openapi.json` are served; production's settings turn them off.
    pub docs: bool,
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
            max_connections_per_client: 64,
            idle_timeout_secs: 60,
            max_concurrent_requests: 512,
            shutdown_delay_secs: 0,
            shutdown_timeout_secs: 15,
            cors_allowed_origins: String::new(),
            docs: true,
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

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
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

/// Request rate limits (per minute, with a minute's quota allowed as a burst) and the proxies
/// whose `X-Forwarded-For` is believed. With authentication, `[auth]` has the limits per
/// account and per sign-in target; `enabled` switches those too.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// API requests per client address (requests with a valid access token count against
    /// their account instead).
    pub per_ip_per_minute: u32,
    /// Comma-separated addresses or CIDR ranges of the proxies in front of the service, e.g.
    /// `10.0.0.0/8`. Only a request from one of them may name its client in `X-Forwarded-For`.
    pub trusted_proxies: String,
    /// The IPv6 network length that counts as one client address: a subscriber usually gets a
    /// whole /64 and may use any address in it.
    pub ipv6_prefix: u8,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_ip_per_minute: 300,
            trusted_proxies: String::new(),
            ipv6_prefix: 64,
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

/// Trace export; off unless an endpoint is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector's base URL, such as `http://otel-collector:4318`; spans go to
    /// its `/v1/traces`. Unset, nothing is exported and traces cost nothing.
    pub otlp_endpoint: Option<String>,
    /// Defaults to the package's name.
    pub service_name: Option<String>,
    /// The share of new traces recorded, 0 to 1; a trace a caller started follows the
    /// caller's decision.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
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
{%- if redis %}
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
{%- endif %}
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
                "APP_SERVER__MAX_CONNECTIONS_PER_CLIENT",
                server.max_connections_per_client as u64,
            ),
            ("APP_SERVER__IDLE_TIMEOUT_SECS", server.idle_timeout_secs),
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
            (
                "APP_RATE_LIMIT__PER_IP_PER_MINUTE",
                u64::from(self.rate_limit.per_ip_per_minute),
            ),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        if !(32..=128).contains(&self.rate_limit.ipv6_prefix) {
            bail!("APP_RATE_LIMIT__IPV6_PREFIX must be from 32 to 128");
        }
        for origin in server.cors_origins() {
            check_origin(origin)
                .with_context(|| format!("APP_SERVER__CORS_ALLOWED_ORIGINS: invalid origin {origin:?}"))?;
        }
{%- if auth != "none" %}
        self.auth.validate(self.environment)?;
{%- endif %}
{%- if jobs %}
        self.jobs.validate()?;
{%- endif %}
{%- if jobs and example %}
        self.webhooks.validate(self.environment)?;
{%- endif %}
{%- if realtime %}
        self.realtime.validate()?;
{%- endif %}
{%- if graphql %}
        self.graphql.validate()?;
{%- endif %}
{%- if redis %}
        self.redis.validate()?;
{%- endif %}
        self.rate_limit.trusted_proxies()?;
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            bail!("APP_TELEMETRY__OTLP_ENDPOINT must be the http(s) URL of an OTLP collector, not {endpoint:?}");
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            bail!("APP_TELEMETRY__SAMPLE_RATIO must be from 0 to 1");
        }
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

    #[test]
    fn an_origin_with_a_path_is_refused() {
        assert!(check_origin("https://app.example.com").is_ok());
        assert!(check_origin("http://localhost:3000").is_ok());
        assert!(check_origin("https://app.example.com/path").is_err());
        assert!(check_origin("app.example.com").is_err());
        assert!(check_origin("https://").is_err());
    }
}
