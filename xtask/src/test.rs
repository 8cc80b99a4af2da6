//! `cargo xtask test`: checks of the generator itself (bad input refused, no Liquid left
//! behind, no placeholder undefined), then every option set in `xtask/cases`: generated out of
//! tree and checked by the generated service's own `cargo xtask ci` against real PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use xshell::{Cmd, Shell, cmd};

use crate::flags::Test;
use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};
use crate::{containers, issuer_check, preflight, probe};

/// One option set: the service name to generate and the template values to pass.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case covers.
    pub about: String,
    pub name: String,
    /// Also check the container image and the tests through testcontainers (needs podman).
    #[serde(default)]
    pub containers: bool,
    /// Also run the benchmarks once, briefly: criterion and the HTTP load benchmark.
    #[serde(default)]
    pub bench: bool,
    #[serde(default)]
    pub values: BTreeMap<String, toml::Value>,
}

impl Case {
    /// Whether the case generates the example resource (the template's default: yes, unless
    /// there are no accounts to own it).
    pub fn example(&self) -> bool {
        self.values
            .get("example")
            .and_then(toml::Value::as_bool)
            .unwrap_or(self.auth() != "none")
    }

    /// Who authenticates callers (the template's default: the service itself).
    pub fn auth(&self) -> &str {
        self.values
            .get("auth")
            .and_then(toml::Value::as_str)
            .unwrap_or("issuer")
    }

    /// The values as cargo-generate `-d key=value` pairs.
    pub fn defines(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect()
    }
}

pub fn run(flags: &Test) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    // Backtraces from the tools under test only bury their error messages.
    sh.set_var("RUST_BACKTRACE", "0");
    // Ctrl-C reaches the children too; surviving it lets the databases they started stop.
    ctrlc::set_handler(|| eprintln!("interrupted; cleaning up")).context("cannot handle Ctrl-C")?;
    let cases = load_cases(&flags.cases)?;
    let external = std::env::var("TEMPLATE_TEST_DATABASE_URL").ok();
    let started = Instant::now();

    section("preflight");
    preflight::check(&preflight::Plan {
        cases: cases.values().collect(),
        containers: preflight::Containers::from_env(),
        local_database: external.is_none(),
    })?;
    if flags.preflight {
        return Ok(());
    }

    section("template tooling");
    check_tooling(&sh)?;
    generate::ensure_cargo_generate(&sh)?;

    section("generator checks");
    check_placeholders_are_defined()?;
    check_bad_input_is_refused(&sh)?;

    let mut timings = Vec::new();
    for (id, case) in &cases {
        section(&format!("case {id}: {}", case.about));
        let case_started = Instant::now();
        run_case(&sh, id, case, external.as_deref()).with_context(|| format!("case {id} failed"))?;
        timings.push((id.clone(), case_started.elapsed()));
    }

    section("summary");
    for (id, elapsed) in &timings {
        println!("{id:>12}  {}", seconds(*elapsed));
    }
    println!("{:>12}  {}", "total", seconds(started.elapsed()));
    println!("all {} case(s) passed", timings.len());
    Ok(())
}

/// This repository's own code meets the bar it sets for generated services.
fn check_tooling(sh: &Shell) -> anyhow::Result<()> {
    let _dir = sh.push_dir(repo_root());
    cmd!(sh, "cargo fmt --all --check").run()?;
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --locked --quiet -- --deny warnings"
    )
    .run()?;
    cmd!(sh, "cargo test --workspace --locked --quiet").run()?;
    check_workflows(sh, &repo_root())
}

/// GitHub Actions workflows, which nothing here can run: checked against the workflow schema
/// and audited by zizmor (unpinned actions, credentials, cache poisoning, injection), offline.
fn check_workflows(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let dir = root.join(".github").join("workflows");
    let workflows = files(&dir)?;
    let count = workflows.len();
    ensure!(count > 0, "no workflows in {}", dir.display());
    cmd!(
        sh,
        "check-jsonschema --builtin-schema vendor.github-workflows {workflows...}"
    )
    .quiet()
    .run()?;
    cmd!(sh, "zizmor --offline --no-progress --quiet {dir}")
        .quiet()
        .run()
        .context("zizmor found problems in the workflows")?;
    println!("{count} workflows valid, and zizmor finds nothing in them");
    Ok(())
}

