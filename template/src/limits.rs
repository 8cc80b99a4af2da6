//! Request rate limits{% if redis %}, shared by every replica through Redis, with each instance's
//! memory as the fallback while Redis does not answer{% else %}, in memory per instance{% endif %}. A [`Limit`] is a token bucket
//! (GCRA) per key: a full minute's quota may arrive as a burst, then requests flow at the
//! quota's rate. The service limits every API request per client address ([`AddressLimit`]);
//! with authentication, per account and per sign-in target too (see `auth`). [`Limits`]
//! builds them all alike.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

/// Keys kept per limit before idle ones are first dropped; bounds memory under a spray of
/// addresses.
const PRUNE_ABOVE: usize = 10_000;

/// Over the limit: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded ({scope}); retry in {retry_after:?}")]
pub struct Limited {
    /// Which limit, for logs and the response.
    pub scope: &'static str,
    pub retry_after: Duration,
}

/// What every limit of the service is built with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Off lets everything through (tests, benchmarks).
    pub enabled: bool,
    /// The IPv6 network length that counts as one client.
    pub ipv6_prefix: u8,
{%- if redis %}
    pub redis: crate::redis::Redis,
{%- endif %}
}

impl Limits {
    /// `per_minute` requests a minute per key, named `scope` in logs and responses.
    pub fn per_key<K: Clone + Hash + Eq>(&self, scope: &'static str, per_minute: u32) -> Limit<K> {
{%- if redis %}
        let mut limit = Limit::per_minute(scope, per_minute, self.enabled);
        limit.shared = Some(crate::redis::limits::SharedLimit::new(
            self.redis.clone(),
            scope,
            per_minute,
        ));
        limit
{%- else %}
        Limit::per_minute(scope, per_minute, self.enabled)
{%- endif %}
    }

    /// The same per client address (see [`AddressLimit`]).
    pub fn per_address(&self, scope: &'static str, per_minute: u32) -> AddressLimit {
        AddressLimit {
            limit: self.per_key(scope, per_minute),
            ipv6_prefix: self.ipv6_prefix,
        }
    }
}

/// One quota, kept per key.
#[derive(Debug)]
pub struct Limit<K: Clone + Hash + Eq> {
    scope: &'static str,
    enabled: bool,
{%- if redis %}
    /// The quota in Redis; `limiter` only counts while Redis does not answer.
    shared: Option<crate::redis::limits::SharedLimit>,
{%- endif %}
    limiter: DefaultKeyedRateLimiter<K>,
    /// The key count past which a check first drops idle keys. After a sweep it is twice the
    /// keys still live, so when most keys are live the sweep is not repeated on every check:
    /// its cost is spread over the keys added since the last one.
    prune_above: AtomicUsize,
}

impl<K: Clone + Hash + Eq> Limit<K> {
    /// `per_minute` requests a minute per key, named `scope` in logs and responses. A
    /// disabled limit lets everything through (tests, benchmarks).
    pub fn per_minute(scope: &'static str, per_minute: u32, enabled: bool) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            scope,
            enabled,
{%- if redis %}
            shared: None,
{%- endif %}
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            prune_above: AtomicUsize::new(PRUNE_ABOVE),
        }
    }

    /// Counts one request for `key`, or says how long it must wait.
{%- unless redis %}
    #[allow(
        clippy::unused_async,
        reason = "the callers' one signature, whichever store keeps the limits"
    )]
{%- endunless %}
    pub async fn check(&self, key: &K) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
{%- if redis %}
        if let Some(shared) = &self.shared
            && let Ok(wait) = shared.check(key).await
        {
            return wait.map_or(Ok(()), |retry_after| {
                Err(Limited {
                    scope: self.scope,
                    retry_after,
                })
            });
        }
{%- endif %}
        self.check_here(key)
    }

    /// The check in this instance's memory.
    fn check_here(&self, key: &K) -> Result<(), Limited> {
        let prune_above = self.prune_above.load(Ordering::Relaxed);
        // One sweeper at a time: the others go on while it works.
        if self.limiter.len() > prune_above
            && self
                .prune_above
                .compare_exchange(prune_above, usize::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            let next = PRUNE_ABOVE.max(self.limiter.len().saturating_mul(2));
            self.prune_above.store(next, Ordering::Relaxed);
        }
        self.limiter.check_key(key).map_err(|not_until| Limited {
            scope: self.scope,
            retry_after: not_until.wait_time_from(self.limiter.clock().now()),
        })
    }
}

