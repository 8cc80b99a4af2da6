//! The command line: `serve` runs the HTTP service, `migrate` manages the schema with the same
//! binary (so a Kubernetes Job can run it from the service image), `openapi` prints the spec,
//! `healthcheck` probes a running instance; with accounts, `create-admin` bootstraps the first
//! administrator; with jobs, `worker` runs them and `jobs` manages the dead ones.
//! Failures print one line on stderr and exit non-zero.
{% if auth == "issuer" or jobs %}
{% endif %}{% if auth == "issuer" %}mod create_admin;
{% endif %}{% if jobs %}mod jobs;
{% endif %}
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::{Config, Environment};
use crate::db::Database;
use crate::db::migrate::{self, MIGRATOR};
use crate::http::{self, server};
use crate::{AppState, telemetry};

#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Directory of the per-environment configuration files (`<environment>.toml`).
    #[arg(long, env = "APP_CONFIG_DIR", default_value = "config", global = true)]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service until SIGINT or SIGTERM.
    Serve,
    /// Manage the database schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Print the OpenAPI document.
    Openapi,
{%- if realtime %}
    /// Print the AsyncAPI document of the realtime protocol.
    Asyncapi,
{%- endif %}
{%- if graphql %}
    /// Print the GraphQL schema (SDL).
    GraphqlSchema,
{%- endif %}
    /// Exit 0 if the service on this host answers its liveness probe: a container HEALTHCHECK
    /// that needs no shell or curl in the image.
    Healthcheck,
{%- if jobs %}
    /// Run background jobs until SIGINT or SIGTERM, serving only the health and metrics
    /// endpoints.
    Worker,
    /// Inspect and manage dead jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
{%- endif %}
{%- if auth == "issuer" %}
    /// Create an account with the admin role; the password is read from standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
{%- endif %}
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Apply every pending migration.
    Run,
    /// Revert the latest migrations.
    Revert {
        /// How many to revert.
        #[arg(default_value_t = 1, conflicts_with = "all")]
        steps: usize,
        /// Revert every applied migration.
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Parses the command line, runs the command and maps failure to exit code 1.
pub fn main() -> ExitCode {
    // Values already in the environment win over `.env`, which only helps local development.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. sqlx ends its own message with its cause, so a cause
/// the line already ends with is left out.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        println!("{}", crate::http::openapi().to_pretty_json()?);
        return Ok(());
    }
{%- if realtime %}
    if let Command::Asyncapi = cli.command {
        let document = crate::realtime::protocol::asyncapi();
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
{%- endif %}
{%- if graphql %}
    if let Command::GraphqlSchema = cli.command {
        print!("{}", crate::http::graphql::sdl());
        return Ok(());
    }
{%- endif %}
    let config = Config::load(&cli.config_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve => {
            let _telemetry = telemetry::init(&config.log, &config.telemetry, config.environment)?;
            runtime.block_on(serve(config, Role::Api))
        }
{%- if jobs %}
        Command::Worker => {
            let _telemetry = telemetry::init(&config.log, &config.telemetry, config.environment)?;
            runtime.block_on(serve(config, Role::Worker))
        }
        Command::Jobs(command) => runtime.block_on(jobs::run(command, &config)),
{%- endif %}
        Command::Migrate(command) => runtime.block_on(run_migrate(command, &config)),
        Command::Healthcheck => {
            let address = server::loopback(SocketAddr::new(config.server.host, config.server.port));
            server::check_live(address, Duration::from_secs(2))
        }
{%- if auth == "issuer" %}
        Command::CreateAdmin { email } => runtime.block_on(create_admin::run(&config, &email)),
{%- endif %}
        Command::Openapi{% if realtime %} | Command::Asyncapi{% endif %}{% if graphql %} | Command::GraphqlSchema{% endif %} => {
            unreachable!("handled above")
        }
    }
}

/// What a serving process does besides its health and metrics endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Serves the API{% if jobs %}, and runs jobs too when `[jobs] in_process` is set{% endif %}.
    Api,
{%- if jobs %}
    /// Runs jobs.
    Worker,
{%- endif %}
}

