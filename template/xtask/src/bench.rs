//! `cargo xtask bench`: the criterion benches, then an HTTP load benchmark: the release build
//! against a database of its own, driven by wrk over loopback, next to a bare axum hello-world
//! measured in the same run. Machines differ and a shared one is noisy, so results are judged
//! as ratios to that hello-world, against the committed `bench/baseline.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::flags::{Bench, DbUp};
use crate::{db, project};

/// Writes one JSON line at the end of a wrk run. Arguments, in pairs: `create <prefix>` POSTs
/// a new record per request; `post <json>` POSTs the same body every time; `bearer <token>`
/// sends that access token.
const WRK_SCRIPT: &str = r#"
local counter, thread_id = 0, 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id or 0
  for i = 1, #args, 2 do
    local key, value = args[i], args[i + 1]
    if key == "create" or key == "post" then
      wrk.method = "POST"
      wrk.headers["content-type"] = "application/json"
    end
    if key == "create" then prefix = value end
    if key == "post" then wrk.body = value end
    if key == "bearer" then wrk.headers["authorization"] = "Bearer " .. value end
  end
end
function request()
  if prefix then
    counter = counter + 1
    local body = string.format('{"name":"%s-%d-%d-%d"}', prefix, thread_id, counter, math.random(1, 1000000000))
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format()
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"failed":%d,"turned_away":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"#;

/// One endpoint under load.
struct Scenario {
    name: &'static str,
    path: String,
    body: Body,
    /// Sent as `Authorization: Bearer`.
    token: Option<String>,
    /// Whether answers other than 2xx are part of the design under this load (sign-in sheds
    /// what it cannot hash in time) rather than failures.
    may_shed: bool,
}

