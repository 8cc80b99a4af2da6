{%- if auth == "issuer" -%}
//! Request rate limits, in memory per instance: per client IP on requests without a valid
//! access token, per account on requests with one, and, on sign-in and registration, per IP
//! and per email address.
{%- elsif auth == "verifier" -%}
//! Request rate limits, in memory per instance: per client IP on requests without a valid
//! access token, per account on requests with one.
{%- else -%}
//! Request rate limits, in memory per instance, per client IP.
{%- endif %}
//! Limits are token buckets (GCRA): a full minute's quota may arrive as a burst, then
//! requests flow at the quota's rate.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
{%- if auth != "none" %}
use uuid::Uuid;
{%- endif %}

use crate::config::RateLimitConfig;

/// Keys kept per limiter before idle ones are dropped; bounds memory under a spray of IPs.
const PRUNE_ABOVE: usize = 10_000;

/// Over the limit: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded ({scope}); retry in {retry_after:?}")]
pub struct Limited {
    /// Which limit, for logs and the response.
    pub scope: &'static str,
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct RateLimits {
    enabled: bool,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
{%- if auth != "none" %}
    per_user: DefaultKeyedRateLimiter<Uuid>,
{%- endif %}
{%- if auth == "issuer" %}
    sign_in_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    sign_in_per_account: DefaultKeyedRateLimiter<String>,
{%- endif %}
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        let per_minute = |count: u32| Quota::per_minute(NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN));
        Self {
            enabled: config.enabled,
            per_ip: DefaultKeyedRateLimiter::keyed(per_minute(config.per_ip_per_minute)),
{%- if auth != "none" %}
            per_user: DefaultKeyedRateLimiter::keyed(per_minute(config.per_user_per_minute)),
{%- endif %}
{%- if auth == "issuer" %}
            sign_in_per_ip: DefaultKeyedRateLimiter::keyed(per_minute(config.sign_in_per_ip_per_minute)),
            sign_in_per_account: DefaultKeyedRateLimiter::keyed(per_minute(config.sign_in_per_account_per_minute)),
{%- endif %}
        }
    }

    /// A request from `ip`{%- if auth != "none" %} without a valid access token{%- endif %}.
    pub fn anonymous(&self, ip: IpAddr) -> Result<(), Limited> {
        self.check(&self.per_ip, &ip, "per client address")
    }
{%- if auth != "none" %}

    /// A request authenticated as `user`, wherever it comes from.
    pub fn user(&self, user: Uuid) -> Result<(), Limited> {
        self.check(&self.per_user, &user, "per account")
    }
{%- endif %}
{%- if auth == "issuer" %}

    /// A sign-in or registration attempt for `email` from `ip`: both limits must allow it, so
    /// neither one address guessing many accounts nor many addresses guessing one succeed.
    pub fn sign_in(&self, ip: IpAddr, email: &str) -> Result<(), Limited> {
        self.check(&self.sign_in_per_ip, &ip, "sign-ins per client address")?;
        self.check(
            &self.sign_in_per_account,
            &email.trim().to_lowercase(),
            "sign-ins per account",
        )
    }
{%- endif %}

    fn check<K: Clone + Hash + Eq>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        scope: &'static str,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| Limited {
            scope,
            retry_after: not_until.wait_time_from(limiter.clock().now()),
        })
    }
}
