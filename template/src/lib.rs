//! The service as a library: `main.rs` only calls [`cli::main`], and tests build the router
//! with [`app`] around an [`AppState`] of their own.

{% if auth != "none" %}pub mod auth;
{% endif %}pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
{% if realtime or jobs and example %}pub mod events;
{% endif %}pub mod http;
{% if jobs %}pub mod jobs;
{% endif %}pub mod limits;
pub mod metrics;
pub mod outbound;
{% if realtime %}pub mod realtime;
{% endif %}{% if redis %}pub mod redis;
{% endif %}mod state;
pub mod telemetry;
{% if jobs and example %}pub mod webhooks;
{% endif %}
pub use http::app;
pub use state::{AppState, Lifecycle};
