//! `cargo xtask bench`: the criterion benches, then an HTTP load benchmark: the release build
//! against a database of its own, driven by wrk over loopback, next to a bare axum hello-world
//! measured in the same run. Machines differ and a shared one is noisy, so results are judged
//! as ratios to that hello-world, against the committed `bench/baseline.json`, and each
//! scenario also reports the server's CPU time per request, the steadier figure. With two or
//! more cores the service, hello-world and a local PostgreSQL run on one half of them and wrk
//! on the other. A service with background jobs also gets its queue measured (`queue`){% if realtime and auth == "issuer" %},
//! and realtime its idle connections' memory and the delay of a change to a room (`realtime`){% endif %}.{% if redis and auth == "issuer" %}
//! With Redis, the main read runs again in services of their own{% if example %} without the cache and{% endif %} with
//! the rate limits on, to show what each costs.{% endif %}

mod host;
mod load;
mod profile;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use self::host::{Pinned, Placement};
use self::load::{Body, Load, Measurement, Scenario, Target};
use crate::flags::{Bench, DbUp};
use crate::{db, project};

/// Memory figures of the service, in KiB.
#[derive(Default)]
struct Memory {
    idle: Option<u64>,
    after_load: Option<u64>,
    /// Sampled during `--soak`, one value per half minute.
    soak: Vec<u64>,
}

pub fn run(flags: &Bench) -> anyhow::Result<()> {
    let sh = project::shell()?;
    criterion(&sh, flags)?;

    // The profiling build is the release build with symbols and line tables kept.
    let build = if flags.profile { "profiling" } else { "release" };
    let cargo = project::cargo();
    cmd!(sh, "{cargo} build --locked --profile {build} --bins --examples").run()?;
    let binaries = target_dir().join(build);
    let (url, database) = bench_database(&sh, &binaries)?;
    let placement = Placement::detect(&sh);
    println!("placement: {}", placement.describe());
    let server_cpus = placement.server_cpus.as_deref();
    let _database_pinned = match (database, server_cpus) {
        (Some(pid), Some(cpus)) => Some(Pinned::new(&sh, pid, cpus)),
        _ => None,
    };
{%- if redis %}
    // Redis serves the same requests: it runs, and is measured, beside the database.
    let redis = db::redis_pid(&sh);
    let _redis_pinned = match (redis, server_cpus) {
        (Some(pid), Some(cpus)) => Some(Pinned::new(&sh, pid, cpus)),
        _ => None,
    };
{%- endif %}
    let queue = queue(&binaries, &url, server_cpus)?;

    let service_port = free_port()?;
    let serve_on = |port| serve(&binaries, &url, port, server_cpus);
    let service_process = Process::start(&mut serve_on(service_port)?)?;
    let hello_port = free_port()?;
    let hello_process = Process::start(
        host::pinned(&binaries.join("examples").join("hello"), server_cpus).env("HELLO_PORT", hello_port.to_string()),
    )?;
    wait_for(service_port, "/health/ready")?;
    wait_for(hello_port, "/")?;
    // Started through taskset, which replaces itself with the program: the same process.
    let service = Target {
        port: service_port,
        pid: service_process.id(),
        database,
{%- if redis %}
        redis,
{%- else %}
        redis: None,
{%- endif %}
    };
    let hello_target = Target {
        port: hello_port,
        pid: hello_process.id(),
        database: None,
        redis: None,
    };
    let mut memory = Memory {
        idle: host::rss_kib(service.pid),
        ..Memory::default()
    };

    let out = project::root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let script = out.join("wrk.lua");
    std::fs::write(&script, load::WRK_SCRIPT)?;
    let load = Load {
        script: &script,
        seconds: if flags.quick { 3 } else { 10 },
        placement: &placement,
    };

    let hello_world = Scenario::get("hello-world", "/");
    // Every endpoint's scenario, as each round measures them.
    let measure_endpoints = || -> anyhow::Result<(Vec<Measurement>, Scenario)> {
        let (measurements, main_read) = endpoints(service, &load)?;
{%- if redis and auth == "issuer" %}
        let mut measurements = measurements;
        redis_variants(&mut measurements, &serve_on, service, &load, &main_read)?;
{%- endif %}
        Ok((measurements, main_read))
    };
    let hello = load.measure(hello_target, &hello_world)?;
    let (measurements, main_read) = measure_endpoints()?;
    memory.after_load = host::rss_kib(service.pid);
{%- if realtime and auth == "issuer" %}
    let realtime = realtime(&binaries, service, placement.load_cpus.as_deref())?;
{%- else %}
    let realtime = None;
{%- endif %}
    if flags.profile {
        let recording = profile::Recording::start(service.pid, &out)?;
        load.measure(service, &main_read)?;
        let name = project::package_field("name")?;
        recording.finish(&sh, &format!("{name}: {}", main_read.name))?;
    }
    if flags.soak > 0 {
        let round = Load { seconds: 30, ..load };
        for _ in 0..flags.soak * 2 {
            round.measure(service, &main_read)?;
            memory.soak.extend(host::rss_kib(service.pid));
        }
    }

    let write_report = |hello: &Measurement, measurements: &[Measurement]| {
        write_report(
            &out,
            hello,
            measurements,
            &memory,
            &placement,
            queue.as_ref(),
            realtime.as_ref(),
        )
    };
    let ratios = write_report(&hello, &measurements)?;
    compare(flags, &ratios, || {
        let hello = load.measure(hello_target, &hello_world)?;
        let (measurements, _) = measure_endpoints()?;
        write_report(&hello, &measurements)
    })
}

