//! What every handler can reach, behind one `Arc`: every request clones the state several
//! times on its way through the middleware, and one reference count is cheaper than seven.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;

use crate::config::Config;
use crate::db::Database;
use crate::limits::{AddressLimit, Limits};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The state itself. The configuration, the lifecycle and the proxy list have `Arc`s of their
/// own because the server loop and the signal handler hold them without the rest.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Database,
    pub metrics: Metrics,
    pub lifecycle: Arc<Lifecycle>,
{%- if auth != "none" %}
    pub auth: crate::auth::Auth,
{%- endif %}
{%- if jobs and example %}
    /// Sends webhook deliveries; one client, so connections and circuits are shared.
    pub webhooks: crate::webhooks::Outbound,
{%- endif %}
{%- if redis %}
    pub redis: crate::redis::Redis,
{%- endif %}
{%- if realtime %}
    pub realtime: crate::realtime::Realtime,
{%- endif %}
{%- if graphql %}
    /// The GraphQL schema, built once with the configured limits.
    pub graphql: crate::http::graphql::Graphql,
{%- endif %}
{%- if redis and example %}
    /// Projects by id, for every replica; each write to a project invalidates its entry.
    pub project_cache: crate::redis::cache::Cache<crate::http::projects::Project>,
{%- endif %}
    /// API requests per client address.
    pub address_limit: AddressLimit,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[IpNet]>,
}

impl AppState {
    /// Fails when a setting the configuration could not check on its own is unusable, such as
    /// a key or a proxy range.
    pub fn new(config: Config, db: Database) -> anyhow::Result<Self> {
        let metrics = Metrics::default();
{%- if redis %}
        let redis = crate::redis::Redis::new(&config.redis, metrics.redis.clone())?;
{%- endif %}
        let limits = Limits {
            enabled: config.rate_limit.enabled,
            ipv6_prefix: config.rate_limit.ipv6_prefix,
{%- if redis %}
            redis: redis.clone(),
{%- endif %}
        };
{%- if realtime %}
        let fanout = crate::realtime::Fanout::new(&db{% if redis %}, &redis{% endif %});
{%- endif %}
        Ok(Self(Arc::new(Shared {
{%- if jobs and example %}
            webhooks: crate::webhooks::Outbound::new(&config.webhooks, &metrics.webhooks)?,
{%- endif %}
{%- if auth != "none" %}
            auth: crate::auth::Auth::new(&config.auth, &limits, config.environment, &db)?,
{%- endif %}
            address_limit: limits.per_address("per client address", config.rate_limit.per_ip_per_minute),
            trusted_proxies: config.rate_limit.trusted_proxies()?.into(),
{%- if redis and example %}
            project_cache: crate::redis::cache::Cache::new(&redis, &config.redis, "projects"),
{%- endif %}
{%- if realtime %}
            realtime: crate::realtime::Realtime::new(fanout, metrics.realtime.clone()),
{%- endif %}
{%- if graphql %}
            graphql: crate::http::graphql::schema(&config.graphql, metrics.graphql.clone()),
{%- endif %}
{%- if redis %}
            redis,
{%- endif %}
            config: Arc::new(config),
            db,
            metrics,
            lifecycle: Arc::new(Lifecycle::default()),
        })))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
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
