//! `cargo xtask new NAME`: generate a service from this checkout of the template.

use anyhow::bail;
use xshell::Shell;

use crate::flags::New;
use crate::generate::{self, Generated};

pub fn run(new: &New) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    generate::ensure_cargo_generate(&sh)?;
    let dest = std::path::absolute(&new.dest)?;
    if dest.join(&new.name).exists() {
        bail!(
            "{} already exists; pick another name or --dest",
            dest.join(&new.name).display()
        );
    }
    let generated = generate::generate(&sh, &new.name, &new.defines, &dest)?;
    if !generated.success {
        bail!("{}", failure_reason(&generated));
    }
    println!("{}", generated.output.trim());
    Ok(())
}

/// The line of cargo-generate's output that says why it refused, without its decorations.
pub fn failure_reason(generated: &Generated) -> String {
    let lines: Vec<&str> = generated.output.lines().map(str::trim).collect();
    let reason = lines
        .iter()
        .find_map(|line| line.strip_prefix("Runtime error: "))
        .map(|reason| reason.split(" (line ").next().unwrap_or(reason))
        .or_else(|| lines.iter().find_map(|line| line.strip_prefix("Error: ")))
        .unwrap_or(generated.output.trim());
    reason.trim_start_matches(|c: char| !c.is_ascii()).trim().to_owned()
}
