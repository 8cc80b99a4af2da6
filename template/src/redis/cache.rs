//! A typed cache-aside layer: a read looks in Redis, and on a miss loads from the database
//! and fills the entry. Several things keep it honest:
//!
//! - **Writes win.** A write invalidates after it commits, by bumping the key's generation
//!   and deleting the entry; a read fills only if the generation it saw before loading is
//!   still current (one script), so a read that loaded the old row just before the write
//!   cannot put it back.
//! - **One load per key.** Concurrent misses for one key in this process share one load.
//! - **Misses are remembered briefly** (`APP_REDIS__CACHE_MISS_TTL_SECS`), so that asking
//!   for an id that does not exist does not reach the database every time.
//! - **Bounded.** Entries expire (with jitter); values over [`MAX_VALUE_BYTES`] are not stored.
//! - **Optional.** When Redis does not answer, reads go to the database. An invalidation that
//!   could not be sent is retried until it is, so an entry is never left stale longer than
//!   the outage.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::{Redis, RedisConfig, jittered};

/// Larger values are served from the database every time rather than stored.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// How often invalidations that failed are sent again.
const RETRY_INVALIDATIONS_EVERY: Duration = Duration::from_millis(250);

/// A remembered miss: JSON never encodes a value as an empty string.
const ABSENT: &[u8] = b"";

/// KEYS[1]: the entry; KEYS[2]: its generation. ARGV[1]: the generation read before loading;
/// ARGV[2]: the value; ARGV[3]: milliseconds to live.
static FILL: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
",
    )
});

/// KEYS[1]: the entry; KEYS[2]: its generation. ARGV[1]: milliseconds the generation lives,
/// longer than any load takes.
static INVALIDATE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 0
",
    )
});

/// Values of type `V` by id, named `name` in keys and metrics.
pub struct Cache<V> {
    redis: Redis,
    name: &'static str,
    enabled: bool,
    ttl: Duration,
    miss_ttl: Duration,
    /// The loads in progress, by key.
    loading: Mutex<HashMap<String, Arc<OnceCell<Option<V>>>>>,
    /// Invalidations Redis did not take yet; a task sends them again.
    unsent: Arc<Mutex<HashSet<String>>>,
    _value: PhantomData<fn() -> V>,
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Cache<V> {
    /// Starts the task that resends failed invalidations; it ends with the cache.
    pub fn new(redis: &Redis, config: &RedisConfig, name: &'static str) -> Self {
        let unsent = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(resend_invalidations(redis.clone(), Arc::downgrade(&unsent)));
        Self {
            redis: redis.clone(),
            name,
            enabled: config.cache,
            ttl: Duration::from_secs(config.cache_ttl_secs),
            miss_ttl: Duration::from_secs(config.cache_miss_ttl_secs),
            loading: Mutex::default(),
            unsent,
            _value: PhantomData,
        }
    }

    fn key(&self, id: &dyn Display) -> String {
        self.redis.key(format_args!("cache:{}:{id}", self.name))
    }

    /// The value for `id`: from Redis, or from `load` (and then stored), `None` when `load`
    /// finds nothing. A failing `load` is returned as is and stores nothing.
    pub async fn get_or_load<E>(
        &self,
        id: impl Display,
        load: impl AsyncFnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<V>, E> {
        if !self.enabled {
            return load().await;
        }
        let key = self.key(&id);
        let generation_key = generation_key(&key);
        let looked_up = self
            .redis
            .call(async |connection| {
                redis::cmd("MGET")
                    .arg(&key)
                    .arg(&generation_key)
                    .query_async::<(Option<Vec<u8>>, Option<String>)>(connection)
                    .await
            })
            .await;
        // The generation the entry may be filled under, when it may be filled at all.
        let generation = if let Ok((cached, generation)) = looked_up {
            if let Some(bytes) = cached {
                if bytes == ABSENT {
                    self.redis.metrics().cache(self.name, "hit");
                    return Ok(None);
                }
                if let Ok(value) = serde_json::from_slice(&bytes) {
                    self.redis.metrics().cache(self.name, "hit");
                    return Ok(Some(value));
                }
            }
            // Not there, or written by an older version of the type: loaded and replaced.
            self.redis.metrics().cache(self.name, "miss");
            Some(generation.unwrap_or_else(|| "0".to_owned()))
        } else {
            self.redis.metrics().cache(self.name, "error");
            None
        };
        let cell = Arc::clone(
            self.loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default(),
        );
        // Whoever comes first loads; the others wait for its value, or load themselves if
        // it failed.
        let loaded = cell
            .get_or_try_init(async || {
                let value = load().await?;
                if let Some(generation) = generation {
                    self.fill(&key, &generation_key, &generation, value.as_ref()).await;
                }
                Ok(value)
            })
            .await
            .cloned();
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if loading.get(&key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
            loading.remove(&key);
        }
        loaded
    }

    async fn fill(&self, key: &str, generation_key: &str, generation: &str, value: Option<&V>) {
        let (bytes, ttl) = match value {
            Some(value) => match serde_json::to_vec(value) {
                Ok(bytes) if bytes.len() <= MAX_VALUE_BYTES => (bytes, jittered(self.ttl)),
                _ => return,
            },
            None => (ABSENT.to_vec(), self.miss_ttl),
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // A fill that fails is only a miss more later.
        let _ = self
            .redis
            .call(async |connection| {
                FILL.key(key)
                    .key(generation_key)
                    .arg(generation)
                    .arg(&bytes)
                    .arg(ttl_ms)
                    .invoke_async::<()>(connection)
                    .await
            })
            .await;
    }

    /// Forgets `id` in every replica, after a write to it committed. When Redis does not
    /// answer, the invalidation is sent again until it does.
    pub async fn invalidate(&self, id: impl Display) {
        let key = self.key(&id);
        if invalidate(&self.redis, &key).await.is_err() {
            self.unsent.lock().unwrap_or_else(PoisonError::into_inner).insert(key);
        }
    }
}

/// The key of `key`'s generation, which an invalidation bumps and a fill compares.
fn generation_key(key: &str) -> String {
    format!("{key}:gen")
}

async fn invalidate(redis: &Redis, key: &str) -> Result<(), super::Unavailable> {
    // The generation outlives any load in progress (they are bounded by the statement timeout).
    const GENERATION_LIVES_MS: u64 = 10 * 60 * 1000;
    redis
        .call(async |connection| {
            INVALIDATE
                .key(key)
                .key(generation_key(key))
                .arg(GENERATION_LIVES_MS)
                .invoke_async::<()>(connection)
                .await
        })
        .await
}

/// Sends the invalidations that failed again, until each has gone through.
async fn resend_invalidations(redis: Redis, unsent: std::sync::Weak<Mutex<HashSet<String>>>) {
    let mut tick = tokio::time::interval(RETRY_INVALIDATIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(unsent) = unsent.upgrade() else {
            return;
        };
        let keys: Vec<String> = unsent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        for key in keys {
            if invalidate(&redis, &key).await.is_err() {
                break;
            }
            unsent.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
        }
    }
}
