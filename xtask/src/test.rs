//! `cargo xtask test`: a preflight of the tools, checks of the template's own code and of the
//! generator, then every case (named and pairwise, see `cases`): generated out of tree and
//! checked by the generated service's own `cargo xtask ci` against real PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use xshell::{Cmd, Shell, cmd};

use crate::cases::{self, Case};
use crate::dev_database::{self, DevDatabase};
use crate::flags::Test;
use crate::generate::{self, files, repo_root, scratch_dir, shared_target_dir};
use crate::options::Declaration;
use crate::{containers, contract, conventions, generator, issuer_check, lockfile, preflight, redis_tls, throwaway};

pub fn run(flags: &Test) -> anyhow::Result<()> {
    let root = repo_root();
    let declaration = Declaration::load(&root)?;
    let cases = cases::select(cases::load(&root, &declaration)?, &flags.cases)?;
    if flags.list {
        return cases::print(&cases, flags.json);
    }
    let sh = generate::shell()?;
    // Backtraces from the tools under test only bury their error messages.
    sh.set_var("RUST_BACKTRACE", "0");
    // Ctrl-C reaches the children too; surviving it lets the databases they started stop.
    ctrlc::set_handler(|| eprintln!("interrupted; cleaning up")).context("cannot handle Ctrl-C")?;
    let external = std::env::var("TEMPLATE_TEST_DATABASE_URL").ok();
    let started = Instant::now();

    section("preflight");
    preflight::check(&preflight::Plan {
        cases: cases.iter().collect(),
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
    generator::check_variables_are_defined(&root, &declaration)?;
    generator::check_options_table(&root, &declaration)?;
    conventions::check_template(&root)?;
    generator::check_bad_input_is_refused(&sh, &root, &declaration)?;
    section("adding an option");
    throwaway::check(&sh)?;

    let mut timings = Vec::new();
    for case in &cases {
        section(&format!("case {}: {}", case.id, case.about));
        let case_started = Instant::now();
        run_case(&sh, &root, &declaration, case, external.as_deref())
            .with_context(|| format!("case {} failed", case.id))?;
        timings.push((case.id.clone(), case_started.elapsed()));
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

pub fn section(title: &str) {
    println!("\n==== {title}");
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.0}s", elapsed.as_secs_f64())
}

/// Generates the case and runs its CI against a PostgreSQL that its own `cargo xtask db up`
/// starts, then walks through the database workflow a developer uses.
fn run_case(
    sh: &Shell,
    root: &Path,
    declaration: &Declaration,
    case: &Case,
    external_database: Option<&str>,
) -> anyhow::Result<()> {
    let dest = scratch_dir(&format!("cases/{}", case.id))?;
    let project = generate::generate_ok(sh, root, &case.name, &case.defines, &dest)?;
    generator::check_rendered(&project, case, declaration)?;
    println!(
        "generated {} with the files its options switch on, and no template syntax left",
        project.display()
    );

    let _dir = sh.push_dir(&project);
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    lockfile::check_first_use(sh, &project)?;
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
    let database = DevDatabase::up(sh, case.on("redis"))?;
    // Creates the database the tests connect to, then applies the migrations.
    xtask(sh).args(["db", "migrate"]).run()?;
    xtask(sh).args(["ci"]).run()?;
    if case.on("jobs") {
        check_jobs_commands(sh)?;
    }
    if !case.is("auth", "verifier") {
        section("contract (schemathesis)");
        contract::check_case(sh, &project, case, &database)?;
    }
    if case.on("redis") {
        section("Redis over TLS");
        cmd!(sh, "cargo build --quiet").run()?;
        redis_tls::check(sh, &project, &case.name, &database.url(&case.name))?;
    }
    if case.is("auth", "verifier") {
        section("tokens of an issuer generated from this template");
        issuer_check::check(sh, &project, &case.name, &database.port, case)?;
    }
    if case.bench {
        section("benchmarks (quick)");
        check_bench(sh, &project, case)?;
    }
    dev_database::check_workflow(sh, &project, &database.port)?;
    database.down(&project)?;
    check_manifests(sh, &project)?;
    conventions::check_service(root, &project)?;
    section("workflows");
    check_workflows(sh, &project)?;
    section("dependency policy");
    cmd!(sh, "cargo deny --log-level error check licenses bans sources")
        .run()
        .context("cargo deny failed or is missing (cargo install cargo-deny --locked)")?;
    if containers {
        section("container image");
        let port = case.define("http_port").unwrap_or("8080").parse()?;
        let report = containers::check_image(sh, &case.name, port, case.on("redis"))?;
        println!(
            "image: {} MB (budget {} MB), ready {} ms after start, runs as 65532 without a shell, production settings only",
            report.size_mb,
            containers::IMAGE_BUDGET_MB,
            report.ready_after.as_millis()
        );
        section("compose stack");
        let up_after = containers::check_compose_stack(sh, &case.name, case.is("auth", "issuer"))?;
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

/// `cargo xtask jobs` reaches the development database, and refuses an id that is not one.
fn check_jobs_commands(sh: &Shell) -> anyhow::Result<()> {
    let dead = xtask(sh).args(["jobs", "dead"]).read()?;
    ensure!(dead.contains("no dead jobs"), "cargo xtask jobs dead printed {dead:?}");
    expect_refusal(sh, &["jobs", "retry", "not-an-id"], "invalid value 'not-an-id'")?;
    println!("cargo xtask jobs lists dead jobs and refuses a malformed id");
    Ok(())
}

/// `cargo xtask bench --quick` runs and its report has every endpoint, each with traffic,
/// ordered percentiles and CPU time per request, the service's resident memory, and with jobs the
/// queue's throughput and pickup delay. The tolerance is wide: a quick run on a shared machine is noisy.
fn check_bench(sh: &Shell, project: &Path, case: &Case) -> anyhow::Result<()> {
    xtask(sh).args(["bench", "--quick", "--tolerance", "50"]).run()?;
    let path = project.join("target").join("bench").join("report.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut expected = vec!["health"];
    if case.is("auth", "issuer") {
        expected.extend(["login", "me (authenticated)", "health during login flood"]);
    }
    // The resource's scenarios sign in at the service itself.
    if case.on("example") && case.is("auth", "issuer") {
        expected.extend(["create", "list", "get"]);
        // With GraphQL, the same get as a query.
        if case.on("graphql") {
            expected.push("get (GraphQL)");
        }
    }
    // With Redis, the main read again without the cache and with the limits in Redis.
    if case.on("redis") && case.is("auth", "issuer") {
        if case.on("example") {
            expected.extend(["get (uncached)", "get (rate limits in Redis)"]);
        } else {
            expected.push("me (authenticated) (rate limits in Redis)");
        }
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
            number("cpu_us_per_request") > 0.0,
            "{name}: no CPU time per request: {entry}"
        );
        ensure!(
            number("p50_ms") <= number("p95_ms") && number("p95_ms") <= number("p99_ms"),
            "{name}: percentiles out of order: {entry}"
        );
    }
    // The cached read costs Redis what it saves the database: both are reported.
    if case.on("redis") && case.on("example") && case.is("auth", "issuer") {
        let get = &report["endpoints"]["get"];
        ensure!(
            get["redis_cpu_us_per_request"].as_f64().is_some_and(|cpu| cpu > 0.0),
            "no Redis CPU time reported for the cached get: {get}"
        );
    }
    if case.on("jobs") {
        let queue = &report["jobs"];
        let number = |key: &str| queue[key].as_f64().unwrap_or(f64::NAN);
        ensure!(number("jobs_per_sec") > 0.0, "no job throughput reported: {queue}");
        ensure!(
            0.0 <= number("pickup_p50_ms") && number("pickup_p50_ms") <= number("pickup_p99_ms"),
            "job pickup percentiles missing or out of order: {queue}"
        );
    }
    ensure!(
        report["service_rss_kib"]["idle"].as_u64().is_some_and(|kib| kib > 0),
        "no resident memory reported: {}",
        report["service_rss_kib"]
    );
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
pub fn xtask(sh: &Shell) -> Cmd<'_> {
    cmd!(sh, "cargo xtask").env_remove("DATABASE_URL")
}

/// Runs `cargo xtask ARGS`, which must fail with `expected` in its error output; returns its
/// exit code.
pub fn expect_refusal(sh: &Shell, args: &[&str], expected: &str) -> anyhow::Result<Option<i32>> {
    let output = xtask(sh).args(args).ignore_status().quiet().output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains(expected),
        "cargo xtask {} was not refused with {expected:?}: {stderr}",
        args.join(" ")
    );
    Ok(output.status.code())
}
