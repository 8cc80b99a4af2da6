//! A minimal HTTP client over loopback, so the template's tooling needs no HTTP library to
//! see whether a generated service answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::bail;

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status code of `GET path` on `127.0.0.1:port`, or `None` when nothing answers.
pub fn status(port: u16, path: &str) -> Option<u16> {
    request(port, "GET", path, None, None).ok().map(|(status, _)| status)
}

/// The status and body of a request to `127.0.0.1:port`, with an optional JSON body and
/// bearer token, over HTTP/1.1 without compression.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let authorization = token
        .map(|token| format!("authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let body = json.unwrap_or_default();
    let content = json
        .map(|body| format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{authorization}{content}");
    stream.write_all(format!("{head}\r\n{body}").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some(status) = response.get(9..12).and_then(|code| code.parse().ok()) else {
        bail!("not an HTTP response from port {port}: {response:?}");
    };
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
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
