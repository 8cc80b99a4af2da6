//! `cargo xtask coverage [--fail-under N]`: line coverage of the service from its own tests,
//! with cargo-llvm-cov (installed when missing). Reports land in `target/coverage`: HTML for
//! people, lcov for tools.

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::flags::Coverage;
use crate::project;

/// The line coverage `cargo xtask ci` requires, in percent. Change it here, and only here.
pub const REQUIRED_LINE_COVERAGE: u8 = 90;

pub fn run(flags: &Coverage) -> anyhow::Result<()> {
    let sh = project::shell()?;
    ensure_tools(&sh)?;
    let cargo = project::cargo();
    let output = project::root().join("target").join("coverage");
    let lcov = output.join("lcov.info");
    // The tests run once; each report reads the same profile data. xtask is tooling and is
    // left out of the figure.
    // Profiles from an earlier run, or from another project sharing the target directory,
    // would be counted too.
    cmd!(sh, "{cargo} llvm-cov clean --workspace").quiet().run()?;
    cmd!(sh, "{cargo} llvm-cov --no-report --workspace --exclude xtask --locked").run()?;
    cmd!(sh, "{cargo} llvm-cov report --html --output-dir {output}")
        .quiet()
        .run()?;
    cmd!(sh, "{cargo} llvm-cov report --lcov --output-path {lcov}")
        .quiet()
        .run()?;
    let fail_under = flags.fail_under.unwrap_or(REQUIRED_LINE_COVERAGE).to_string();
    cmd!(
        sh,
        "{cargo} llvm-cov report --summary-only --fail-under-lines {fail_under}"
    )
    .run()
    .with_context(|| {
        format!(
            "line coverage is below {fail_under}%; see {}",
            output.join("html/index.html").display()
        )
    })?;
    println!(
        "coverage reports: {} and {}",
        output.join("html/index.html").display(),
        lcov.display()
    );
    Ok(())
}

/// cargo-llvm-cov and the LLVM tools it drives, installed on first use.
fn ensure_tools(sh: &Shell) -> anyhow::Result<()> {
    let cargo = project::cargo();
    if cmd!(sh, "{cargo} llvm-cov --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        println!("installing cargo-llvm-cov (once)");
        cmd!(sh, "{cargo} install cargo-llvm-cov --locked")
            .run()
            .context("cannot install cargo-llvm-cov; install it with `cargo install cargo-llvm-cov --locked`")?;
    }
    let components = cmd!(sh, "rustup component list --installed")
        .quiet()
        .read()
        .unwrap_or_default();
    if !components.lines().any(|line| line.starts_with("llvm-tools")) {
        cmd!(sh, "rustup component add llvm-tools-preview")
            .run()
            .context("cannot add the llvm-tools-preview component; add it with rustup")?;
    }
    Ok(())
}
