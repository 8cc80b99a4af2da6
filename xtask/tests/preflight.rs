//! `cargo xtask test --preflight` on a machine without the tools: PATH holds only stand-in
//! programs, and removing one of them must fail with one line naming it and how to get it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the preflight of the `full` case (every tool a case can need but the containers')
/// with PATH and cargo's home set to `bin`, so nothing installed on this machine is found.
fn preflight(bin: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["test", "--preflight", "--case", "full"])
        .env("PATH", bin)
        .env("CARGO_HOME", bin)
        .env_remove("DOCKER_HOST")
        .env_remove("TEMPLATE_TEST_CONTAINERS")
        .env_remove("TEMPLATE_TEST_DATABASE_URL")
        .output()
        .expect("the xtask binary runs")
}

/// The programs a failed preflight names: the word before the colon of each indented line.
fn missing(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter_map(|line| line.split_once(':').map(|(program, _)| program.to_owned()))
        .collect()
}

fn stand_in(bin: &Path, program: &str) {
    let path = bin.join(program);
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").expect("writable");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn empty_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-preflight-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_tool_missing_from_path_is_named_with_how_to_install_it() {
    let bin = empty_dir("one-missing");
    let everything = missing(&preflight(&bin));
    assert!(
        everything.iter().any(|program| program == "wrk"),
        "an empty PATH lacks wrk too: {everything:?}"
    );
    for program in everything.iter().filter(|program| *program != "wrk") {
        stand_in(&bin, program);
    }

    let output = preflight(&bin);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the preflight passed without wrk");
    assert_eq!(missing(&output), ["wrk"], "{stderr}");
    assert!(stderr.contains("one tool is missing"), "{stderr}");
    assert!(
        stderr.contains("  wrk: the HTTP load benchmark; install: apt-get install wrk"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&bin);
}

#[test]
fn the_preflight_passes_once_every_tool_is_there() {
    let bin = empty_dir("all-there");
    let everything = missing(&preflight(&bin));
    assert!(everything.len() >= 5, "an empty PATH lacks more: {everything:?}");
    for program in &everything {
        stand_in(&bin, program);
    }

    let output = preflight(&bin);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("every tool the selected cases need is here"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&bin);
}