fn section(title: &str) {
    println!("\n==== {title}");
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.0}s", elapsed.as_secs_f64())
}

/// Reads `xtask/cases/*.toml`, all of them or the ones named.
pub fn load_cases(only: &[String]) -> anyhow::Result<BTreeMap<String, Case>> {
    let dir = repo_root().join("xtask").join("cases");
    let mut cases = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let Some(id) = path.file_stem().and_then(|stem| stem.to_str()).map(str::to_owned) else {
            continue;
        };
        if path.extension().is_some_and(|extension| extension == "toml") {
            let text = std::fs::read_to_string(&path)?;
            let case: Case = toml::from_str(&text).with_context(|| format!("invalid case file {}", path.display()))?;
            cases.insert(id, case);
        }
    }
    for id in only {
        ensure!(
            cases.contains_key(id),
            "no case {id:?}; the cases are: {}",
            names(&cases)
        );
    }
    if !only.is_empty() {
        cases.retain(|id, _| only.contains(id));
    }
    ensure!(!cases.is_empty(), "no cases in {}", dir.display());
    Ok(cases)
}

fn names(cases: &BTreeMap<String, Case>) -> String {
    cases.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Generates the case and runs its CI against a PostgreSQL that its own `cargo xtask db up`
/// starts, then walks through the database workflow a developer uses.
fn run_case(sh: &Shell, id: &str, case: &Case, external_database: Option<&str>) -> anyhow::Result<()> {
    let dest = scratch_dir(&format!("cases/{id}"))?;
    let project = generate::generate_ok(sh, &case.name, &case.defines(), &dest)?;
    check_rendered(&project, case)?;
    println!("generated {} and found no leftover template syntax", project.display());

    let _dir = sh.push_dir(&project);
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    let containers = case.containers && containers_wanted(sh)?;
    if containers {
        section("tests through testcontainers on podman");
        containers::test_through_testcontainers(sh, &project)?;
    }
    if let Some(url) = external_database {
        xtask(sh).args(["ci"]).env("DATABASE_URL", url).run()?;
        println!("database workflow skipped: TEMPLATE_TEST_DATABASE_URL is set");
        return Ok(());
    }
    let database = DevDatabase::up(sh)?;
    // Creates the database the tests connect to, then applies the migrations.
    xtask(sh).args(["db", "migrate"]).run()?;
    xtask(sh).args(["ci"]).run()?;
    if case.auth() == "verifier" {
        section("tokens of an issuer generated from this template");
        issuer_check::check(sh, &project, &case.name, &database.port)?;
    }
    if case.bench {
        section("benchmarks (quick)");
        check_bench(sh, &project, case)?;
    }
    check_database_workflow(sh, &project, &database.port)?;
    database.down(&project)?;
    check_manifests(sh, &project)?;
    section("workflows");
    check_workflows(sh, &project)?;
    section("dependency policy");
    cmd!(sh, "cargo deny --log-level error check licenses bans sources")
        .run()
        .context("cargo deny failed or is missing (cargo install cargo-deny --locked)")?;
    if containers {
        section("container image");
        let port = case
            .values
            .get("http_port")
            .and_then(toml::Value::as_str)
            .unwrap_or("8080")
            .parse()?;
        let report = containers::check_image(sh, &case.name, port)?;
        println!(
            "image: {} MB (budget {} MB), ready {} ms after start, runs as 65532 without a shell",
            report.size_mb,
            containers::IMAGE_BUDGET_MB,
            report.ready_after.as_millis()
        );
        section("compose stack");
        let up_after = containers::check_compose_stack(sh, &case.name, case.auth() == "issuer")?;
        println!(
            "cargo xtask docker up: ready {} s after the command started; down left nothing",
            up_after.as_secs()
        );
    }
    Ok(())
}

/// The rendered Kubernetes manifests against the Kubernetes API schemas, offline, rejecting
/// unknown fields. (`cargo xtask ci` has already checked the service's own rules.)
fn check_manifests(sh: &Shell, project: &Path) -> anyhow::Result<()> {
    section("Kubernetes schemas");
    let manifests = files(&project.join("k8s").join("rendered"))?;
    ensure!(!manifests.is_empty(), "no rendered manifests");
    cmd!(sh, "kubernetes-validate --strict --quiet")
        .args(&manifests)
        .run()
        .context("kubernetes-validate failed or is missing (pip install kubernetes-validate)")?;
    println!("{} manifest files valid", manifests.len());
    Ok(())
}

/// `cargo xtask bench --quick` runs and its report has every endpoint, each with traffic and
/// ordered percentiles. The tolerance is wide: a quick run on a shared machine is noisy.
fn check_bench(sh: &Shell, project: &Path, case: &Case) -> anyhow::Result<()> {
    xtask(sh).args(["bench", "--quick", "--tolerance", "50"]).run()?;
    let path = project.join("target").join("bench").join("report.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut expected = vec!["health"];
    if case.auth() == "issuer" {
        expected.extend(["login", "me (authenticated)", "health during login flood"]);
    }
    // The resource's scenarios sign in at the service itself.
    if case.example() && case.auth() == "issuer" {
        expected.extend(["create", "list", "get"]);
    }
    let endpoints = report["endpoints"].as_object().context("report has no endpoints")?;
    ensure!(
        endpoints.len() == expected.len(),
        "report endpoints {:?}, expected {expected:?}",
        endpoints.keys().collect::<Vec<_>>()
    );
    for (name, entry) in expected
        .iter()
        .map(|name| (*name, &report["endpoints"][name]))
        .chain([("hello_world", &report["hello_world"])])
    {
        let number = |key: &str| entry[key].as_f64().unwrap_or(f64::NAN);
        ensure!(number("requests_per_sec") > 0.0, "{name}: no requests measured");
        ensure!(
            number("p50_ms") <= number("p95_ms") && number("p95_ms") <= number("p99_ms"),
            "{name}: percentiles out of order: {entry}"
        );
    }
    Ok(())
}

/// Whether to run a case's container checks: when podman serves the Docker API here, or
/// always (failing without it) when TEMPLATE_TEST_CONTAINERS=required, as in CI.
fn containers_wanted(sh: &Shell) -> anyhow::Result<bool> {
    let required = std::env::var("TEMPLATE_TEST_CONTAINERS").is_ok_and(|value| value == "required");
    if containers::available(sh) {
        return Ok(true);
    }
    ensure!(
        !required,
        "container checks are required, but podman with DOCKER_HOST=unix:///run/podman/podman.sock is not available"
    );
    println!("container checks skipped: no podman with DOCKER_HOST pointing at its socket");
    Ok(false)
}

/// `cargo xtask` in the generated service. A DATABASE_URL of the caller's would win over the
/// service's `.env` and point its migrations at a database that is not the test's.
fn xtask(sh: &Shell) -> Cmd<'_> {
    cmd!(sh, "cargo xtask").env_remove("DATABASE_URL")
}

/// The generated service's development database, stopped when dropped.
struct DevDatabase<'a> {
    sh: &'a Shell,
    port: String,
    stopped: bool,
}

