//! Container engines: docker or podman, whichever runs here, and the compose tool that goes
//! with it. Shared by `db` (PostgreSQL under compose) and `docker` (images and the local stack).

use anyhow::bail;
use xshell::{Cmd, Shell, cmd};

use crate::flags::Engine;
use crate::project::works;

/// The engine to use: the one asked for if it runs, else docker, else podman.
pub fn choose(sh: &Shell, asked: Option<Engine>) -> anyhow::Result<Engine> {
    let candidates = asked.map_or(vec![Engine::Docker, Engine::Podman], |engine| vec![engine]);
    for engine in &candidates {
        if runs(sh, *engine) {
            return Ok(*engine);
        }
    }
    match asked {
        Some(engine) => bail!(
            "{} does not answer here: is it installed and its service running?",
            name(engine)
        ),
        None => bail!(
            "neither docker nor podman answers here: install Docker (and start its daemon) or Podman, \
             or pass --engine to say which"
        ),
    }
}

/// The first engine that runs and has a compose tool, if any.
pub fn with_compose(sh: &Shell) -> Option<Engine> {
    [Engine::Docker, Engine::Podman]
        .into_iter()
        .find(|engine| runs(sh, *engine) && compose_program(sh, *engine).is_some())
}

pub fn runs(sh: &Shell, engine: Engine) -> bool {
    works(sh, name(engine), &["info"])
}

pub fn name(engine: Engine) -> &'static str {
    match engine {
        Engine::Docker => "docker",
        Engine::Podman => "podman",
    }
}

/// `compose --file docker/compose.yaml` for `engine`: `docker compose`, `podman compose`, or
/// the standalone `podman-compose` that older podman releases need.
pub fn compose(sh: &Shell, engine: Engine) -> anyhow::Result<Cmd<'_>> {
    let Some(program) = compose_program(sh, engine) else {
        bail!(
            "{} has no compose here: install the compose plugin (docker) or podman-compose (podman)",
            name(engine)
        )
    };
    let (first, rest) = program.split_first().expect("a program name");
    Ok(cmd!(sh, "{first}").args(rest).args(["--file", "docker/compose.yaml"]))
}

fn compose_program(sh: &Shell, engine: Engine) -> Option<Vec<&'static str>> {
    let candidates: &[&[&str]] = match engine {
        Engine::Docker => &[&["docker", "compose"]],
        Engine::Podman => &[&["podman", "compose"], &["podman-compose"]],
    };
    candidates
        .iter()
        .find(|program| works(sh, program[0], &[&program[1..], &["version"][..]].concat()))
        .map(|program| program.to_vec())
}
