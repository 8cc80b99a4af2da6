//! Prometheus metrics: HTTP traffic recorded by middleware, open client connections counted by
//! the accept loop, security events counted where they are logged, and connection-pool gauges
//! read at scrape time. The registry belongs to the application state, not to a global, so
//! tests and several app instances in one process never share counters.

use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::extract::MatchedPath;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::PoolStats;

/// Labels of every HTTP series. `route` is the matched route template, never the raw path,
/// so ids in URLs cannot explode the number of series. The labels only borrow or share what
/// the request holds anyway, so recording a request allocates nothing once its series exist.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: Route,
    pub status: u16,
}

/// The route template the router matched (a shared copy of its own string), or `unmatched`.
#[derive(Debug, Clone)]
pub struct Route(pub Option<MatchedPath>);

impl Route {
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        self.as_str().encode(encoder)
    }
}

/// Label of the security-event counter: the `event` field of the log line, from a fixed set.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecurityLabels {
    pub event: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    security_events: Family<SecurityLabels, Counter>,
    latency: Family<HttpLabels, Histogram>,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_waiting: Gauge,
    /// Client connections open now; the accept loop moves it.
    pub open_connections: Gauge,
{%- if jobs %}
    pub jobs: crate::jobs::JobMetrics,
{%- endif %}
{%- if jobs and example %}
    pub webhooks: crate::webhooks::WebhookMetrics,
{%- endif %}
{%- if redis %}
    pub redis: crate::redis::RedisMetrics,
{%- endif %}
{%- if realtime %}
    pub realtime: crate::realtime::RealtimeMetrics,
{%- endif %}
{%- if graphql %}
    pub graphql: crate::http::graphql::GraphqlMetrics,
{%- endif %}
}

/// Latency buckets in seconds, from 5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        let latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let security_events = Family::<SecurityLabels, Counter>::default();
        let (pool_size, pool_idle, pool_waiting) = (Gauge::default(), Gauge::default(), Gauge::default());
        let open_connections = Gauge::default();
        let mut registry = Registry::default();
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        registry.register(
            "security_events",
            "Failed and successful sign-ins, refused tokens, reuse, denials, rate-limit hits",
            security_events.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response",
            latency.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections, idle included",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        registry.register(
            "db_pool_waiting_requests",
            "Callers waiting for a database connection",
            pool_waiting.clone(),
        );
        registry.register(
            "http_open_connections",
            "Open client connections",
            open_connections.clone(),
        );
        Self {
{%- if jobs %}
            jobs: crate::jobs::JobMetrics::register(&mut registry),
{%- endif %}
{%- if jobs and example %}
            webhooks: crate::webhooks::WebhookMetrics::register(&mut registry),
{%- endif %}
{%- if redis %}
            redis: crate::redis::RedisMetrics::register(&mut registry),
{%- endif %}
{%- if realtime %}
            realtime: crate::realtime::RealtimeMetrics::register(&mut registry),
{%- endif %}
{%- if graphql %}
            graphql: crate::http::graphql::GraphqlMetrics::register(&mut registry),
{%- endif %}
            registry,
            requests,
            security_events,
            latency,
            pool_size,
            pool_idle,
            pool_waiting,
            open_connections,
        }
    }
}

impl Metrics {
    pub fn record_request(&self, labels: &HttpLabels, elapsed: Duration) {
        self.requests.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(elapsed.as_secs_f64());
    }

    /// Counts one security event, such as `login_failed`; alerting watches the rates.
    pub fn security_event(&self, event: &'static str) {
        self.security_events.get_or_create(&SecurityLabels { event }).inc();
    }

    /// Renders every series in the OpenMetrics text format, with the pool read now.
    pub fn render(&self, pool: PoolStats) -> String {
        self.pool_size.set(i64::from(pool.size));
        self.pool_idle.set(i64::try_from(pool.idle).unwrap_or(i64::MAX));
        self.pool_waiting.set(i64::try_from(pool.waiting).unwrap_or(i64::MAX));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            // Encoding into a String cannot fail; keep the scrape well-formed regardless.
            let _ = writeln!(text, "# EOF");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_pool_gauges_are_rendered() {
        let metrics = Metrics::default();
        let labels = HttpLabels {
            method: "GET",
            // A matched route comes from the router only; the API tests check those.
            route: Route(None),
            status: 200,
        };
        metrics.record_request(&labels, Duration::from_millis(3));
        metrics.record_request(&labels, Duration::from_millis(4));
        metrics.security_event("login_failed");

        let text = metrics.render(PoolStats {
            size: 4,
            idle: 3,
            waiting: 2,
        });

        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"http_request_duration_seconds_bucket{le="0.005",method="GET",route="unmatched",status="200"} 2"#
            ) || text.contains(r#"http_request_duration_seconds_count{method="GET",route="unmatched",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"security_events_total{event="login_failed"} 1"#),
            "{text}"
        );
        assert!(text.contains("db_pool_connections 4"), "{text}");
        assert!(text.contains("db_pool_idle_connections 3"), "{text}");
        assert!(text.contains("db_pool_waiting_requests 2"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
