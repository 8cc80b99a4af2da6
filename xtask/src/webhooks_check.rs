//! Webhook signatures checked by a receiver that is not ours: a Python server using the
//! Standard Webhooks package from PyPI verifies a delivery the running service sends when a
//! project is created, and refuses the same delivery with its body changed, so the check
//! can fail.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::probe;
use crate::service::{Server, call};

/// The version `.ci/run` installs.
pub const STANDARDWEBHOOKS_VERSION: &str = "1.1.0";

/// Answers 204 to a delivery that verifies, 400 to one that does not, and writes one line per
/// delivery to the file named by its second argument: the event type when the signature
/// holds and a tampered copy of the body is refused, else what went wrong. Any GET is 200.
const RECEIVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from standardwebhooks import Webhook

port, out, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = Webhook(secret).verify(body, headers)["type"]
            try:
                Webhook(secret).verify(body + " ", headers)
                line = "a changed body verified too"
            except Exception:
                line = "verified " + event
        except Exception as err:
            line = "refused: %r" % err
        with open(out, "a") as file:
            file.write(line + "\n")
        self.send_response(204 if line.startswith("verified") else 400)
        self.end_headers()

    # Readiness, for the harness that waits on /health/ready.
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
"#;

/// With the service on `port` (its development settings: an in-process worker, deliveries to
/// loopback allowed) and an account's `token`: registers a receiver, creates a project, and
/// waits for the receiver to verify the delivery.
pub fn check(port: u16, token: &str, dest: &Path) -> anyhow::Result<()> {
    let version = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('standardwebhooks'))",
        ])
        .output()
        .context("python3 is missing")?;
    let found = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    ensure!(
        found == STANDARDWEBHOOKS_VERSION,
        "standardwebhooks {found:?} found; the check is written for {STANDARDWEBHOOKS_VERSION} \
         (pip install standardwebhooks=={STANDARDWEBHOOKS_VERSION})"
    );
    let receiver_port = probe::free_port()?;
    let body = format!(r#"{{"url":"http://127.0.0.1:{receiver_port}/hook","events":["project.created"]}}"#);
    let endpoint = call(port, "POST", "/api/v1/webhooks", Some(&body), Some(token), 201)?;
    let secret = endpoint["secret"].as_str().context("no secret in the registration")?;
    let out = dest.join("webhook-receiver.txt");
    let _ = std::fs::remove_file(&out);
    let mut receiver = Command::new("python3");
    receiver
        .args(["-c", RECEIVER, &receiver_port.to_string()])
        .arg(&out)
        .arg(secret)
        .stdout(Stdio::null());
    let _receiver = Server::start(receiver, receiver_port, &dest.join("webhook-receiver.log"))?;
    call(
        port,
        "POST",
        "/api/v1/projects",
        Some(r#"{"name":"Signed delivery"}"#),
        Some(token),
        201,
    )?;
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&out).unwrap_or_default();
        match lines.lines().next() {
            Some("verified project.created") => break,
            Some(other) => bail!("the standardwebhooks receiver says: {other}"),
            None if started.elapsed() > Duration::from_secs(20) => {
                bail!("no delivery reached the standardwebhooks receiver within 20 s")
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    println!(
        "a delivery verified by standardwebhooks {STANDARDWEBHOOKS_VERSION} (PyPI) {} ms after the write; the same with its body changed refused",
        started.elapsed().as_millis()
    );
    Ok(())
}
