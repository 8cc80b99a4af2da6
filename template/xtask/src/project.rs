//! Shared facts about the project: where it lives, how to run its binary, and its `.env`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Cmd, Shell, cmd};

/// The workspace root, i.e. the service's directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A shell whose working directory is the workspace root, with the variables cargo set for
/// this xtask's own run emptied. Build scripts watch some of them (ring's watches
/// `CARGO_MANIFEST_DIR`): left as they are, they differ from project to project, and projects
/// sharing a target directory would rebuild those dependencies for each other.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let of_this_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(&*name, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE");
        if of_this_run {
            sh.set_var(&*name, "");
        }
    }
    Ok(sh)
}

/// The cargo that runs this xtask, so nested builds use the same toolchain.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Makes sure the cargo tool `krate` is installed at `version`, installing it on first use;
/// `program args... --version` prints the installed version as its last word.
pub fn ensure_cargo_tool(sh: &Shell, krate: &str, version: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let installed = cmd!(sh, "{program} {args...} --version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if installed.split_whitespace().last() == Some(version) {
        return Ok(());
    }
    println!("installing {krate} {version} (once)");
    let cargo = cargo();
    cmd!(sh, "{cargo} install {krate} --version {version} --locked")
        .run()
        .with_context(|| {
            format!("cannot install {krate}; install it with `cargo install {krate} --version {version} --locked`")
        })
}

/// `cargo run` of the service binary with `args`; migrations and the OpenAPI document come
/// from the binary itself, the same code a container runs.
pub fn service<'a>(sh: &'a Shell, args: &[&str]) -> Cmd<'a> {
    let cargo = cargo();
    cmd!(sh, "{cargo} run --quiet --").args(args)
}

/// The value of `key` in `.env`, if the file has it (`KEY=value` lines, optionally quoted).
pub fn dotenv_get(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(root().join(".env")).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Sets `key` in `.env`, keeping every other line as it was.
pub fn dotenv_set(key: &str, value: &str) -> anyhow::Result<()> {
    let path = root().join(".env");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut replaced = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((name, _)) if name.trim() == key => {
                replaced = true;
                format!("{key}={value}")
            }
            _ => line.to_owned(),
        })
        .collect();
    if !replaced {
        lines.push(format!("{key}={value}"));
    }
    std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Whether `program` can be started (found on PATH and runs `args` successfully).
pub fn works(sh: &Shell, program: &str, args: &[&str]) -> bool {
    cmd!(sh, "{program}")
        .args(args)
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// A text field of the `[package]` table in Cargo.toml, such as `name`.
pub fn package_field(key: &str) -> anyhow::Result<String> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml"))?)?;
    manifest
        .get("package")
        .and_then(|package| package.get(key))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("Cargo.toml has no package {key}"))
}
