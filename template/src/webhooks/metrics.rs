//! The webhooks' Prometheus series: deliveries by outcome, and the state of each
//! destination's circuit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::breaker::DestinationLabels;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `failed` (the receiver answered other than 2xx, or not in time), or
    /// `refused` (no request went out: an open circuit, a forbidden address).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookMetrics {
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub circuits: Family<DestinationLabels, Gauge>,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            metrics.deliveries.clone(),
        );
        registry.register(
            "webhook_circuit_state",
            "Circuit of each webhook destination: 0 closed, 1 half open (one trial out), 2 open",
            metrics.circuits.clone(),
        );
        metrics
    }
}