/// A limit per client address. An IPv6 subscriber usually holds a whole network (a /64) and
/// may use any address in it, so IPv6 addresses count by network prefix; IPv4 addresses, and
/// IPv4 mapped into IPv6, count one by one.
#[derive(Debug)]
pub struct AddressLimit {
    limit: Limit<IpAddr>,
    ipv6_prefix: u8,
}

impl AddressLimit {
    pub async fn check(&self, ip: IpAddr) -> Result<(), Limited> {
        self.limit.check(&network(ip, self.ipv6_prefix)).await
    }
}

/// The client `ip` counts as: itself for IPv4, its network of `ipv6_prefix` bits for IPv6.
pub fn network(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(address) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(address) & mask))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_over_its_quota_waits_while_others_go_on() {
        let limit = Limit::per_minute("per test", 2, true);

        assert!(limit.check(&1).await.is_ok());
        assert!(limit.check(&1).await.is_ok());
        let limited = limit.check(&1).await.expect_err("over the quota");
        assert_eq!(limited.scope, "per test");
        assert!(limited.retry_after > Duration::ZERO);
        assert!(limit.check(&2).await.is_ok(), "another key has its own bucket");
        let off = Limit::per_minute("off", 1, false);
        assert!(off.check(&1).await.is_ok());
        assert!(off.check(&1).await.is_ok());
    }

    fn per_address(per_minute: u32, ipv6_prefix: u8) -> AddressLimit {
        AddressLimit {
            limit: Limit::per_minute("per test", per_minute, true),
            ipv6_prefix,
        }
    }

    #[tokio::test]
    async fn ipv6_addresses_count_by_network_and_ipv4_one_by_one() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let limit = per_address(1, 64);

        assert!(limit.check(ip("2001:db8:1:2::1")).await.is_ok());
        assert!(limit.check(ip("2001:db8:1:2:ffff::9")).await.is_err(), "same /64");
        assert!(limit.check(ip("2001:db8:1:3::1")).await.is_ok(), "next /64");
        assert!(limit.check(ip("192.0.2.1")).await.is_ok());
        assert!(
            limit.check(ip("::ffff:192.0.2.1")).await.is_err(),
            "the same IPv4 address, mapped"
        );
        assert!(limit.check(ip("192.0.2.2")).await.is_ok());

        let whole = per_address(1, 128);
        assert!(whole.check(ip("2001:db8::1")).await.is_ok());
        assert!(
            whole.check(ip("2001:db8::2")).await.is_ok(),
            "a /128 prefix counts addresses"
        );
        assert_eq!(network(ip("2001:db8:ab:cd:1:2:3:4"), 48), ip("2001:db8:ab::"));
    }

    #[test]
    fn idle_keys_are_dropped_past_the_threshold() {
        // A quota of one a millisecond: a key is idle again a millisecond after its request.
        let limit = Limit::per_minute("per test", 60_000, true);
        for key in 0..=PRUNE_ABOVE {
            limit.check_here(&key).expect("within the quota");
        }
        assert_eq!(limit.limiter.len(), PRUNE_ABOVE + 1);
        std::thread::sleep(Duration::from_millis(5));

        limit.check_here(&usize::MAX).expect("within the quota");

        assert!(limit.limiter.len() <= 2, "{} keys kept", limit.limiter.len());
    }

    #[test]
    fn live_keys_are_not_swept_on_every_check() {
        // A quota of one a minute: every key stays live through the test.
        let limit = Limit::per_minute("per test", 1, true);
        for key in 0..=PRUNE_ABOVE {
            limit.check_here(&key).expect("within the quota");
        }
        limit.check_here(&usize::MAX).expect("within the quota");

        assert_eq!(limit.limiter.len(), PRUNE_ABOVE + 2, "nothing idle to drop");
        // That sweep found PRUNE_ABOVE + 1 live keys: the next waits for twice as many.
        assert_eq!(limit.prune_above.load(Ordering::Relaxed), 2 * (PRUNE_ABOVE + 1));
    }
}
