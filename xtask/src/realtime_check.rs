//! Realtime across replicas, seen by a client that is not ours: socket.io-client from npm
//! connects to a second replica of the running service, joins a project's room as its owner,
//! and hears a task created through the first replica's HTTP API, while another account's
//! join is refused and it hears nothing; a handshake with a bad token is refused with the
//! reason. The client is installed by this check, at the version below, into a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::generate::shared_target_dir;
use crate::probe;
use crate::service::{Server, call};

pub const SOCKET_IO_CLIENT_VERSION: &str = "4.8.3";

/// Prints `refused: <reason>` for the bad token, then `OK <ms>` (from the write's request to
/// the change heard), or `FAIL <why>` and exits 1. Arguments: the writing replica's port, the
/// listening replica's, the owner's token, the other account's, the project id.
const CLIENT: &str = r#"
const { io } = require("socket.io-client");
const [writer, listener, owner, stranger, projectId] = process.argv.slice(1);
const fail = (why) => { console.log("FAIL " + why); process.exit(1); };
const connect = (port, token) => new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], auth: { token }, reconnection: false, timeout: 5000 });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(err));
});
(async () => {
    await connect(listener, "not-a-token").then(
        () => fail("a handshake with a bad token connected"),
        (err) => console.log("refused: " + err.message));
    const mine = await connect(listener, owner);
    const theirs = await connect(listener, stranger);
    const joined = await mine.timeout(5000).emitWithAck("join", { project_id: projectId });
    if (!joined.ok) fail("the owner's join: " + JSON.stringify(joined));
    const refused = await theirs.timeout(5000).emitWithAck("join", { project_id: projectId });
    if (refused.ok || refused.error.code !== "not_found") fail("the other account's join: " + JSON.stringify(refused));
    const overheard = [];
    theirs.onAny((event) => overheard.push(event));
    const heard = new Promise((resolve) => mine.on("task.created", resolve));
    const started = Date.now();
    const response = await fetch(`http://127.0.0.1:${writer}/api/v1/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${owner}` },
        body: JSON.stringify({ project_id: projectId, title: "Across replicas" }),
    });
    if (response.status !== 201) fail("creating a task answered " + response.status);
    const task = await response.json();
    const change = await Promise.race([heard, new Promise((resolve) => setTimeout(() => resolve(null), 10000))]);
    if (!change) fail("no task.created reached the client on the other replica within 10 s");
    if (change.data.id !== task.id) fail("heard another task: " + JSON.stringify(change));
    const latency = Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (overheard.length) fail("the other account heard " + overheard.join(", "));
    console.log("OK " + latency);
    process.exit(0);
})().catch((err) => fail(err.stack || String(err)));
"#;

/// With the service running on `port`, and `replica` making the command of another replica on
/// a given port: runs the client against the two, as `owner` and `stranger` (access tokens).
pub fn check(
    replica: impl Fn(u16) -> Command,
    port: u16,
    owner: &str,
    stranger: &str,
    dest: &Path,
) -> anyhow::Result<()> {
    let modules = install_client()?;
    let replica_port = probe::free_port()?;
    let _replica = Server::start(replica(replica_port), replica_port, &dest.join("replica.log"))?;
    let project = call(
        port,
        "POST",
        "/api/v1/projects",
        Some(r#"{"name":"Realtime across replicas"}"#),
        Some(owner),
        201,
    )?;
    let project_id = project["id"].as_str().context("the project has no id")?;
    let output = Command::new("node")
        .args([
            "-e",
            CLIENT,
            &port.to_string(),
            &replica_port.to_string(),
            owner,
            stranger,
            project_id,
        ])
        .env("NODE_PATH", &modules)
        .output()
        .context("node is missing")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = dest.join("socket.io-client.log");
    std::fs::write(&log, format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))?;
    let refused = stdout
        .lines()
        .find_map(|line| line.strip_prefix("refused: "))
        .context("no line about the bad token's handshake")?;
    ensure!(
        refused == "the access token is invalid or expired",
        "the bad token was refused with {refused:?}"
    );
    let Some(latency) = stdout.lines().find_map(|line| line.strip_prefix("OK ")) else {
        bail!("socket.io-client {SOCKET_IO_CLIENT_VERSION}: {}", stdout.trim());
    };
    println!(
        "socket.io-client {SOCKET_IO_CLIENT_VERSION} (npm) on one replica heard a task created through the other \
         {latency} ms after the request; another account's join was refused and it heard nothing; a bad token's \
         handshake was refused"
    );
    Ok(())
}

/// The `node_modules` holding socket.io-client at the pinned version, installed if missing.
fn install_client() -> anyhow::Result<PathBuf> {
    let prefix = shared_target_dir()
        .parent()
        .context("the target directory has a parent")?
        .join(format!("socket.io-client-{SOCKET_IO_CLIENT_VERSION}"));
    let modules = prefix.join("node_modules");
    let manifest = modules.join("socket.io-client").join("package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|package| package["version"] == SOCKET_IO_CLIENT_VERSION);
    if !installed {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(format!("socket.io-client@{SOCKET_IO_CLIENT_VERSION}"))
            .status()
            .context("npm is missing")?;
        ensure!(
            status.success(),
            "npm could not install socket.io-client {SOCKET_IO_CLIENT_VERSION}"
        );
    }
    Ok(modules)
}
