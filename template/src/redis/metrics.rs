//! What Redis does for the service, in `/metrics`: whether it answers, the cache's hits,
//! misses and errors per cache, and the rate-limit checks that fell back to memory.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    /// `hit`, `miss` or `error`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct RedisMetrics {
    up: Gauge,
    cache: Family<CacheLabels, Counter>,
    fallbacks: Family<ScopeLabels, Counter>,
}

impl RedisMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        metrics.up.set(1);
        registry.register(
            "redis_up",
            "1 while Redis answers, 0 after a command failed until one succeeds",
            metrics.up.clone(),
        );
        registry.register(
            "cache_requests",
            "Cache lookups by cache and outcome (hit, miss, error)",
            metrics.cache.clone(),
        );
        registry.register(
            "rate_limit_fallbacks",
            "Rate-limit checks made in this instance's memory because Redis did not answer",
            metrics.fallbacks.clone(),
        );
        metrics
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub(super) fn cache(&self, cache: &'static str, outcome: &'static str) {
        self.cache.get_or_create(&CacheLabels { cache, outcome }).inc();
    }

    pub(super) fn fallback(&self, scope: &'static str) {
        self.fallbacks.get_or_create(&ScopeLabels { scope }).inc();
    }
}