/// The service as it is benchmarked: the release build (or `binaries`') on the benchmark
/// database, on `port`, logging warnings only, with the rate limits off.
fn serve(binaries: &std::path::Path, url: &str, port: u16, cpus: Option<&str>) -> anyhow::Result<Command> {
    let name = project::package_field("name")?;
    let mut command = host::pinned(&binaries.join(&name), cpus);
    command
        .arg("serve")
        .env("DATABASE_URL", url)
{%- if redis %}
        .env("REDIS_URL", redis_url()?)
{%- endif %}
        .env("APP_SERVER__HOST", "127.0.0.1")
        .env("APP_SERVER__PORT", port.to_string())
        .env("APP_LOG__FILTER", "warn")
        // One client address sending thousands of requests a second, over 64 connections
        // when two scenarios run at once, is the point here.
        .env("APP_RATE_LIMIT__ENABLED", "false")
{%- if realtime %}
        // So are thousands of realtime connections of one account.
        .env("APP_REALTIME__MAX_CONNECTIONS_PER_ACCOUNT", "100000")
{%- endif %}
        .env("APP_SERVER__MAX_CONNECTIONS_PER_CLIENT", "1024")
        // The allocator setting of the image (docker/Dockerfile).
        .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144");
    Ok(command)
}
{%- if redis %}

/// Redis from the environment, else from `.env`, where `cargo xtask db up` writes it.
fn redis_url() -> anyhow::Result<String> {
    std::env::var("REDIS_URL")
        .ok()
        .or_else(|| project::dotenv_get("REDIS_URL"))
        .context("REDIS_URL is not set: `cargo xtask db up` starts a development Redis and writes it to .env")
}
{%- endif %}
{%- if redis and auth == "issuer" %}

