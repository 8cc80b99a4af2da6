//! Requests to a generated service on loopback, to see whether it answers and what: a blocking
//! HTTP client with short timeouts, no proxy and no redirects.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::bail;
use ureq::Agent;

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// The status code of `GET path` on `127.0.0.1:port`, or `None` when nothing answers.
pub fn status(port: u16, path: &str) -> Option<u16> {
    request(port, "GET", path, None, None).ok().map(|(status, _)| status)
}

/// The status and body of a request to `127.0.0.1:port`, with an optional JSON body and
/// bearer token.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut builder = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if json.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder.body(json.unwrap_or_default().to_owned())?;
    let mut response = agent().run(request)?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok((status, body))
}

/// Waits until `GET /health/ready` answers 200, giving up after `limit` or when `keep_going`
/// says so; returns how long it took.
pub fn wait_until_ready(
    port: u16,
    limit: Duration,
    mut keep_going: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        keep_going()?;
        if status(port, "/health/ready") == Some(200) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing became ready on port {port} within {limit:?}")
}
