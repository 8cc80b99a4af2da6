//! What every handler can reach: cheap to clone, shared behind `Arc`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;

{% if auth == "issuer" %}use crate::auth::{Passwords, Tokens};
{% elsif auth == "verifier" %}use crate::auth::Tokens;
{% endif %}use crate::config::Config;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimits;

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
{%- if auth != "none" %}
    pub tokens: Arc<Tokens>,
{%- endif %}
{%- if auth == "issuer" %}
    pub passwords: Arc<Passwords>,
{%- endif %}
    pub rate_limits: Arc<RateLimits>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[IpNet]>,
}

impl AppState {
    /// Fails when {% if auth == "issuer" %}the signing keys, the password hashing or {% elsif auth == "verifier" %}the token settings or {% endif %}the proxy settings are unusable.
    pub fn new(config: Config, db: Database) -> anyhow::Result<Self> {
        Ok(Self {
{%- if auth == "issuer" %}
            tokens: Arc::new(Tokens::new(&config.auth, config.environment)?),
            passwords: Arc::new(Passwords::new(&config.auth)?),
{%- elsif auth == "verifier" %}
            tokens: Arc::new(Tokens::new(&config.auth, config.environment)?),
{%- endif %}
            rate_limits: Arc::new(RateLimits::new(&config.rate_limit)),
            trusted_proxies: config.rate_limit.trusted_proxies()?.into(),
            config: Arc::new(config),
            db,
            metrics: Arc::new(Metrics::default()),
            lifecycle: Arc::new(Lifecycle::default()),
        })
    }
}

/// Whether the process is draining: once a shutdown starts, readiness fails so that load
/// balancers stop sending traffic while in-flight requests finish.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