enum Body {
    None,
    /// POST `{"name": "<prefix>-..."}`, a new record per request.
    Unique(&'static str),
    /// POST this JSON every time.
    Fixed(String),
}

impl Scenario {
    fn get(name: &'static str, path: &str) -> Self {
        Self {
            name,
            path: path.to_owned(),
            body: Body::None,
            token: None,
            may_shed: false,
        }
    }
}

/// What wrk measured for one scenario.
struct Measurement {
    name: &'static str,
    requests_per_sec: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    /// Answered with another status than 2xx, per second.
    turned_away_per_sec: f64,
}

pub fn run(flags: &Bench) -> anyhow::Result<()> {
    let sh = project::shell()?;
    let wrk_found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file()));
    ensure!(
        wrk_found,
        "wrk is missing; install it (apt-get install wrk, brew install wrk)"
    );
    let cargo = project::cargo();
    let mut criterion = cmd!(sh, "{cargo} bench --locked --bench *");
    if flags.quick {
        criterion = criterion.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    criterion.run()?;

    cmd!(sh, "{cargo} build --locked --release --bins --example hello").run()?;
    let release = target_dir().join("release");
    let url = bench_database(&sh)?;
    let name = project::package_field("name")?;
    let service_port = free_port()?;
    let _service = Process::start(
        Command::new(release.join(&name))
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("APP_SERVER__HOST", "127.0.0.1")
            .env("APP_SERVER__PORT", service_port.to_string())
            .env("APP_LOG__FILTER", "warn")
            // One client address sending thousands of requests a second is the point here.
            .env("APP_RATE_LIMIT__ENABLED", "false"),
    )?;
    let hello_port = free_port()?;
    let _hello =
        Process::start(Command::new(release.join("examples").join("hello")).env("HELLO_PORT", hello_port.to_string()))?;
    wait_for(service_port, "/health/ready")?;
    wait_for(hello_port, "/")?;

    let out = project::root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let script = out.join("wrk.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let seconds = if flags.quick { 3 } else { 10 };
    let load = |port: u16, scenario: &Scenario| measure(&script, port, scenario, seconds);

    let hello = load(hello_port, &Scenario::get("hello-world", "/"))?;
    let measurements = endpoints(service_port, load)?;
    let report = report(&hello, &measurements);
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    let markdown = markdown(&hello, &measurements);
    std::fs::write(out.join("report.md"), &markdown)?;
    println!("\n{markdown}\nreports: target/bench/report.json, target/bench/report.md");
    compare(&report, flags)
}

/// Loads health always; then, signed in as one account, the resource's routes when the service
/// has them, create first, which leaves thousands of records behind for list and get to read;
/// then sign-in, an authenticated read, and health next to a sign-in flood, whose latency must
/// not suffer from the hashing.
fn endpoints(
    port: u16,
    load: impl Fn(u16, &Scenario) -> anyhow::Result<Measurement> + Sync,
) -> anyhow::Result<Vec<Measurement>> {
    let health = Scenario::get("health", "/health/live");
    let mut measurements = vec![load(port, &health)?];
    let (_, spec) = http(port, "GET", "/openapi.json", None, None)?;
    if !spec.contains("\"/api/v1/auth/login\"") {
        return Ok(measurements);
    }
    let credentials = r#"{"email":"bench@example.com","password":"a benchmark passphrase"}"#;
    let (status, _) = http(port, "POST", "/api/v1/auth/register", Some(credentials), None)?;
    ensure!(status == 202, "registering the benchmark account answered {status}");
    let (_, session) = http(port, "POST", "/api/v1/auth/login", Some(credentials), None)?;
    let session: Value = serde_json::from_str(&session).context("the login endpoint returned invalid JSON")?;
    let token = session["access_token"].as_str().context("no access token")?;
    let signed_in = |name, path: &str| Scenario {
        token: Some(token.to_owned()),
        ..Scenario::get(name, path)
    };
    if spec.contains("\"/api/v1/projects\"") {
        let create = Scenario {
            body: Body::Unique("bench"),
            ..signed_in("create", "/api/v1/projects")
        };
        measurements.push(load(port, &create)?);
        measurements.push(load(port, &signed_in("list", "/api/v1/projects?limit=20"))?);
        let (_, page) = http(port, "GET", "/api/v1/projects?limit=1", None, Some(token))?;
        let page: Value = serde_json::from_str(&page).context("the list endpoint returned invalid JSON")?;
        let id = page["items"][0]["id"].as_str().context("no project to read")?;
        measurements.push(load(port, &signed_in("get", &format!("/api/v1/projects/{id}")))?);
    }
    let login = Scenario {
        body: Body::Fixed(credentials.to_owned()),
        may_shed: true,
        ..Scenario::get("login", "/api/v1/auth/login")
    };
    measurements.push(load(port, &login)?);
    measurements.push(load(port, &signed_in("me (authenticated)", "/api/v1/auth/me"))?);
    let during_flood = std::thread::scope(|scope| {
        let flood = scope.spawn(|| load(port, &login));
        let health = load(port, &Scenario::get("health during login flood", "/health/live"));
        let _ = flood.join();
        health
    })?;
    measurements.push(during_flood);
    Ok(measurements)
}

fn measure(script: &Path, port: u16, scenario: &Scenario, seconds: u32) -> anyhow::Result<Measurement> {
    println!("load: {} for {seconds}s", scenario.name);
    let mut wrk = Command::new("wrk");
    wrk.args([
        "--threads",
        "2",
        "--connections",
        "32",
        "--duration",
        &format!("{seconds}s"),
        "--script",
    ])
    .arg(script)
    .arg(format!("http://127.0.0.1:{port}{}", scenario.path))
    .arg("--");
    match &scenario.body {
        Body::None => {}
        Body::Unique(prefix) => {
            wrk.args(["create", prefix]);
        }
        Body::Fixed(json) => {
            wrk.args(["post", json]);
        }
    }
    if let Some(token) = &scenario.token {
        wrk.args(["bearer", token]);
    }
    let output = wrk.stderr(Stdio::inherit()).output().context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .context("wrk printed no result")?;
    let result: Value = serde_json::from_str(line)?;
    let number = |key: &str| result[key].as_f64().unwrap_or(0.0);
    let seconds = number("duration_us") / 1e6;
    let failed = number("failed");
    let turned_away = number("turned_away");
    ensure!(failed == 0.0, "{}: {failed} requests failed", scenario.name);
    ensure!(
        scenario.may_shed || turned_away == 0.0,
        "{}: {turned_away} requests were answered with an error status",
        scenario.name
    );
    Ok(Measurement {
        name: scenario.name,
        requests_per_sec: (number("requests") - turned_away) / seconds,
        p50_ms: number("p50_us") / 1e3,
        p95_ms: number("p95_us") / 1e3,
        p99_ms: number("p99_us") / 1e3,
        turned_away_per_sec: turned_away / seconds,
    })
}

fn report(hello: &Measurement, measurements: &[Measurement]) -> Value {
    let entry = |m: &Measurement| {
        json!({
            "requests_per_sec": m.requests_per_sec.round(),
            "turned_away_per_sec": m.turned_away_per_sec.round(),
            "p50_ms": m.p50_ms, "p95_ms": m.p95_ms, "p99_ms": m.p99_ms,
            "throughput_vs_hello_world": m.requests_per_sec / hello.requests_per_sec,
        })
    };
    let endpoints: serde_json::Map<String, Value> =
        measurements.iter().map(|m| (m.name.to_owned(), entry(m))).collect();
    json!({ "hello_world": entry(hello), "endpoints": endpoints })
}

fn markdown(hello: &Measurement, measurements: &[Measurement]) -> String {
    let mut text = String::from(
        "| endpoint | requests/s | turned away/s | p50 ms | p95 ms | p99 ms | throughput vs hello-world |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in std::iter::once(hello).chain(measurements) {
        let ratio = m.requests_per_sec / hello.requests_per_sec;
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {ratio:.5} |",
            m.name, m.requests_per_sec, m.turned_away_per_sec, m.p50_ms, m.p95_ms, m.p99_ms
        );
    }
    text
}

