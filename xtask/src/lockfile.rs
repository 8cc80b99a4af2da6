//! A service starts with the template's lock file, which resolves the union of every shape's
//! dependencies (see `snapshots`); its first cargo command drops what this service does not
//! use. That first use must keep every version the template was tested with and add nothing.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

/// Runs the service's first cargo command and compares its lock file before and after.
pub fn check_first_use(sh: &Shell, project: &Path) -> anyhow::Result<()> {
    let path = project.join("Cargo.lock");
    let shipped = packages(&std::fs::read_to_string(&path)?)?;
    cmd!(sh, "cargo metadata --format-version 1 --quiet")
        .quiet()
        .ignore_stdout()
        .run()?;
    let used = packages(&std::fs::read_to_string(&path)?)?;
    let new: Vec<String> = used
        .difference(&shipped)
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    ensure!(
        new.is_empty(),
        "the first build resolved packages the template's Cargo.lock does not pin: {}; run `cargo xtask snapshots`",
        new.join(", ")
    );
    println!(
        "Cargo.lock: {} of the template's {} packages kept at their versions, none added",
        used.len(),
        shipped.len()
    );
    Ok(())
}

/// The (name, version) of every package in a lock file.
fn packages(lock: &str) -> anyhow::Result<BTreeSet<(String, String)>> {
    let lock: toml::Table = toml::from_str(lock).context("Cargo.lock is not TOML")?;
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .context("Cargo.lock has no packages")?;
    packages
        .iter()
        .map(|package| {
            let field = |key: &str| package.get(key).and_then(toml::Value::as_str).map(str::to_owned);
            field("name")
                .zip(field("version"))
                .context("a package without name or version")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_read_by_name_and_version() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"a\"\nversion = \"2.0.0\"\ndependencies = [\"b\"]\n";

        let found = packages(lock).expect("valid");

        assert_eq!(
            found,
            BTreeSet::from([("a".into(), "1.0.0".into()), ("a".into(), "2.0.0".into())])
        );
    }
}
