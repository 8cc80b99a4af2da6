//! The command line of `cargo xtask`.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Development workflows of this service")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development database and migrations.
    #[command(subcommand)]
    Db(Db),
    /// Start the database, migrate, and run the service.
    Dev(Dev),
    /// Write the API documents (openapi.json{% if realtime %}, asyncapi.json{% endif %}), or check that they are current.
    Openapi(Openapi),
    /// The service image and a local stack of it with PostgreSQL.
    #[command(subcommand)]
    Docker(Docker),
    /// Kubernetes manifests per environment.
    #[command(subcommand)]
    K8s(K8s),
    /// Criterion benches, then an HTTP load benchmark against a hello-world yardstick.
    Bench(Bench),
    /// Run the tests with line coverage; reports in target/coverage.
    Coverage(Coverage),
    /// Mutation testing with cargo-mutants: the small bugs in the service the tests miss.
    Mutants(Mutants),
{%- if jobs %}
    /// Dead jobs on the development database: list, retry, discard.
    #[command(subcommand)]
    Jobs(Jobs),
{%- endif %}
    /// Everything CI checks: formatting, lints, generated files, tests with the coverage gate.
    Ci,
}

#[derive(Debug, Subcommand)]
pub enum Db {
    /// Start a development PostgreSQL{% if redis %} and Redis{% endif %} (compose when a container engine runs,
    /// otherwise the local binaries) and write DATABASE_URL{% if redis %} and REDIS_URL{% endif %} to .env.
    Up(DbUp),
    /// Stop the development PostgreSQL{% if redis %} and Redis{% endif %}.
    Down {
        /// Also delete its data: the compose volume, or the local data {% if redis %}directories{% else %}directory{% endif %}.
        #[arg(long)]
        delete_data: bool,
    },
    /// Apply pending migrations (creates the database when missing).
    Migrate,
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
    /// Create an empty reversible migration.
    New {
        /// Lowercase words joined by underscores, e.g. add_user_email.
        name: String,
    },
    /// Revert every migration, then apply them all again.
    Reset,
}

/// The development servers' default host ports: beside, not on, the ones a system-wide server takes.
const POSTGRES_PORT: u16 = 55432;
{%- if redis %}
const REDIS_PORT: u16 = 56379;
{%- endif %}

#[derive(Debug, Args)]
pub struct DbUp {
    /// Host port for PostgreSQL.
    #[arg(long, default_value_t = POSTGRES_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
{%- if redis %}
    /// Host port for Redis.
    #[arg(long, default_value_t = REDIS_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub redis_port: u16,
{%- endif %}
    /// Where to run {% if redis %}them{% else %}it{% endif %}; by default compose if a container engine answers, else local binaries.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

impl Default for DbUp {
    /// What `db up` without flags means, for commands that start the database themselves.
    fn default() -> Self {
        Self {
            port: POSTGRES_PORT,
{%- if redis %}
            redis_port: REDIS_PORT,
{%- endif %}
            backend: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Docker,
    Podman,
    Local,
}

#[derive(Debug, Subcommand)]
pub enum Docker {
    /// Build the image from docker/Dockerfile.
    Build {
        /// Image reference; defaults to <package>:<version>.
        #[arg(long)]
        tag: Option<String>,
        /// Push the image after building it.
        #[arg(long)]
        push: bool,
        #[command(flatten)]
        engine: EngineChoice,
    },
    /// Build the image, then start PostgreSQL, the migrations and the service with compose.
    Up {
        #[command(flatten)]
        engine: EngineChoice,
    },
    /// Stop and remove the compose stack; the database's volume stays unless asked.
    Down {
        #[command(flatten)]
        engine: EngineChoice,
        /// Also delete the volumes, and with them the database's data.
        #[arg(long)]
        volumes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum K8s {
    /// Write k8s/rendered/<env>.yaml from k8s/templates and k8s/values/<env>.toml.
    Render {
        /// The environment (a file in k8s/values); all of them when omitted.
        #[arg(long)]
        env: Option<String>,
        /// The image to deploy instead of the one in the values file.
        #[arg(long)]
        image: Option<String>,
        /// Fail if the committed manifests differ from a fresh render, instead of writing.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Args)]
pub struct EngineChoice {
    /// The container engine; by default docker if it runs, else podman.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Docker,
    Podman,
}

#[derive(Debug, Args)]
pub struct Dev {
    #[command(flatten)]
    pub db: DbUp,
}

#[derive(Debug, Args)]
pub struct Openapi {
    /// Fail if a document differs from what the code produces, instead of writing it.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct Coverage {
    /// Fail below this line coverage, in percent (default: the CI gate).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_under: Option<u8>,
}

#[derive(Debug, Args)]
pub struct Mutants {
    /// Mutate only this file, e.g. src/http/authn.rs (globs as cargo-mutants takes them);
    /// repeatable. Every file of the service when omitted: that takes an hour or more.
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<String>,
}

{%- if jobs %}

#[derive(Debug, Subcommand)]
pub enum Jobs {
    /// List dead jobs, most recent first, with their last error.
    Dead {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Run a dead job again, with fresh attempts.
    Retry { id: String },
    /// Delete a dead job.
    Discard { id: String },
}
{%- endif %}

#[derive(Debug, Args)]
pub struct Bench {
    /// Shorter runs: for checking that the benchmark works, not for numbers to keep.
    #[arg(long)]
    pub quick: bool,
    /// Write this run's ratios to bench/baseline.json instead of comparing with it.
    #[arg(long)]
    pub save_baseline: bool,
    /// How far, in percent, throughput relative to hello-world may fall below the baseline.
    #[arg(long, default_value_t = 35, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub tolerance: u8,
    /// Also record a CPU profile of the main authenticated read with perf: a flame graph and
    /// the top costs in target/bench.
    #[arg(long)]
    pub profile: bool,
    /// Then keep that read under steady load for this many minutes, sampling the service's
    /// resident memory every half minute.
    #[arg(long, value_name = "MINUTES", default_value_t = 0)]
    pub soak: u32,
}