/// Compares each endpoint's throughput ratio with the baseline's, or saves the baseline.
fn compare(report: &Value, flags: &Bench) -> anyhow::Result<()> {
    let path = project::root().join("bench").join("baseline.json");
    let ratios: BTreeMap<String, f64> = report["endpoints"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, entry)| (name.clone(), entry["throughput_vs_hello_world"].as_f64().unwrap_or(0.0)))
        .collect();
    if flags.save_baseline {
        let baseline: BTreeMap<&String, Value> = ratios
            .iter()
            .map(|(name, ratio)| {
                (
                    name,
                    json!({ "throughput_vs_hello_world": (ratio * 1e5).round() / 1e5 }),
                )
            })
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&baseline)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("saved bench/baseline.json");
        return Ok(());
    }
    let baseline: Value = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).context("bench/baseline.json is not valid JSON")?,
        Err(_) => json!({}),
    };
    let regressions = regressions(&ratios, &baseline, flags.tolerance);
    if !regressions.is_empty() {
        bail!(
            "throughput regressed beyond {}%: {}",
            flags.tolerance,
            regressions.join(", ")
        );
    }
    Ok(())
}

/// The endpoints whose ratio fell more than `tolerance` percent below the baseline's; prints
/// every comparison on the way.
fn regressions(ratios: &BTreeMap<String, f64>, baseline: &Value, tolerance: u8) -> Vec<String> {
    let mut regressions = Vec::new();
    for (name, ratio) in ratios {
        let Some(expected) = baseline[name]["throughput_vs_hello_world"].as_f64() else {
            println!("{name}: no baseline yet (cargo xtask bench --save-baseline)");
            continue;
        };
        let floor = expected * (1.0 - f64::from(tolerance) / 100.0);
        println!("{name}: {ratio:.3} of hello-world throughput (baseline {expected:.3}, floor {floor:.3})");
        if *ratio < floor {
            regressions.push(format!("{name} {ratio:.3} < {floor:.3}"));
        }
    }
    regressions
}

/// A database for the benchmark alone, emptied and migrated: the development one with
/// `_bench` appended to its name.
fn bench_database(sh: &Shell) -> anyhow::Result<String> {
    let configured = std::env::var("DATABASE_URL")
        .ok()
        .or_else(|| project::dotenv_get("DATABASE_URL"));
    let url = match configured {
        Some(url) => url,
        None => db::up_database(
            sh,
            &DbUp {
                port: 55432,
                backend: None,
            },
        )?,
    };
    let url = match url.split_once('?') {
        Some((base, query)) => format!("{base}_bench?{query}"),
        None => format!("{url}_bench"),
    };
    let binary = target_dir().join("release").join(project::package_field("name")?);
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
    Ok(url)
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
        assert_eq!(regressions(&ratios, &baseline, 30), ["health 0.530 < 0.560"]);
        assert!(regressions(&ratios, &baseline, 40).is_empty());
    }
}