/// The main read again, each time in a service of its own on the same database and Redis:
{%- if example %}
/// without the cache, then
{%- endif %}
/// with the rate limits on, so that what each costs shows next to the read.
fn redis_variants(
    measurements: &mut Vec<Measurement>,
    serve_on: &dyn Fn(u16) -> anyhow::Result<Command>,
    service: Target,
    load: &Load,
    main_read: &Scenario,
) -> anyhow::Result<()> {
    let measure = |name: &'static str, settings: &[(&str, &str)]| -> anyhow::Result<Measurement> {
        let port = free_port()?;
        let mut command = serve_on(port)?;
        command.envs(settings.iter().copied());
        let process = Process::start(&mut command)?;
        wait_for(port, "/health/ready")?;
        let target = Target {
            port,
            pid: process.id(),
            ..service
        };
        let scenario = Scenario {
            token: main_read.token.clone(),
            ..Scenario::get(name, &main_read.path)
        };
        load.measure(target, &scenario)
    };
{%- if example %}
    measurements.push(measure("get (uncached)", &[("APP_REDIS__CACHE", "false")])?);
{%- endif %}
    // Quotas no run reaches: what shows is the cost of checking them.
    let limits_on = [
        ("APP_RATE_LIMIT__ENABLED", "true"),
        ("APP_RATE_LIMIT__PER_IP_PER_MINUTE", "1000000000"),
        ("APP_AUTH__PER_ACCOUNT_PER_MINUTE", "1000000000"),
    ];
    let name = "{% if example %}get{% else %}me (authenticated){% endif %} (rate limits in Redis)";
    measurements.push(measure(name, &limits_on)?);
    Ok(())
}
{%- endif %}

/// Checks for wrk (and the profiler's tools with `--profile`) before anything long, then runs
/// the criterion benches.
fn criterion(sh: &Shell, flags: &Bench) -> anyhow::Result<()> {
    let wrk_found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file()));
    ensure!(
        wrk_found,
        "wrk is missing; install it (apt-get install wrk, brew install wrk)"
    );
    if flags.profile {
        profile::ensure_tools(sh)?;
    }
    let cargo = project::cargo();
    let mut criterion = cmd!(sh, "{cargo} bench --locked --bench *");
    if flags.quick {
        criterion = criterion.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    Ok(criterion.run()?)
}

/// The benchmark's account, registered by [`endpoints`].
const CREDENTIALS: &str = r#"{"email":"bench@example.com","password":"a benchmark passphrase"}"#;
{%- if graphql %}

/// `GET /api/v1/projects/{id}` as a GraphQL query.
const PROJECT_QUERY: &str =
    "query Project($id: UUID!) { project(id: $id) { id ownerId name description version createdAt updatedAt } }";
{%- endif %}

/// Loads health always; then, signed in as one account, the resource's routes when the service
/// has them, create first, which leaves thousands of records behind for list and get to read;
/// then sign-in, an authenticated read, and health next to a sign-in flood, whose latency must
/// not suffer from the hashing. Also returns the read that `--profile` and `--soak` load: the
/// resource's get, else `me`, else health.
fn endpoints(service: Target, load: &Load) -> anyhow::Result<(Vec<Measurement>, Scenario)> {
    let port = service.port;
    let health = Scenario::get("health", "/health/live");
    let mut measurements = vec![load.measure(service, &health)?];
    let (_, spec) = http(port, "GET", "/openapi.json", None, None)?;
    if !spec.contains("\"/api/v1/auth/login\"") {
        return Ok((measurements, health));
    }
    let (status, _) = http(port, "POST", "/api/v1/auth/register", Some(CREDENTIALS), None)?;
    ensure!(status == 202, "registering the benchmark account answered {status}");
    let (_, session) = http(port, "POST", "/api/v1/auth/login", Some(CREDENTIALS), None)?;
    let session: Value = serde_json::from_str(&session).context("the login endpoint returned invalid JSON")?;
    let token = session["access_token"].as_str().context("no access token")?;
    let signed_in = |name, path: &str| Scenario {
        token: Some(token.to_owned()),
        ..Scenario::get(name, path)
    };
    let mut main_read = signed_in("me (authenticated)", "/api/v1/auth/me");
    if spec.contains("\"/api/v1/projects\"") {
        let create = Scenario {
            body: Body::Unique("bench"),
            ..signed_in("create", "/api/v1/projects")
        };
        measurements.push(load.measure(service, &create)?);
        measurements.push(load.measure(service, &signed_in("list", "/api/v1/projects?limit=20"))?);
        let (_, page) = http(port, "GET", "/api/v1/projects?limit=1", None, Some(token))?;
        let page: Value = serde_json::from_str(&page).context("the list endpoint returned invalid JSON")?;
        let id = page["items"][0]["id"].as_str().context("no project to read")?;
        let get = signed_in("get", &format!("/api/v1/projects/{id}"));
        measurements.push(load.measure(service, &get)?);
{%- if graphql %}
        // The same read through GraphQL, every field the REST answer has.
        let query = serde_json::json!({ "query": PROJECT_QUERY, "variables": { "id": id } });
        let graphql = Scenario {
            body: Body::Fixed(query.to_string()),
            ..signed_in("get (GraphQL)", "/graphql")
        };
        measurements.push(load.measure(service, &graphql)?);
{%- endif %}
        main_read = get;
    }
    let login = Scenario {
        body: Body::Fixed(CREDENTIALS.to_owned()),
        may_shed: true,
        ..Scenario::get("login", "/api/v1/auth/login")
    };
    measurements.push(load.measure(service, &login)?);
    measurements.push(load.measure(service, &signed_in("me (authenticated)", "/api/v1/auth/me"))?);
    let during_flood = std::thread::scope(|scope| {
        let flood = scope.spawn(|| load.measure(service, &login));
        let health = load.measure(service, &Scenario::get("health during login flood", "/health/live"));
        let _ = flood.join();
        health
    })?;
    measurements.push(during_flood);
    Ok((measurements, main_read))
}

