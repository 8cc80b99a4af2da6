//! Redis, for what every replica must share: the rate limits ([`limits`]), a read cache
//! ([`cache`]) and messages between replicas ([`pubsub`]). The service works without it: a
//! command that fails or takes longer than the configured timeout counts as Redis being
//! unavailable, each use falls back to what the instance can do alone, and for a short rest
//! after a failure no command is sent at all, so an outage costs a request nothing rather
//! than a timeout each. One connection, multiplexed and reconnected by the manager.

pub mod cache;
pub mod limits;
mod metrics;
pub mod pubsub;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, RedisResult};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::metrics::RedisMetrics;

/// The settings (`[redis]`, `APP_REDIS__*`, and `REDIS_URL`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// From `REDIS_URL`: `redis://` or `rediss://` (TLS), with the username and password
    /// when the server wants them; never logged.
    pub url: Option<SecretString>,
    /// A command unanswered after this long counts as failed. Requests wait for Redis, so
    /// this bounds what an unreachable Redis adds to a request.
    pub command_timeout_ms: u64,
    /// Every key starts with this and a colon, so services can share one Redis.
    pub key_prefix: String,
    /// Off, every read goes to the database; Redis still carries the limits and messages.
    pub cache: bool,
    /// How long a cached read lives at most (a tenth is taken off at random, so that keys
    /// filled together do not expire together).
    pub cache_ttl_secs: u64,
    /// How long "there is no such record" is remembered.
    pub cache_miss_ttl_secs: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            command_timeout_ms: 50,
            key_prefix: env!("CARGO_PKG_NAME").to_owned(),
            cache: true,
            cache_ttl_secs: 60,
            cache_miss_ttl_secs: 5,
        }
    }
}

impl RedisConfig {
    /// Checks what types alone cannot, naming the environment variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("APP_REDIS__COMMAND_TIMEOUT_MS", self.command_timeout_ms),
            ("APP_REDIS__CACHE_TTL_SECS", self.cache_ttl_secs),
            ("APP_REDIS__CACHE_MISS_TTL_SECS", self.cache_miss_ttl_secs),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            bail!("APP_REDIS__KEY_PREFIX must be a non-empty word");
        }
        if let Some(url) = &self.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                // Not the URL itself: it may carry a password.
                bail!("REDIS_URL must start with redis:// or rediss://");
            }
        }
        Ok(())
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// How long no command is sent after one failed. Short, so that Redis is back in use within
/// a second of coming back.
const REST_AFTER_FAILURE: Duration = Duration::from_millis(500);

/// Redis did not answer in time, or answered with an error; the caller does without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("redis is unavailable")]
pub struct Unavailable;

/// The shared handle: cheap to clone.
#[derive(Clone)]
pub struct Redis(Arc<Inner>);

