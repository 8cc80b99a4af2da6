//! Running cargo-generate on this repository: the pinned version is installed when missing, and
//! the template is staged outside the repository first, because cargo-generate copies the whole
//! source directory (`target/` included) before it renders anything.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// The cargo-generate release this template is tested with.
pub const CARGO_GENERATE_VERSION: &str = "0.23.5";

/// A shell with the variables cargo set for this xtask's own run emptied. Build scripts watch
/// some of them (ring's watches `CARGO_MANIFEST_DIR`); the generated services' xtasks empty
/// them too, so the builds of every service and case see the same values and share their
/// dependencies instead of rebuilding them.
pub fn shell() -> anyhow::Result<Shell> {
    let sh = Shell::new()?;
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

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Where generated services build: one target directory shared by all of them, outside the
/// repository, so dependencies compile once for every case and demo.
pub fn shared_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEMPLATE_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("HOME").map_or_else(std::env::temp_dir, |home| PathBuf::from(home).join(".cache"));
    cache.join("rust-service-template").join("target")
}

/// A scratch directory outside the repository, emptied first.
pub fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("rust-service-template").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Makes sure `cargo generate` runs, installing the pinned version when it is missing.
pub fn ensure_cargo_generate(sh: &Shell) -> anyhow::Result<()> {
    if let Ok(version) = cmd!(sh, "cargo generate --version").quiet().ignore_stderr().read() {
        if !version.contains(CARGO_GENERATE_VERSION) {
            eprintln!("note: using {version}; the template is tested with cargo-generate {CARGO_GENERATE_VERSION}");
        }
        return Ok(());
    }
    eprintln!("installing cargo-generate {CARGO_GENERATE_VERSION} (once; takes a few minutes)");
    cmd!(sh, "cargo install cargo-generate@{CARGO_GENERATE_VERSION} --locked")
        .run()
        .context("cannot install cargo-generate; install it yourself with `cargo install cargo-generate --locked`")?;
    Ok(())
}

/// Copies what cargo-generate needs from the template repository at `root` (its
/// configuration, the hooks and the template) to a fresh directory of this process.
fn stage(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let stage = scratch_dir(&format!("stage-{}", std::process::id()))?;
    for entry in ["cargo-generate.toml", "hooks", "template"] {
        cmd!(sh, "cp -R {root}/{entry} {stage}/").quiet().run()?;
    }
    Ok(stage)
}

/// The outcome of one cargo-generate run.
pub struct Generated {
    pub success: bool,
    pub output: String,
    pub dir: PathBuf,
}

/// Generates `name` from the template repository at `root` into `dest/name` with `defines`
/// and no prompts.
pub fn generate(
    sh: &Shell,
    root: &Path,
    name: &str,
    defines: &[(String, String)],
    dest: &Path,
) -> anyhow::Result<Generated> {
    let stage = stage(sh, root)?;
    let defines: Vec<String> = defines
        .iter()
        .flat_map(|(key, value)| ["-d".to_owned(), format!("{key}={value}")])
        .collect();
    std::fs::create_dir_all(dest)?;
    let before = entries(dest);
    // cargo-generate wants a user name even when the template does not use it.
    let user = std::env::var("USER").unwrap_or_else(|_| "developer".to_owned());
    // --force keeps the name exactly as given, so the pre hook judges what the user typed
    // instead of a silently kebab-cased version of it.
    let output = cmd!(
        sh,
        "cargo generate --path {stage} template --name {name} --force --silent --vcs none --destination {dest} {defines...}"
    )
    .env("USER", user)
    .ignore_status()
    .quiet()
    .output()?;
    let _ = std::fs::remove_dir_all(&stage);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        // cargo-generate creates the directory before its hooks refuse the input; leave no
        // empty directory behind.
        for entry in entries(dest).difference(&before) {
            let _ = std::fs::remove_dir(dest.join(entry));
        }
    }
    Ok(Generated {
        success: output.status.success(),
        output: text,
        dir: dest.join(name),
    })
}

fn entries(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default()
}

/// Like [`generate`], but a refusal is an error saying why.
pub fn generate_ok(
    sh: &Shell,
    root: &Path,
    name: &str,
    defines: &[(String, String)],
    dest: &Path,
) -> anyhow::Result<PathBuf> {
    let generated = generate(sh, root, name, defines, dest)?;
    if !generated.success {
        bail!("{}", generated.failure_reason());
    }
    Ok(generated.dir)
}

impl Generated {
    /// The line of cargo-generate's output that says why it refused, without decorations.
    pub fn failure_reason(&self) -> String {
        let lines: Vec<&str> = self.output.lines().map(str::trim).collect();
        let reason = lines
            .iter()
            .find_map(|line| line.strip_prefix("Runtime error: "))
            .map(|reason| reason.split(" (line ").next().unwrap_or(reason))
            .or_else(|| lines.iter().find_map(|line| line.strip_prefix("Error: ")))
            .unwrap_or(self.output.trim());
        reason.trim_start_matches(|c: char| !c.is_ascii()).trim().to_owned()
    }
}

/// Every file below `dir`, skipping build output, sorted.
pub fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                if entry.file_name() != "target" && entry.file_name() != ".git" {
                    pending.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