impl<'a> DevDatabase<'a> {
    fn up(sh: &'a Shell) -> anyhow::Result<Self> {
        let port = probe::free_port()?.to_string();
        xtask(sh)
            .args(["db", "up", "--backend", "local", "--port", port.as_str()])
            .run()?;
        Ok(Self {
            sh,
            port,
            stopped: false,
        })
    }

    /// Stops the server and deletes its data, which must leave no data directory behind.
    fn down(mut self, project: &Path) -> anyhow::Result<()> {
        self.stopped = true;
        xtask(self.sh).args(["db", "down", "--delete-data"]).run()?;
        let data = project.join("target").join("postgres").join("data");
        ensure!(!data.exists(), "db down --delete-data left {}", data.display());
        Ok(())
    }
}

impl Drop for DevDatabase<'_> {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = xtask(self.sh).args(["db", "down"]).quiet().run();
        }
    }
}

/// The generated xtask's database commands as a developer runs them: migrations forwards and
/// backwards, a new migration, and bad input.
fn check_database_workflow(sh: &Shell, project: &Path, port: &str) -> anyhow::Result<()> {
    section("database workflow");
    let dotenv = std::fs::read_to_string(project.join(".env"))?;
    ensure!(
        dotenv.contains(&format!("127.0.0.1:{port}/")),
        ".env lacks the database URL: {dotenv}"
    );
    let status = xtask(sh).args(["db", "status"]).read()?;
    ensure!(!status.contains("pending"), "migrations left pending:\n{status}");
    xtask(sh).args(["db", "reset"]).run()?;
    xtask(sh).args(["db", "revert", "--all"]).run()?;
    let status = xtask(sh).args(["db", "status"]).read()?;
    ensure!(
        !status.contains("applied"),
        "migrations still applied after revert --all:\n{status}"
    );
    xtask(sh).args(["db", "migrate"]).run()?;

    let before = files(&project.join("migrations"))?;
    xtask(sh).args(["db", "new", "add_widgets"]).run()?;
    let created: Vec<PathBuf> = files(&project.join("migrations"))?
        .into_iter()
        .filter(|file| !before.contains(file))
        .collect();
    // Names are `<timestamp>_add_widgets.{up,down}.sql`; the timestamp varies.
    let suffixes: Vec<String> = created
        .iter()
        .map(|file| file.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .filter_map(|name| name.split_once('_').map(|(_, rest)| rest.to_owned()))
        .collect();
    ensure!(
        suffixes == ["add_widgets.down.sql", "add_widgets.up.sql"],
        "db new created {created:?}"
    );
    created.iter().try_for_each(std::fs::remove_file)?;

    let refused = xtask(sh)
        .args(["db", "new", "Add-Widgets"])
        .ignore_status()
        .quiet()
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("invalid migration name"),
        "bad name accepted: {stderr}"
    );
    let refused = xtask(sh).args(["db", "sideways"]).ignore_status().quiet().output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        refused.status.code() == Some(2) && stderr.contains("Usage"),
        "bad flag accepted: {stderr}"
    );
    Ok(())
}

