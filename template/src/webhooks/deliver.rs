//! Delivering one message to one endpoint: the job, and the outbound HTTP client it uses. A
//! delivery succeeds on a 2xx answer; anything else (another status, a redirect, a timeout, a
//! refused connection, an open circuit) is recorded and retried with the queue's backoff until
//! the job's attempts run out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::breaker::Breakers;
use super::guard::{self, GuardedResolver};
use super::metrics::{OutcomeLabels, WebhookMetrics};
use super::{EventType, WebhooksConfig, signature};
use crate::db;
use crate::db::webhooks::{Destination, NewDelivery};
use crate::jobs::Job;
use crate::{AppState, telemetry};

/// A message for one endpoint. The body is fixed when the change commits, so every attempt
/// sends, and signs, the same bytes under the same `webhook-id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliver {
    pub endpoint_id: Uuid,
    pub message_id: String,
    pub event: EventType,
    pub body: String,
    /// Of the request that made the change, sent along as `x-request-id`.
    pub request_id: Option<String>,
}

impl Job for Deliver {
    const KIND: &'static str = "webhook-delivery";
    /// Their own queue, so that slow receivers never hold up other jobs.
    const QUEUE: &'static str = "webhooks";
    /// With the default backoff, the last attempt comes about two hours after the first.
    const MAX_ATTEMPTS: i32 = 8;

    async fn run(self, state: AppState) -> anyhow::Result<()> {
        let Some(destination) = db::webhooks::destination(state.db.pool(), self.endpoint_id).await? else {
            // The endpoint was deleted since: nobody to tell.
            return Ok(());
        };
        let attempt = state.webhooks.send(&destination, &self).await;
        db::webhooks::record(
            state.db.pool(),
            NewDelivery {
                endpoint_id: self.endpoint_id,
                message_id: &self.message_id,
                event: self.event.as_str(),
                status: attempt.status,
                latency: attempt.latency,
                error: attempt.error.as_deref(),
            },
        )
        .await?;
        match attempt.error {
            Some(error) => Err(anyhow!(error)),
            None => Ok(()),
        }
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why it failed; `None` when delivered.
    pub error: Option<String>,
}

/// The client that sends deliveries, shared by every job of a process.
#[derive(Debug)]
pub struct Outbound {
    client: reqwest::Client,
    breakers: Breakers,
    allow_private: bool,
    max_response_bytes: usize,
    metrics: WebhookMetrics,
}

impl Outbound {
    pub fn new(config: &WebhooksConfig, metrics: &WebhookMetrics) -> anyhow::Result<Self> {
        crate::outbound::install_tls();
        let allow_private = config.allow_private_destinations;
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.timeout())
            // A redirect could lead anywhere, past the checks at registration.
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the destination: a proxy would resolve names past the guard.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!(env!("CARGO_PKG_NAME"), "-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| anyhow!("cannot set up the webhooks' HTTP client: {err}"))?;
        Ok(Self {
            client,
            breakers: Breakers::new(config.circuit_failures, config.circuit_open(), metrics.circuits.clone()),
            allow_private,
            max_response_bytes: config.max_response_bytes,
            metrics: metrics.clone(),
        })
    }

    /// Sends `delivery` to `destination` once.
    pub async fn send(&self, destination: &Destination, delivery: &Deliver) -> Attempt {
        let started = Instant::now();
        let (outcome, status, error) = match self.try_send(destination, delivery).await {
            Ok(status) => ("delivered", Some(status), None),
            Err(Failed::Refused(why)) => ("refused", None, Some(why)),
            Err(Failed::Answered(status, why)) => ("failed", status, Some(why)),
        };
        self.metrics.deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
        Attempt {
            status,
            latency: started.elapsed(),
            error,
        }
    }

    async fn try_send(&self, destination: &Destination, delivery: &Deliver) -> Result<u16, Failed> {
        let url = guard::parse(&destination.url, self.allow_private)
            .map_err(|refused| Failed::Refused(format!("the destination {}", refused.0)))?;
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        if let Err(wait) = self.breakers.admit(&key, Instant::now()) {
            return Err(Failed::Refused(format!(
                "the circuit for {key} is open after repeated failures; next trial in {} s",
                wait.as_secs().max(1)
            )));
        }
        let result = self.request(url, &destination.secret, delivery).await;
        self.breakers.record(&key, result.is_ok(), Instant::now());
        result
    }

    async fn request(&self, url: reqwest::Url, secret: &str, delivery: &Deliver) -> Result<u16, Failed> {
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = signature::sign(secret, &delivery.message_id, timestamp, &delivery.body)
            .map_err(|err| Failed::Refused(err.to_string()))?;
        // The call is a span of the job's trace, and sends that trace on as `traceparent`.
        let span = tracing::info_span!("webhook delivery", otel.kind = tracing::field::Empty);
        let mut trace = HeaderMap::new();
        telemetry::inject(&span, &mut trace);
        let mut request = self
            .client
            .post(url)
            .headers(trace)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(delivery.body.clone());
        if let Some(request_id) = &delivery.request_id {
            request = request.header("x-request-id", request_id);
        }
        let mut response = request
            .send()
            .instrument(span)
            .await
            .map_err(|err| Failed::Answered(None, describe(err)))?;
        let status = response.status();
        // Read what the receiver sends, up to the cap, so that the connection can serve the
        // next delivery; past the cap it is dropped instead.
        let mut read = 0;
        while read <= self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                Err(err) => return Err(Failed::Answered(Some(status.as_u16()), describe(err))),
            }
        }
        if status.is_success() {
            Ok(status.as_u16())
        } else if status.is_redirection() {
            Err(Failed::Answered(
                Some(status.as_u16()),
                format!("answered {status}; redirects are not followed"),
            ))
        } else {
            Err(Failed::Answered(Some(status.as_u16()), format!("answered {status}")))
        }
    }
}

/// Why an attempt failed: before any request went out, or after.
enum Failed {
    Refused(String),
    Answered(Option<u16>, String),
}

/// A transport error with its causes, which say what actually happened (the guard's refusal,
/// a refused connection, a timeout), without the URL: some receivers put a token in it, and
/// the error reaches the logs.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