/// With background jobs, the queue's benchmark (`examples/queue.rs`) on the benchmark
/// database, pinned where the service runs, before the service starts so nothing else loads it.
fn queue(binaries: &std::path::Path, url: &str, cpus: Option<&str>) -> anyhow::Result<Option<Value>> {
    if !project::root().join("examples").join("queue.rs").is_file() {
        return Ok(None);
    }
    println!("load: job queue");
    let output = host::pinned(&binaries.join("examples").join("queue"), cpus)
        .env("DATABASE_URL", url)
{%- if redis %}
        .env("REDIS_URL", redis_url()?)
{%- endif %}
        .current_dir(project::root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the queue benchmark")?;
    ensure!(output.status.success(), "the queue benchmark failed: {}", output.status);
    let line = String::from_utf8_lossy(&output.stdout);
    let figures = serde_json::from_str(line.trim()).context("the queue benchmark printed no figures")?;
    Ok(Some(figures))
}

{%- if realtime and auth == "issuer" %}

/// Realtime's benchmark (`examples/realtime.rs`) against the running service, as the
/// benchmark account in a project of its own, from the load's CPUs.
fn realtime(binaries: &std::path::Path, service: Target, cpus: Option<&str>) -> anyhow::Result<Option<Value>> {
    println!("load: realtime");
    let port = service.port;
    let (_, session) = http(port, "POST", "/api/v1/auth/login", Some(CREDENTIALS), None)?;
    let session: Value = serde_json::from_str(&session).context("the login endpoint returned invalid JSON")?;
    let token = session["access_token"].as_str().context("no access token")?;
    let (status, project) = http(
        port,
        "POST",
        "/api/v1/projects",
        Some(r#"{"name":"Realtime benchmark"}"#),
        Some(token),
    )?;
    ensure!(status == 201, "creating the benchmark's project answered {status}");
    let project: Value = serde_json::from_str(&project).context("the create endpoint returned invalid JSON")?;
    let output = host::pinned(&binaries.join("examples").join("realtime"), cpus)
        .env("REALTIME_PORT", port.to_string())
        .env("REALTIME_PID", service.pid.to_string())
        .env("REALTIME_TOKEN", token)
        .env("REALTIME_PROJECT", project["id"].as_str().context("no project id")?)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the realtime benchmark")?;
    ensure!(output.status.success(), "realtime benchmark failed: {}", output.status);
    let line = String::from_utf8_lossy(&output.stdout);
    let figures = serde_json::from_str(line.trim()).context("the realtime benchmark printed no figures")?;
    Ok(Some(figures))
}
{%- endif %}

/// Writes `report.json` and `report.md` into `out`, prints the table, and returns each
/// endpoint's throughput as a ratio to hello-world's.
fn write_report(
    out: &std::path::Path,
    hello: &Measurement,
    measurements: &[Measurement],
    memory: &Memory,
    placement: &Placement,
    queue: Option<&Value>,
    realtime: Option<&Value>,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut report = report(hello, measurements, memory, placement);
    let mut markdown = markdown(hello, measurements, memory);
    if let Some(queue) = queue {
        report["jobs"] = queue.clone();
        let figure = |key: &str| queue[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            markdown,
            "Job queue ({} workers of {} jobs at once, {} no-op jobs): {:.0} jobs/s from the first enqueue to \
             the last completion; with the workers idle, from commit to start p50 {:.2} ms, p99 {:.2} ms.",
            queue["workers"],
            queue["concurrency"],
            queue["jobs"],
            figure("jobs_per_sec"),
            figure("pickup_p50_ms"),
            figure("pickup_p99_ms"),
        );
    }
    if let Some(realtime) = realtime {
        report["realtime"] = realtime.clone();
        let figure = |key: &str| realtime[key].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            markdown,
            "Realtime: {} idle connections cost {:.1} KiB each (resident memory {} KiB before, {} KiB with them); \
             a change reached {} clients in one room p50 {:.2} ms, p99 {:.2} ms after its write was sent ({} writes).",
            realtime["idle_connections"],
            figure("kib_per_idle_connection"),
            realtime["rss_before_kib"],
            realtime["rss_connected_kib"],
            realtime["room_clients"],
            figure("delivery_p50_ms"),
            figure("delivery_p99_ms"),
            realtime["writes"],
        );
    }
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("\n{markdown}\nreports: target/bench/report.json, target/bench/report.md");
    Ok(measurements
        .iter()
        .map(|m| (m.name.to_owned(), m.requests_per_sec / hello.requests_per_sec))
        .collect())
}

fn report(hello: &Measurement, measurements: &[Measurement], memory: &Memory, placement: &Placement) -> Value {
    let entry = |m: &Measurement| {
        let mut entry = json!({
            "requests_per_sec": m.requests_per_sec.round(),
            "turned_away_per_sec": m.turned_away_per_sec.round(),
            "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms,
            "throughput_vs_hello_world": m.requests_per_sec / hello.requests_per_sec,
            "cpu_us_per_request": m.cpu_us,
            "cpu_vs_hello_world": m.cpu_us.zip(hello.cpu_us).map(|(cpu, hello)| cpu / hello),
            "database_cpu_us_per_request": m.database_cpu_us,
        });
        if let Some(cpu) = m.redis_cpu_us {
            entry["redis_cpu_us_per_request"] = json!(cpu);
        }
        entry
    };
    let endpoints: serde_json::Map<String, Value> =
        measurements.iter().map(|m| (m.name.to_owned(), entry(m))).collect();
    json!({
        "placement": placement.describe(),
        "hello_world": entry(hello),
        "endpoints": endpoints,
        "service_rss_kib": { "idle": memory.idle, "after_load": memory.after_load, "soak": memory.soak },
    })
}

fn markdown(hello: &Measurement, measurements: &[Measurement], memory: &Memory) -> String {
    let mut text = String::from(
        "| endpoint | requests/s | turned away/s | p50 ms | p95 ms | p99 ms | throughput vs hello-world | server CPU µs/request | vs hello-world | database CPU µs/request |{% if redis %} Redis CPU µs/request |{% endif %}\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|{% if redis %}---:|{% endif %}\n",
    );
    let figure =
        |value: Option<f64>, digits: usize| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.digits$}"));
    for m in std::iter::once(hello).chain(measurements) {
        let ratio = m.requests_per_sec / hello.requests_per_sec;
        let cpu_ratio = m.cpu_us.zip(hello.cpu_us).map(|(cpu, hello)| cpu / hello);
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {ratio:.5} | {} | {} | {} |{% if redis %} {} |{% endif %}",
            m.name,
            m.requests_per_sec,
            m.turned_away_per_sec,
            m.p50_ms,
            m.p95_ms,
            m.p99_ms,
            figure(m.cpu_us, 1),
            figure(cpu_ratio, 2),
            figure(m.database_cpu_us, 1),
{%- if redis %}
            figure(m.redis_cpu_us, 1),
{%- endif %}
        );
    }
    let kib = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value} KiB"));
    let _ = writeln!(
        text,
        "\nService resident memory: {} idle, {} after the load.",
        kib(memory.idle),
        kib(memory.after_load)
    );
    if !memory.soak.is_empty() {
        let samples: Vec<String> = memory.soak.iter().map(u64::to_string).collect();
        let _ = writeln!(text, "During the soak, every 30 s (KiB): {}.", samples.join(", "));
    }
    text
}

