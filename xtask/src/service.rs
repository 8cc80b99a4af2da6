//! A generated service run as a process from the shared target directory: started on a port
//! with its own configuration, waited for until ready, stopped when dropped; and requests to
//! it whose answer must have a given status.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::generate::shared_target_dir;
use crate::probe;

/// An access token of the service on `port` for the account with `credentials` (JSON).
pub fn sign_in(port: u16, credentials: &str) -> anyhow::Result<String> {
    let session = call(port, "POST", "/api/v1/auth/login", Some(credentials), None, 200)?;
    session["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access token")
}

/// The JSON answer of a request, which must have status `expected`.
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
    expected: u16,
) -> anyhow::Result<Value> {
    let (status, body) = probe::request(port, method, path, json, token)?;
    ensure!(
        status == expected,
        "{method} {path} on port {port} answered {status}, not {expected}: {body}"
    );
    serde_json::from_str(&body).with_context(|| format!("{method} {path} answered no JSON: {body:?}"))
}

pub fn binary(package: &str) -> PathBuf {
    shared_target_dir().join("debug").join(package)
}

/// `serve` of a generated service on `port`, in development mode with its own configuration.
pub fn service(project: &Path, package: &str, port: u16, database_url: &str) -> Command {
    let mut command = Command::new(binary(package));
    command
        .arg("serve")
        // In the project, as a developer runs it: the `.env` there names what `db up` started
        // beside the database (REDIS_URL); the environment still wins over it.
        .current_dir(project)
        .env("APP_CONFIG_DIR", project.join("config"))
        .env("APP_SERVER__PORT", port.to_string())
        .env("DATABASE_URL", database_url);
    command
}

/// A running service, stopped when dropped.
pub struct Server(Option<Child>);

impl Server {
    pub fn start(mut command: Command, port: u16, log: &Path) -> anyhow::Result<Self> {
        let output = File::create(log)?;
        command.stdout(output.try_clone()?).stderr(output);
        let mut server = Self(Some(command.spawn()?));
        probe::wait_until_ready(port, Duration::from_secs(30), || {
            let exited = server.0.as_mut().and_then(|child| child.try_wait().ok().flatten());
            ensure!(
                exited.is_none(),
                "the service exited ({exited:?}); see {}",
                log.display()
            );
            Ok(())
        })?;
        Ok(server)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
