//! `cargo xtask ci`: the checks CI runs, runnable anywhere with the same result. The tests need
//! a PostgreSQL server: DATABASE_URL (from the environment or `.env`), or a container engine.
//! They run once, instrumented, so the coverage gate costs no second run.

use xshell::cmd;

use crate::flags::{Coverage, K8s, Openapi};
use crate::{coverage, k8s, openapi, project};

pub fn run() -> anyhow::Result<()> {
    let sh = project::shell()?;
    let cargo = project::cargo();
    step("format");
    cmd!(sh, "{cargo} fmt --all --check").run()?;
    step("lint");
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --locked -- --deny warnings"
    )
    .run()?;
    step("generated files");
    openapi::run(&Openapi { check: true })?;
    k8s::run(&K8s::Render {
        env: None,
        image: None,
        check: true,
    })?;
    step("test with coverage");
    coverage::run(&Coverage { fail_under: None })?;
    cmd!(sh, "{cargo} test --package xtask --locked").run()?;
    println!("\nci: all checks passed");
    Ok(())
}

fn step(name: &str) {
    println!("\n== {name}");
}
