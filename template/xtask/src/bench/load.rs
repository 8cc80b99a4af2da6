//! One scenario under load: wrk drives an endpoint for a while, and the CPU time the server
//! (and its database) spent meanwhile is divided by the requests served.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use super::host::{self, Placement};

/// Writes one JSON line at the end of a wrk run. Arguments, in pairs: `create <prefix>` POSTs
/// a new record per request; `post <json>` POSTs the same body every time; `bearer <token>`
/// sends that access token.
pub const WRK_SCRIPT: &str = r#"
local counter, thread_id, started = 0, 0, 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id or 0
  -- Names stay unique across runs against the same database: no two start in one second.
  started = os.time()
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
    local body = string.format('{"name":"%s-%d-%d-%d"}', prefix, started, thread_id, counter)
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
pub struct Scenario {
    pub name: &'static str,
    pub path: String,
    pub body: Body,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// Whether answers other than 2xx are part of the design under this load (sign-in sheds
    /// what it cannot hash in time) rather than failures.
    pub may_shed: bool,
}

pub enum Body {
    None,
    /// POST `{"name": "<prefix>-..."}`, a new record per request.
    Unique(&'static str),
    /// POST this JSON every time.
    Fixed(String),
}

impl Scenario {
    pub fn get(name: &'static str, path: &str) -> Self {
        Self {
            name,
            path: path.to_owned(),
            body: Body::None,
            token: None,
            may_shed: false,
        }
    }
}

/// The server under load: where it listens, its process, and its database's processes.
#[derive(Clone, Copy)]
pub struct Target {
    pub port: u16,
    pub pid: u32,
    /// PostgreSQL's postmaster, when the database runs on this machine.
    pub database: Option<u32>,
    /// The Redis server the service uses, when it runs on this machine.
    pub redis: Option<u32>,
}

/// What one run measured.
pub struct Measurement {
    pub name: &'static str,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Answered with another status than 2xx, per second.
    pub turned_away_per_sec: f64,
    /// Server CPU time per request, in microseconds.
    pub cpu_us: Option<f64>,
    /// The database's CPU time per request, in microseconds.
    pub database_cpu_us: Option<f64>,
    /// Redis's CPU time per request, in microseconds.
    pub redis_cpu_us: Option<f64>,
}

/// How one scenario is run: the wrk script, for how long, and where.
pub struct Load<'a> {
    pub script: &'a Path,
    pub seconds: u32,
    pub placement: &'a Placement,
}

impl Load<'_> {
    pub fn measure(&self, target: Target, scenario: &Scenario) -> anyhow::Result<Measurement> {
        println!("load: {} for {}s", scenario.name, self.seconds);
        let wrk_path = Path::new("wrk");
        let mut wrk = host::pinned(wrk_path, self.placement.load_cpus.as_deref());
        wrk.args(["--threads", &self.placement.load_threads.to_string()])
            .args([
                "--connections",
                "32",
                "--duration",
                &format!("{}s", self.seconds),
                "--script",
            ])
            .arg(self.script)
            .arg(format!("http://127.0.0.1:{}{}", target.port, scenario.path))
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
        let tree = |root: Option<u32>| root.map(host::with_descendants).unwrap_or_default();
        let spent = |before: Option<Duration>, after: Option<Duration>| {
            before.zip(after).map(|(before, after)| after.saturating_sub(before))
        };
        let cpu_before = host::cpu_time(target.pid);
        let database_before = host::total_cpu_time(&tree(target.database));
        let redis_before = host::total_cpu_time(&tree(target.redis));
        let output = wrk.stderr(Stdio::inherit()).output().context("cannot run wrk")?;
        let cpu = spent(cpu_before, host::cpu_time(target.pid));
        // Backends that ended meanwhile take their time with them; pooled ones stay.
        let database_cpu = spent(database_before, host::total_cpu_time(&tree(target.database)));
        let redis_cpu = spent(redis_before, host::total_cpu_time(&tree(target.redis)));

        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.starts_with('{'))
            .context("wrk printed no result")?;
        let result: Value = serde_json::from_str(line)?;
        let number = |key: &str| result[key].as_f64().unwrap_or(0.0);
        let seconds = number("duration_us") / 1e6;
        let requests = number("requests");
        let failed = number("failed");
        let turned_away = number("turned_away");
        ensure!(failed == 0.0, "{}: {failed} requests failed", scenario.name);
        ensure!(
            scenario.may_shed || turned_away == 0.0,
            "{}: {turned_away} requests were answered with an error status",
            scenario.name
        );
        ensure!(requests > 0.0, "{}: no request was answered", scenario.name);
        let per_request = |time: Duration| time.as_secs_f64() * 1e6 / requests;
        Ok(Measurement {
            name: scenario.name,
            requests_per_sec: (requests - turned_away) / seconds,
            p50_ms: number("p50_us") / 1e3,
            p95_ms: number("p95_us") / 1e3,
            p99_ms: number("p99_us") / 1e3,
            turned_away_per_sec: turned_away / seconds,
            cpu_us: cpu.map(per_request),
            database_cpu_us: database_cpu.map(per_request),
            redis_cpu_us: redis_cpu.map(per_request),
        })
    }
}
