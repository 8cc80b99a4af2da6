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
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut status_line = [0_u8; 12];
    stream.read_exact(&mut status_line).ok()?;
    std::str::from_utf8(&status_line[9..12]).ok()?.parse().ok()
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