/// Compares the throughput ratios with `bench/baseline.json`, or saves them as the baseline.
fn compare(
    flags: &Bench,
    ratios: &BTreeMap<String, f64>,
    again: impl FnOnce() -> anyhow::Result<BTreeMap<String, f64>>,
) -> anyhow::Result<()> {
    let path = project::root().join("bench").join("baseline.json");
    if flags.save_baseline {
        return save_baseline(&path, ratios);
    }
    let baseline: Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).context("bench/baseline.json is not valid JSON")?,
        Err(_) => json!({}),
    };
    judge(&baseline, flags.tolerance, ratios, again)
}

/// Fails when an endpoint falls below its floor twice. A neighbour on a shared machine can
/// slow one stretch of a run and every ratio measured in it, so a first fall only makes
/// `again` measure a second round, hello-world included, and the endpoints that fall in both
/// are the regressions.
fn judge(
    baseline: &Value,
    tolerance: u8,
    ratios: &BTreeMap<String, f64>,
    again: impl FnOnce() -> anyhow::Result<BTreeMap<String, f64>>,
) -> anyhow::Result<()> {
    let first = regressions(ratios, baseline, tolerance);
    if first.is_empty() {
        return Ok(());
    }
    println!("below the floor: {}; measuring everything once more", first.join(", "));
    let confirmed: Vec<String> = regressions(&again()?, baseline, tolerance)
        .into_iter()
        .filter(|name| first.contains(name))
        .collect();
    ensure!(
        confirmed.is_empty(),
        "throughput regressed beyond {tolerance}% in two rounds: {}",
        confirmed.join(", ")
    );
    Ok(())
}

