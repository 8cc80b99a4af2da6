//! Request rate limits, in memory per instance. A [`Limit`] is a token bucket (GCRA) per key:
//! a full minute's quota may arrive as a burst, then requests flow at the quota's rate. The
//! service limits every API request per client address; with authentication, per account and
//! per sign-in target too (see `auth`).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

/// Keys kept per limit before idle ones are dropped; bounds memory under a spray of addresses.
const PRUNE_ABOVE: usize = 10_000;

/// Over the limit: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded ({scope}); retry in {retry_after:?}")]
pub struct Limited {
    /// Which limit, for logs and the response.
    pub scope: &'static str,
    pub retry_after: Duration,
}

/// One quota, kept per key.
#[derive(Debug)]
pub struct Limit<K: Clone + Hash + Eq> {
    scope: &'static str,
    enabled: bool,
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: Clone + Hash + Eq> Limit<K> {
    /// `per_minute` requests a minute per key, named `scope` in logs and responses. A
    /// disabled limit lets everything through (tests, benchmarks).
    pub fn per_minute(scope: &'static str, per_minute: u32, enabled: bool) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            scope,
            enabled,
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// Counts one request for `key`, or says how long it must wait.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        if self.limiter.len() > PRUNE_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| Limited {
            scope: self.scope,
            retry_after: not_until.wait_time_from(self.limiter.clock().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_quota_waits_while_others_go_on() {
        let limit = Limit::per_minute("per test", 2, true);

        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).is_ok());
        let limited = limit.check(&1).expect_err("over the quota");
        assert_eq!(limited.scope, "per test");
        assert!(limited.retry_after > Duration::ZERO);
        assert!(limit.check(&2).is_ok(), "another key has its own bucket");
        assert!(Limit::per_minute("off", 1, false).check(&1).is_ok());
        assert!(Limit::per_minute("off", 1, false).check(&1).is_ok());
    }
}