async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
{%- if jobs %}
    let mut config = config;
    if role == Role::Worker {
        // No load balancer routes to a worker: on SIGTERM it stops claiming at once.
        config.server.shutdown_delay_secs = 0;
    }
{%- endif %}
    let db = Database::connect(&config.database)?;
    // Before listening, so that a bad key stops the process instead of a serving instance.
    let state = AppState::new(config, db.clone())?;
    let config = state.config.clone();
    let address = SocketAddr::new(config.server.host, config.server.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let address = listener.local_addr()?;
    if let Err(err) = db.ping(config.database.acquire_timeout()).await {
        // Serving anyway lets readiness report the outage and recover without a restart.
        tracing::error!(
            error = format!("{err:#}"),
            "database unreachable at start; readiness stays down until it answers"
        );
    }
    let lifecycle = state.lifecycle.clone();
    tracing::info!(
        url = server::local_url(address),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    let shutdown = async move {
        server::shutdown_signal().await;
        lifecycle.start_draining();
    };
{%- if jobs %}
    let worker = (role == Role::Worker || state.config.jobs.in_process)
        .then(|| crate::jobs::Worker::start(state.clone()))
        .transpose()?;
{%- endif %}
    let app = match role {
        Role::Api => http::app(state.clone()),
{%- if jobs %}
        Role::Worker => http::assemble(axum::Router::new(), state.clone()),
{%- endif %}
    };
    server::serve(listener, app, &state, shutdown).await;
{%- if realtime %}
    // Now that nothing is accepted here, clients told to reconnect reach another replica.
    state.realtime.close().await;
{%- endif %}
{%- if jobs %}
    if let Some(worker) = worker {
        worker.stop().await;
    }
{%- endif %}

    if tokio::time::timeout(Duration::from_secs(5), db.close()).await.is_err() {
        tracing::warn!("database connections still in use at exit");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn run_migrate(command: MigrateCommand, config: &Config) -> anyhow::Result<()> {
    let db = Database::connect(&config.database)?;
    let pool = db.pool();
    let context = "cannot reach the database; is DATABASE_URL right and PostgreSQL running? (cargo xtask db up)";
    match command {
        MigrateCommand::Run => {
            let before = match migrate::status(&MIGRATOR, pool).await {
                // A development convenience. Elsewhere a missing database is more likely a
                // typo in DATABASE_URL than something to create.
                Err(err) if migrate::is_missing_database(&err) && config.environment == Environment::Development => {
                    let url = config.database.url.as_ref().context("DATABASE_URL is not set")?;
                    migrate::create_database(url.expose_secret())
                        .await
                        .context("the database does not exist and cannot be created")?;
                    println!("created the database");
                    migrate::status(&MIGRATOR, pool).await.context(context)?
                }
                other => other.context(context)?,
            };
            migrate::run(&MIGRATOR, pool)
                .await
                .context("migration failed and was rolled back")?;
            let applied: Vec<_> = before.iter().filter(|migration| !migration.applied).collect();
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for migration in applied {
                println!("applied {} {}", migration.version, migration.description);
            }
        }
        MigrateCommand::Revert { steps, all } => {
            let steps = (!all).then_some(steps);
            let reverted = migrate::revert(&MIGRATOR, pool, steps).await.context(context)?;
            if reverted.is_empty() {
                println!("nothing to revert");
            }
            for version in reverted {
                println!("reverted {version}");
            }
        }
        MigrateCommand::Status => {
            for migration in migrate::status(&MIGRATOR, pool).await.context(context)? {
                let state = if migration.applied { "applied" } else { "pending" };
                println!("{state:8} {} {}", migration.version, migration.description);
            }
        }
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_joined_on_one_line_without_repeats() {
        let err = anyhow::anyhow!("database \"x\" does not exist")
            .context("while executing migrations: database \"x\" does not exist")
            .context("cannot reach the database");

        assert_eq!(
            one_line(&err),
            "cannot reach the database: while executing migrations: database \"x\" does not exist"
        );
    }
}