struct Inner {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: String,
    /// Milliseconds after `epoch` until which no command is sent.
    resting_until: AtomicU64,
    epoch: Instant,
    /// Whether the last command failed, so that an outage and a recovery are logged once.
    down: AtomicBool,
    metrics: RedisMetrics,
    subscribers: pubsub::Subscribers,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.0.prefix)
            .field("down", &self.0.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Sets up the connection without waiting for it: the service starts, and serves, while
    /// Redis is still unreachable. Fails only when `REDIS_URL` is missing or malformed. Must
    /// be called inside a Tokio runtime.
    pub fn new(config: &RedisConfig, metrics: RedisMetrics) -> anyhow::Result<Self> {
        let url = config
            .url
            .as_ref()
            .context("REDIS_URL is not set: export it or put it in .env (see .env.example)")?;
        // The parser's message can quote the URL, password included.
        let info = url
            .expose_secret()
            .into_connection_info()
            .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid redis:// or rediss:// URL"))?;
        // RESP3, so that subscriptions share the connection with commands.
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|_| anyhow::anyhow!("REDIS_URL cannot be used"))?;
        let timeout = config.command_timeout();
        let subscribers = pubsub::Subscribers::default();
        let deliver = subscribers.clone();
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(move |push| {
                deliver.deliver(&push);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(timeout))
            // Requests never wait for reconnection attempts (see `call`); these only decide
            // how soon the manager tries again in the background.
            .set_number_of_retries(2)
            .set_max_delay(REST_AFTER_FAILURE);
        tokio::spawn(report_first_connection(client.clone()));
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .context("cannot set up the Redis connection")?;
        Ok(Self(Arc::new(Inner {
            connection,
            timeout,
            prefix: config.key_prefix.clone(),
            resting_until: AtomicU64::new(0),
            epoch: Instant::now(),
            down: AtomicBool::new(false),
            metrics,
            subscribers,
        })))
    }

    /// `prefix:name`: every key this service uses.
    pub fn key(&self, name: fmt::Arguments<'_>) -> String {
        format!("{}:{name}", self.0.prefix)
    }

    pub fn metrics(&self) -> &RedisMetrics {
        &self.0.metrics
    }

    /// Runs `command` on the shared connection, unless Redis failed moments ago; a command
    /// that errs or outlasts the timeout makes Redis rest (see [`REST_AFTER_FAILURE`]).
    pub async fn call<T>(
        &self,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> RedisResult<T>,
    ) -> Result<T, Unavailable> {
        let inner = &*self.0;
        if self.millis_now() < inner.resting_until.load(Ordering::Relaxed) {
            return Err(Unavailable);
        }
        let mut connection = inner.connection.clone();
        match tokio::time::timeout(inner.timeout, command(&mut connection)).await {
            Ok(Ok(value)) => {
                if inner.down.swap(false, Ordering::Relaxed) {
                    inner.metrics.set_up(true);
                    tracing::info!("redis is reachable again");
                }
                Ok(value)
            }
            Ok(Err(err)) => Err(self.failed(&format!("{err}"))),
            Err(_) => Err(self.failed("no answer within the command timeout")),
        }
    }

    fn failed(&self, reason: &str) -> Unavailable {
        let inner = &*self.0;
        let rest = u64::try_from(REST_AFTER_FAILURE.as_millis()).unwrap_or(u64::MAX);
        inner.resting_until.store(self.millis_now() + rest, Ordering::Relaxed);
        if !inner.down.swap(true, Ordering::Relaxed) {
            inner.metrics.set_up(false);
            // The error names the server, never the URL with its password.
            tracing::warn!(
                error = reason,
                "redis is unavailable; each use falls back until it answers"
            );
        }
        Unavailable
    }

    fn millis_now(&self) -> u64 {
        u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis answers a `PING` now, for readiness.
    pub async fn ping(&self) -> bool {
        self.call(async |connection| redis::cmd("PING").query_async::<()>(connection).await)
            .await
            .is_ok()
    }
}

/// Connects once at start with time to fail for the real reason (a wrong password, an
/// untrusted certificate, a refused connection), which the commands' short timeout would
/// hide behind "no answer", and logs it. The service starts either way.
async fn report_first_connection(client: redis::Client) {
    const PATIENCE: Duration = Duration::from_secs(5);
    match tokio::time::timeout(PATIENCE, client.get_multiplexed_async_connection()).await {
        Ok(Ok(_)) => {}
        // Redis's errors name the server and the reason, never the password.
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot connect to Redis"),
        Err(_) => tracing::warn!("cannot connect to Redis: no answer within {PATIENCE:?}"),
    }
}

/// A duration less up to a tenth of it, at random.
pub(crate) fn jittered(duration: Duration) -> Duration {
    // uuid's v4 generator is the process's fast random source already; 16 bits are plenty.
    let [first, second, ..] = uuid::Uuid::new_v4().into_bytes();
    let random = f64::from(u16::from_be_bytes([first, second])) / f64::from(u16::MAX);
    duration.mul_f64(1.0 - random / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_without_quoting_the_url() {
        let with = |change: fn(&mut RedisConfig)| {
            let mut config = RedisConfig {
                url: Some("redis://127.0.0.1:6379".into()),
                ..RedisConfig::default()
            };
            change(&mut config);
            config.validate().map_err(|err| err.to_string())
        };
        assert!(with(|_| {}).is_ok());
        assert!(with(|config| config.url = Some("rediss://user:pw@cache:6380/0".into())).is_ok());
        let refused = with(|config| config.url = Some("http://user:hunter2@cache".into())).expect_err("refused");
        assert!(
            refused.contains("REDIS_URL") && !refused.contains("hunter2"),
            "{refused}"
        );
        assert!(with(|config| config.command_timeout_ms = 0).is_err());
        assert!(with(|config| config.key_prefix = "two words".into()).is_err());
    }

    #[test]
    fn a_missing_url_is_named() {
        let err = Redis::new(&RedisConfig::default(), RedisMetrics::default()).expect_err("no URL");
        assert!(err.to_string().starts_with("REDIS_URL is not set"), "{err}");
    }

    #[test]
    fn jitter_takes_off_at_most_a_tenth() {
        for _ in 0..1_000 {
            let jittered = jittered(Duration::from_mins(1));
            assert!(jittered <= Duration::from_mins(1) && jittered >= Duration::from_secs(54));
        }
    }
}
