//! What realtime does, in `/metrics`: open connections and rooms, changes delivered to
//! clients, slow consumers dropped, and what clients sent that was refused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `bad_payload`, `unknown_event`, `rate_limited` or `malformed`.
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct RealtimeMetrics {
    pub(super) connections: Gauge,
    pub(super) rooms: Gauge,
    emitted: Family<EventLabels, Counter>,
    slow_consumers: Counter,
    client_errors: Family<KindLabels, Counter>,
    disconnects: Family<ReasonLabels, Counter>,
    publish_failures: Counter,
}

impl RealtimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "realtime_connections",
            "Open Socket.IO connections",
            metrics.connections.clone(),
        );
        registry.register(
            "realtime_rooms",
            "Project rooms with at least one connection of this instance",
            metrics.rooms.clone(),
        );
        registry.register(
            "realtime_events_emitted",
            "Changes sent to connections, by event",
            metrics.emitted.clone(),
        );
        registry.register(
            "realtime_slow_consumers",
            "Connections dropped because they did not read what was sent to them",
            metrics.slow_consumers.clone(),
        );
        registry.register(
            "realtime_client_errors",
            "Client packets refused: bad_payload, unknown_event, rate_limited, malformed",
            metrics.client_errors.clone(),
        );
        registry.register(
            "realtime_disconnects",
            "Connections ended, by reason",
            metrics.disconnects.clone(),
        );
        registry.register(
            "realtime_publish_failures",
            "Changes that committed but could not be published to the replicas",
            metrics.publish_failures.clone(),
        );
        metrics
    }

    pub(super) fn emitted(&self, event: &'static str) {
        self.emitted.get_or_create(&EventLabels { event }).inc();
    }

    pub(super) fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }

    pub(super) fn client_error(&self, kind: &'static str) {
        self.client_errors.get_or_create(&KindLabels { kind }).inc();
    }

    pub(super) fn disconnect(&self, reason: &'static str) {
        self.disconnects.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(super) fn publish_failure(&self) {
        self.publish_failures.inc();
    }
}
