//! `cargo xtask ci`: the checks CI runs, runnable anywhere with the same result. Tests need a
//! PostgreSQL server: DATABASE_URL (from the environment or `.env`), or a container engine.

use xshell::cmd;

use crate::flags::Openapi;
use crate::{openapi, project};

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
    step("test");
    let _url = std::env::var("DATABASE_URL")
        .ok()
        .or_else(|| project::dotenv_get("DATABASE_URL"))
        .map(|url| sh.push_env("DATABASE_URL", url));
    cmd!(sh, "{cargo} test --workspace --locked").run()?;
    step("generated files");
    openapi::run(&Openapi { check: true })?;
    println!("\nci: all checks passed");
    Ok(())
}

fn step(name: &str) {
    println!("\n== {name}");
}
