//! `[webhooks]` settings: the outbound client's limits, when a destination's circuit opens,
//! and whether private addresses may receive deliveries.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::config::Environment;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Whether destinations may be loopback, private, link-local or metadata addresses. Off,
    /// such a destination is refused at registration and again at every connection; only
    /// development turns it on, for receivers on the same machine.
    pub allow_private_destinations: bool,
    pub connect_timeout_ms: u64,
    /// For a whole delivery: connection, request and response.
    pub timeout_ms: u64,
    /// Response bytes read at most; the rest is not waited for.
    pub max_response_bytes: usize,
    /// Consecutive failures that open a destination's circuit: no request goes there until
    /// `circuit_open_secs` have passed, then one trial decides.
    pub circuit_failures: u32,
    pub circuit_open_secs: u64,
    /// Delivery records older than this are deleted by the built-in prune schedule.
    pub delivery_retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_destinations: false,
            connect_timeout_ms: 3_000,
            timeout_ms: 10_000,
            max_response_bytes: 64 * 1024,
            circuit_failures: 5,
            circuit_open_secs: 60,
            delivery_retention_days: 14,
        }
    }
}

impl WebhooksConfig {
    pub fn validate(&self, environment: Environment) -> anyhow::Result<()> {
        for (name, value) in [
            ("APP_WEBHOOKS__CONNECT_TIMEOUT_MS", self.connect_timeout_ms),
            ("APP_WEBHOOKS__TIMEOUT_MS", self.timeout_ms),
            ("APP_WEBHOOKS__CIRCUIT_FAILURES", u64::from(self.circuit_failures)),
            ("APP_WEBHOOKS__DELIVERY_RETENTION_DAYS", self.delivery_retention_days),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0");
            }
        }
        if environment == Environment::Production && self.allow_private_destinations {
            bail!(
                "APP_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS is for development: in production it would let any account \
                 make this service call its internal network"
            );
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn circuit_open(&self) -> Duration {
        Duration::from_secs(self.circuit_open_secs)
    }

    pub fn delivery_retention(&self) -> Duration {
        Duration::from_secs(self.delivery_retention_days * 24 * 60 * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_private_destinations_and_zero_limits() {
        assert!(WebhooksConfig::default().validate(Environment::Production).is_ok());
        let private = WebhooksConfig {
            allow_private_destinations: true,
            ..WebhooksConfig::default()
        };
        assert!(private.validate(Environment::Development).is_ok());
        let refused = private.validate(Environment::Production).expect_err("refused");
        assert!(
            refused
                .to_string()
                .starts_with("APP_WEBHOOKS__ALLOW_PRIVATE_DESTINATIONS is for development")
        );
        let no_timeout = WebhooksConfig {
            timeout_ms: 0,
            ..WebhooksConfig::default()
        };
        assert_eq!(
            no_timeout
                .validate(Environment::Development)
                .expect_err("refused")
                .to_string(),
            "APP_WEBHOOKS__TIMEOUT_MS must be greater than 0"
        );
    }
}