/// The generated files carry the values asked for and no Liquid syntax.
fn check_rendered(project: &Path, case: &Case) -> anyhow::Result<()> {
    let mut leftovers = Vec::new();
    for file in files(project)? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // `${{ }}` is GitHub Actions syntax, not Liquid.
        if text.replace("${{", "").contains("{{") || text.contains("{%") {
            leftovers.push(file.strip_prefix(project).unwrap_or(&file).display().to_string());
        }
    }
    ensure!(
        leftovers.is_empty(),
        "template syntax left in: {}",
        leftovers.join(", ")
    );

    let manifest = std::fs::read_to_string(project.join("Cargo.toml"))?;
    ensure!(
        manifest.contains(&format!("name = \"{}\"", case.name)),
        "Cargo.toml does not carry the project name"
    );
    if let Some(toml::Value::String(description)) = case.values.get("description") {
        ensure!(
            manifest.contains(&format!("description = \"{description}\"")),
            "Cargo.toml lacks the description"
        );
    }
    let accounts = project.join("src").join("auth").exists();
    ensure!(
        accounts == (case.auth() != "none"),
        "with auth = {}, src/auth is {}",
        case.auth(),
        if accounts { "there" } else { "missing" }
    );
    if let Some(toml::Value::String(port)) = case.values.get("http_port") {
        let config = std::fs::read_to_string(project.join("config").join("production.toml"))?;
        ensure!(
            config.contains(&format!("port = {port}")),
            "config/production.toml lacks port {port}"
        );
    }
    Ok(())
}

/// Every file below `dir`, skipping build output.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
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

