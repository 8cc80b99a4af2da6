//! Logging: one `tracing` subscriber for the process, JSON lines in production and readable
//! lines in development. Request spans carry the request id, so every line of a request has it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{Environment, LogConfig, LogFormat};

/// Installs the global subscriber; call once, before anything logs.
pub fn init(config: &LogConfig, environment: Environment) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(config.filter.as_deref().unwrap_or("info"))
        .map_err(|err| anyhow::anyhow!("invalid configuration: APP_LOG__FILTER: {err}"))?;
    let format = config.format.unwrap_or(match environment {
        Environment::Production => LogFormat::Json,
        Environment::Development => LogFormat::Pretty,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stdout);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("logging is already initialised: {err}"))
}
