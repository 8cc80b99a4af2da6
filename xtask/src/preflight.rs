//! The first step of `cargo xtask test`: every program and service the selected cases will
//! call is looked up before anything is built, so a missing one fails in seconds with how to
//! get it, not twenty minutes into a case.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::cases::Case;

/// An external program a check calls, and how to install it on Debian.
struct Tool {
    program: &'static str,
    used_by: &'static str,
    install: &'static str,
}

const fn tool(program: &'static str, used_by: &'static str, install: &'static str) -> Tool {
    Tool {
        program,
        used_by,
        install,
    }
}

/// What every case needs: its database, its CI and the checks after it.
const EVERY_CASE: &[Tool] = &[
    tool(
        "cargo-llvm-cov",
        "the coverage gate of cargo xtask ci",
        "cargo install cargo-llvm-cov --locked",
    ),
    tool(
        "cargo-deny",
        "the dependency policy check",
        "cargo install cargo-deny --locked",
    ),
    tool(
        "kubernetes-validate",
        "the Kubernetes schema check",
        "pip install kubernetes-validate",
    ),
    tool("zizmor", "the GitHub Actions audit", "pip install zizmor"),
    tool(
        "st",
        "the contract check (schemathesis)",
        "pip install schemathesis==4.32.5",
    ),
    tool(
        "check-jsonschema",
        "the GitHub Actions schema check",
        "pip install check-jsonschema",
    ),
];

/// What a case's development database needs, unless TEMPLATE_TEST_DATABASE_URL names one.
const LOCAL_DATABASE: &[Tool] = &[
    tool("initdb", "the cases' own PostgreSQL", "apt-get install postgresql"),
    tool("pg_ctl", "the cases' own PostgreSQL", "apt-get install postgresql"),
];

/// What the development Redis of a case with `redis` needs, started by its own `db up`.
/// The realtime cases' check, which installs socket.io-client from npm and runs it.
const REALTIME: &[Tool] = &[
    tool(
        "node",
        "the socket.io-client check of the realtime cases",
        "apt-get install nodejs",
    ),
    tool(
        "npm",
        "installing socket.io-client for that check",
        "apt-get install npm",
    ),
];

const LOCAL_REDIS: &[Tool] = &[tool(
    "redis-server",
    "the redis cases' own Redis",
    "apt-get install redis-server",
)];

/// What the container checks need (cases with `containers = true`).
const CONTAINERS: &[Tool] = &[
    tool("podman", "the container checks", "apt-get install podman runc"),
    tool(
        "podman-compose",
        "the compose stack check",
        "pip install podman-compose==1.6.0",
    ),
    tool("debootstrap", "the stand-in images", "apt-get install debootstrap"),
    tool("openssl", "the image's signing key", "apt-get install openssl"),
];

/// What the benchmark check needs (cases with `bench = true`).
const BENCH: &[Tool] = &[tool("wrk", "the HTTP load benchmark", "apt-get install wrk")];

/// How the run is set up: which cases, and whether the container checks must run.
pub struct Plan<'a> {
    pub cases: Vec<&'a Case>,
    pub containers: Containers,
    pub local_database: bool,
}

/// Whether the container checks run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Containers {
    /// TEMPLATE_TEST_CONTAINERS=required: missing podman is an error.
    Required,
    /// They run when podman serves its API at DOCKER_HOST, and are skipped otherwise.
    WhenAvailable,
}

impl Containers {
    pub fn from_env() -> Self {
        if std::env::var("TEMPLATE_TEST_CONTAINERS").is_ok_and(|value| value == "required") {
            Self::Required
        } else {
            Self::WhenAvailable
        }
    }
}

/// Fails with one line per missing program or service, saying what needs it and how to get it.
pub fn check(plan: &Plan) -> anyhow::Result<()> {
    let search = Search::from_env();
    let mut needed: Vec<&Tool> = EVERY_CASE.iter().collect();
    if plan.local_database {
        needed.extend(LOCAL_DATABASE);
        if plan.cases.iter().any(|case| case.on("redis")) {
            needed.extend(LOCAL_REDIS);
        }
    }
    if plan.cases.iter().any(|case| case.on("realtime")) {
        needed.extend(REALTIME);
    }
    if plan.cases.iter().any(|case| case.bench) {
        needed.extend(BENCH);
    }
    let with_containers = plan.cases.iter().any(|case| case.containers);
    let mut missing: Vec<String> = Vec::new();
    if with_containers {
        match (plan.containers, podman_socket()) {
            (_, Ok(_)) => needed.extend(CONTAINERS),
            (Containers::Required, Err(reason)) => {
                needed.extend(CONTAINERS);
                missing.push(format!(
                    "  podman API socket: the container checks ({reason}); start it with \
                     `podman system service --time=0 unix:///run/podman/podman.sock &` and \
                     export DOCKER_HOST=unix:///run/podman/podman.sock"
                ));
            }
            (Containers::WhenAvailable, Err(reason)) => {
                println!("container checks will be skipped: {reason}");
            }
        }
    }
    for tool in needed {
        if search.find(tool.program).is_none() {
            missing.push(format!(
                "  {}: {}; install: {}",
                tool.program, tool.used_by, tool.install
            ));
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        bail!(
            "{} missing for the selected cases (`bash .ci/run` installs all of them):\n{}",
            if missing.len() == 1 { "one tool is" } else { "tools are" },
            missing.join("\n")
        );
    }
    println!("every tool the selected cases need is here");
    Ok(())
}

/// The path of the podman API socket DOCKER_HOST names, if something answers on it.
fn podman_socket() -> Result<PathBuf, String> {
    let host = std::env::var("DOCKER_HOST").map_err(|_| "DOCKER_HOST is not set".to_owned())?;
    let path = host
        .strip_prefix("unix://")
        .filter(|path| path.contains("podman"))
        .ok_or_else(|| format!("DOCKER_HOST={host} is not podman's unix socket"))?;
    std::os::unix::net::UnixStream::connect(path)
        .map(|_| PathBuf::from(path))
        .map_err(|err| format!("nothing answers on {path}: {err}"))
}

/// Where programs are looked up: PATH, then cargo's own bin directory (cargo finds its
/// subcommands there too), then Debian's PostgreSQL directories, as the generated xtask does.
struct Search {
    dirs: Vec<PathBuf>,
}

impl Search {
    fn from_env() -> Self {
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
        dirs.extend(cargo_home.map(|home| home.join("bin")));
        let mut postgres: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .collect();
        postgres.sort();
        dirs.extend(postgres.into_iter().rev());
        Self { dirs }
    }

    fn find(&self, program: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join(program))
            .find(|path| is_executable(path))
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