/// cargo-generate renders an undefined variable as an empty string without a word, so every
/// variable the template uses must be a placeholder, a built-in or set by a hook.
fn check_placeholders_are_defined() -> anyhow::Result<()> {
    let root = repo_root();
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(root.join("cargo-generate.toml"))?)?;
    let mut defined: BTreeSet<String> = config
        .get("placeholders")
        .and_then(toml::Value::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default();
    defined.extend(
        [
            "project-name",
            "crate_name",
            "crate_type",
            "authors",
            "username",
            "os-arch",
        ]
        .map(str::to_owned),
    );
    for hook in files(&root.join("hooks"))? {
        let text = std::fs::read_to_string(&hook)?;
        defined.extend(
            text.split("variable::set(\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_owned),
        );
    }
    let mut undefined = BTreeSet::new();
    for file in files(&root.join("template"))? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for variable in liquid_variables(&text) {
            if !defined.contains(&variable) {
                undefined.insert(format!(
                    "{variable} (in {})",
                    file.strip_prefix(&root).unwrap_or(&file).display()
                ));
            }
        }
    }
    ensure!(
        undefined.is_empty(),
        "template variables with no definition: {}",
        undefined.into_iter().collect::<Vec<_>>().join(", ")
    );
    println!(
        "every template variable is defined ({})",
        defined.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The variables a text uses in `{{ var }}` outputs and `{% if var %}` tags.
fn liquid_variables(text: &str) -> Vec<String> {
    let identifier = |rest: &str| -> String {
        rest.trim_start_matches(['-', ' '])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    };
    let mut variables = Vec::new();
    // `${{ }}` is GitHub Actions syntax, not Liquid.
    let text = text.replace("${{", "");
    for output in text.split("{{").skip(1) {
        variables.push(identifier(output));
    }
    for tag in text.split("{%").skip(1) {
        let tag = tag.trim_start_matches(['-', ' ']);
        for keyword in ["if ", "elsif ", "unless "] {
            if let Some(rest) = tag.strip_prefix(keyword) {
                variables.push(identifier(rest));
            }
        }
    }
    variables.retain(|variable| !variable.is_empty());
    variables
}

/// A project name, template values, and what the refusal must say.
type Refusal<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Invalid names and values stop generation with a message that says what is allowed.
fn check_bad_input_is_refused(sh: &Shell) -> anyhow::Result<()> {
    let dest = scratch_dir("refused")?;
    let bad: [Refusal; 9] = [
        (
            "my_service",
            &[],
            "invalid project name \"my_service\": use 2 to 40 lowercase letters",
        ),
        ("9lives", &[], "invalid project name \"9lives\""),
        ("xtask", &[], "invalid project name \"xtask\""),
        (
            "a-very-long-service-name-that-goes-on-and-on",
            &[],
            "use 2 to 40 lowercase letters",
        ),
        (
            "ok-name",
            &[("http_port", "80")],
            "invalid http_port \"80\": use a number from 1024 to 65535",
        ),
        ("ok-name", &[("http_port", "eighty")], "invalid http_port \"eighty\""),
        (
            "ok-name",
            &[("description", "say \"hi\"")],
            "use plain text without quotes",
        ),
        (
            "ok-name",
            &[("auth", "oauth")],
            "\"oauth\" is not a valid value for auth",
        ),
        (
            "ok-name",
            &[("auth", "none"), ("example", "true")],
            "example does not apply with auth = none",
        ),
    ];
    for (name, values, expected) in bad {
        let defines: Vec<(String, String)> = values.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let generated = generate::generate(sh, name, &defines, &dest)?;
        let reason = generated.failure_reason();
        if generated.success || !reason.contains(expected) {
            bail!(
                "generating {name:?} with {values:?} should fail saying {expected:?}; got:\n{}",
                generated.output
            );
        }
        println!("refused {name:?} {values:?}: {reason}");
    }
    let left: Vec<_> = std::fs::read_dir(&dest)?
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    ensure!(left.is_empty(), "refused generations left {left:?} behind");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liquid_variables_are_found_in_outputs_and_conditions() {
        let text = r#"name = "{{project-name}}" {{ description | upcase }} {%- if example %}x{% endif %}{% if auth == "issuer" %} ${{ github.ref }}"#;
        assert_eq!(
            liquid_variables(text),
            ["project-name", "description", "example", "auth"]
        );
    }
}