/// Saves the throughput ratios as the baseline later runs are compared with.
fn save_baseline(path: &std::path::Path, ratios: &BTreeMap<String, f64>) -> anyhow::Result<()> {
    let baseline: BTreeMap<&String, Value> = ratios
        .iter()
        .map(|(name, ratio)| {
            (
                name,
                json!({ "throughput_vs_hello_world": (ratio * 1e5).round() / 1e5 }),
            )
        })
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&baseline)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("saved bench/baseline.json");
    Ok(())
}

/// The names of the endpoints whose ratio fell more than `tolerance` percent below the
/// baseline's; prints every comparison on the way.
fn regressions(ratios: &BTreeMap<String, f64>, baseline: &Value, tolerance: u8) -> Vec<String> {
    let mut regressions = Vec::new();
    for (name, ratio) in ratios {
        let Some(expected) = baseline[name]["throughput_vs_hello_world"].as_f64() else {
            println!("{name}: no baseline yet (cargo xtask bench --save-baseline)");
            continue;
        };
        let floor = expected * (1.0 - f64::from(tolerance) / 100.0);
        let [shown_ratio, shown_baseline, shown_floor] = [*ratio, expected, floor].map(significant);
        println!("{name}: {shown_ratio} of hello-world throughput (baseline {shown_baseline}, floor {shown_floor})");
        if *ratio < floor {
            regressions.push(name.clone());
        }
    }
    regressions
}

/// A ratio to three significant digits: sign-in's is a few ten-thousandths, health's near one.
fn significant(ratio: f64) -> String {
    let (mut digits, mut scaled) = (3, ratio);
    while scaled > 0.0 && scaled < 0.1 && digits < 12 {
        scaled *= 10.0;
        digits += 1;
    }
    format!("{ratio:.digits$}")
}

