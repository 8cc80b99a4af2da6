//! `cargo xtask mutants [--file F ...]`: mutation testing with cargo-mutants (installed when
//! missing, at the version pinned here). Each mutant is one small bug put into the service (a
//! comparison turned around, a function body replaced by a default value); the tests should
//! fail for every one, and one they miss shows a gap in them. Every mutant costs a build and
//! a test run, so this is not part of `ci`: point it at the files you changed. The report,
//! with the missed mutants listed in `missed.txt`, lands in `target/mutants/mutants.out`.

use std::process::Command;

use anyhow::{Context, bail};
use xshell::cmd;

use crate::flags::Mutants;
use crate::project;

/// The cargo-mutants this command is written against: its flags and exit codes.
const CARGO_MUTANTS_VERSION: &str = "27.1.0";

pub fn run(flags: &Mutants) -> anyhow::Result<()> {
    let root = project::root();
    for file in &flags.files {
        let glob = file.contains(['*', '?', '[']);
        if !glob && !root.join(file).is_file() {
            bail!("--file {file}: no such file in {}", root.display());
        }
    }
    let sh = project::shell()?;
    let cargo = project::cargo();
    project::ensure_cargo_tool(&sh, "cargo-mutants", CARGO_MUTANTS_VERSION, &cargo, &["mutants"])?;
    // The mutants are built in a copy of the project, where `.env` may not be: the tests find
    // their database through the environment instead.
    if std::env::var_os("DATABASE_URL").is_none()
        && let Some(url) = project::dotenv_get("DATABASE_URL")
    {
        sh.set_var("DATABASE_URL", url);
    }
    let package = project::package_field("name")?;
    let output = root.join("target").join("mutants");
    let files = flags.files.iter().flat_map(|file| ["--file", file.as_str()]);
    let mutants = cmd!(sh, "{cargo} mutants --package {package} --output {output} {files...}");
    let status = Command::from(mutants).status().context("cannot run cargo mutants")?;
    let report = output.join("mutants.out");
    match status.code() {
        Some(0) => {
            println!("every mutant was caught; report in {}", report.display());
            Ok(())
        }
        Some(4) => bail!("the tests fail before any mutation: fix them first (`cargo test`)"),
        // 2: some mutants missed, 3: some timed out; both may hold.
        Some(2 | 3) => {
            let listed = |name: &str| std::fs::read_to_string(report.join(name)).unwrap_or_default();
            bail!(
                "mutants the tests did not catch:\n{}mutants that made the tests time out:\n{}report in {}",
                listed("missed.txt"),
                listed("timeout.txt"),
                report.display()
            )
        }
        _ => bail!("cargo mutants failed ({status})"),
    }
}
