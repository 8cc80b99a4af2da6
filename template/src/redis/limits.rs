//! Rate limits kept in Redis, so that every replica draws on one budget. The same algorithm as
//! the in-memory limits (GCRA: a full minute's quota may arrive as a burst, then requests flow
//! at the quota's rate), run as one script: atomic, one round trip, and timed by Redis's
//! clock so that the replicas' clocks do not matter.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Script;

use super::{Redis, Unavailable};

/// KEYS[1]: the bucket, holding its theoretical arrival time in microseconds of Redis's clock.
/// ARGV[1]: microseconds between two requests at the quota's rate; ARGV[2]: the quota.
/// Returns 0 when the request is allowed, else the microseconds to wait.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now_us
if tat < now_us then tat = now_us end
local next_tat = tat + interval
local wait = next_tat - interval * tonumber(ARGV[2]) - now_us
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.max(1, math.ceil((next_tat - now_us) / 1000)))
return 0
",
    )
});

/// One quota in Redis, for keys of any type.
#[derive(Debug)]
pub struct SharedLimit {
    redis: Redis,
    scope: &'static str,
    /// `prefix:limit:<scope>:`, to which the key's hash is appended.
    bucket_prefix: String,
    interval_us: u64,
    quota: u32,
    /// Whether the last check fell back, so that a fallback is logged once, not per request.
    falling_back: AtomicBool,
}

impl SharedLimit {
    pub fn new(redis: Redis, scope: &'static str, per_minute: u32) -> Self {
        let quota = per_minute.max(1);
        Self {
            bucket_prefix: redis.key(format_args!("limit:{}:", scope.replace(' ', "-"))),
            redis,
            scope,
            // A quota above a request a microsecond is as good as none; zero would stop time.
            interval_us: (60_000_000 / u64::from(quota)).max(1),
            quota,
            falling_back: AtomicBool::new(false),
        }
    }

    /// `Ok(None)` when the request is allowed, `Ok(Some(wait))` when it is over the quota;
    /// `Err` when Redis did not answer (counted, and logged once per outage as a security
    /// event: the instance then enforces its limits alone, which lets more through).
    pub async fn check<K: Hash>(&self, key: &K) -> Result<Option<Duration>, Unavailable> {
        let bucket = format!("{}{:016x}", self.bucket_prefix, bucket_of(key));
        let outcome = self
            .redis
            .call(async |connection| {
                GCRA.key(&bucket)
                    .arg(self.interval_us)
                    .arg(self.quota)
                    .invoke_async::<u64>(connection)
                    .await
            })
            .await;
        let Ok(wait) = outcome else {
            self.redis.metrics().fallback(self.scope);
            if !self.falling_back.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "security",
                    event = "rate_limit_fallback",
                    scope = self.scope,
                    "redis is unavailable: this instance enforces the limit alone"
                );
            }
            return Err(Unavailable);
        };
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "security", event = "rate_limit_shared_again", scope = self.scope, "rate limits are shared again");
        }
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }
}

/// A key's bucket: a hash, so that no address or email address is stored in Redis, and every
/// key has the same short length. The hasher is `std`'s with its fixed keys, the same in
/// every replica built by the same compiler.
fn bucket_of<K: Hash>(key: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}