/// A database for the benchmark alone, emptied and migrated: the development one with
/// `_bench` appended to its name. Also returns the process id of its server when that is the
/// development PostgreSQL, which runs here.
fn bench_database(sh: &Shell, binaries: &std::path::Path) -> anyhow::Result<(String, Option<u32>)> {
    let configured = std::env::var("DATABASE_URL")
        .ok()
        .or_else(|| project::dotenv_get("DATABASE_URL"));
    let url = match configured {
        Some(url) => url,
        None => db::up_database(sh, &DbUp::default())?,
    };
    let server = db::is_development_url(&url).then(|| db::server_pid(sh)).flatten();
    let url = match url.split_once('?') {
        Some((base, query)) => format!("{base}_bench?{query}"),
        None => format!("{url}_bench"),
    };
    let binary = binaries.join(project::package_field("name")?);
    // Run first: in development it creates the database when missing.
    for args in [
        ["migrate", "run"].as_slice(),
        &["migrate", "revert", "--all"],
        &["migrate", "run"],
    ] {
        cmd!(sh, "{binary}")
            .args(args)
            .env("DATABASE_URL", &url)
            .env("APP_ENVIRONMENT", "development")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cannot prepare the benchmark database (is DATABASE_URL right and PostgreSQL running?)")?;
    }
    Ok((url, server))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| project::root().join("target"), PathBuf::from)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status and body of a request with an optional JSON body and access token.
fn http(port: u16, method: &str, path: &str, json: Option<&str>, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if json.is_some() {
        request = request.header("content-type", "application/json");
    }
    let mut response = agent.run(request.body(json.unwrap_or_default().to_owned())?)?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

fn wait_for(port: u16, path: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if matches!(http(port, "GET", path, None, None), Ok((200, _))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing answered on port {port} within 30 s")
}

/// A child process killed when dropped.
struct Process(Child);

impl Process {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn start(command: &mut Command) -> anyhow::Result<Self> {
        Ok(Self(
            command
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start a benchmark process")?,
        ))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_shown_to_three_significant_digits() {
        assert_eq!(significant(0.72), "0.720");
        assert_eq!(significant(0.0219), "0.0219");
        assert_eq!(significant(0.00024), "0.000240");
        assert_eq!(significant(0.0), "0.000");
    }

    #[test]
    fn only_ratios_below_the_tolerated_floor_are_regressions() {
        let baseline = json!({
            "health": { "throughput_vs_hello_world": 0.8 },
            "list": { "throughput_vs_hello_world": 0.4 },
        });
        let ratios = BTreeMap::from([
            ("health".to_owned(), 0.53),
            ("list".to_owned(), 0.5),
            ("new".to_owned(), 0.1),
        ]);
        assert_eq!(regressions(&ratios, &baseline, 30), ["health"]);
        assert!(regressions(&ratios, &baseline, 40).is_empty());
    }

    #[test]
    fn only_an_endpoint_below_its_floor_in_both_rounds_fails() {
        let baseline = json!({
            "health": { "throughput_vs_hello_world": 0.8 },
            "list": { "throughput_vs_hello_world": 0.4 },
        });
        let round = |health: f64, list: f64| BTreeMap::from([("health".to_owned(), health), ("list".to_owned(), list)]);
        let unexpected = || -> anyhow::Result<BTreeMap<String, f64>> { panic!("no second round was due") };
        judge(&baseline, 30, &round(0.7, 0.4), unexpected).expect("above the floors");

        judge(&baseline, 30, &round(0.5, 0.4), || Ok(round(0.7, 0.4))).expect("a fall that did not repeat");
        judge(&baseline, 30, &round(0.5, 0.4), || Ok(round(0.7, 0.2))).expect("two falls of different endpoints");
        let err = judge(&baseline, 30, &round(0.5, 0.2), || Ok(round(0.5, 0.4))).expect_err("health fell twice");
        assert_eq!(err.to_string(), "throughput regressed beyond 30% in two rounds: health");
    }
}
