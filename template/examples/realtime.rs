//! Realtime under load, run by `cargo xtask bench` against the running release build: what an
//! idle connection costs (the service's resident memory with `IDLE` connections open, against
//! the same process before them), then the delay from sending a write to each of `ROOM`
//! clients in the project's room hearing its change (p50, p99, over `WRITES` writes). The
//! delay counts from the write's request, so it includes the write itself. Prints one JSON line.
//!
//! `REALTIME_PORT=8080 REALTIME_PID=<pid> REALTIME_TOKEN=<access token> REALTIME_PROJECT=<id>
//! cargo run --release --example realtime`, against a service that allows that many
//! connections per account (`APP_REALTIME__MAX_CONNECTIONS_PER_ACCOUNT`).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const IDLE: usize = 2000;
const ROOM: usize = 1000;
const WRITES: usize = 30;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let port: u16 = var("REALTIME_PORT")?.parse()?;
    let pid = var("REALTIME_PID")?;
    let token = var("REALTIME_TOKEN")?;
    let project_id = var("REALTIME_PROJECT")?;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");

    let before = rss_kib(&pid)?;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(connect(&url, &token).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = rss_kib(&pid)?;
    drop(idle);

    let (heard, mut arrivals) = mpsc::unbounded_channel();
    let mut listeners = Vec::with_capacity(ROOM);
    for _ in 0..ROOM {
        let mut socket = connect(&url, &token).await?;
        send(
            &mut socket,
            &format!("420{}", json!(["join", { "project_id": project_id }])),
        )
        .await?;
        let ack = next_text(&mut socket).await?;
        ensure!(ack.starts_with("430[{\"ok\":true"), "join refused: {ack}");
        listeners.push(tokio::spawn(listen(socket, heard.clone())));
    }
    service::outbound::install_tls();
    let client = reqwest::Client::new();
    let mut delays = Vec::with_capacity(ROOM * WRITES);
    for n in 0..WRITES {
        let sent = Instant::now();
        let response = client
            .post(format!("http://127.0.0.1:{port}/api/v1/tasks"))
            .bearer_auth(&token)
            .json(&json!({ "project_id": project_id, "title": format!("Realtime bench {n}") }))
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "creating a task answered {}",
            response.status()
        );
        for _ in 0..ROOM {
            let at: Instant = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .context("a client heard nothing within 10 s")?
                .context("the listeners stopped")?;
            delays.push(at.duration_since(sent));
        }
    }
    listeners.iter().for_each(tokio::task::JoinHandle::abort);
    delays.sort_unstable();
    let percentile = |p: usize| delays[(delays.len() * p / 100).min(delays.len() - 1)].as_secs_f64() * 1000.0;
    #[allow(clippy::cast_precision_loss, reason = "KiB and counts far below 2^52")]
    let per_connection = connected.saturating_sub(before) as f64 / IDLE as f64;
    println!(
        "{}",
        json!({
            "idle_connections": IDLE,
            "rss_before_kib": before,
            "rss_connected_kib": connected,
            "kib_per_idle_connection": per_connection,
            "room_clients": ROOM,
            "writes": WRITES,
            "delivery_p50_ms": percentile(50),
            "delivery_p99_ms": percentile(99),
        })
    );
    Ok(())
}

/// A Socket.IO connection authenticated with `token`.
async fn connect(url: &str, token: &str) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.context("cannot connect")?;
    let open = next_text(&mut socket).await?;
    ensure!(open.starts_with('0'), "no Engine.IO open: {open}");
    send(&mut socket, &format!("40{}", json!({ "token": token }))).await?;
    let reply = next_text(&mut socket).await?;
    ensure!(reply.starts_with("40"), "handshake refused: {reply}");
    Ok(socket)
}

/// Stamps the arrival of every change, answering pings on the way.
async fn listen(mut socket: Socket, heard: mpsc::UnboundedSender<Instant>) {
    while let Ok(text) = next_text(&mut socket).await {
        if text.starts_with("42[\"task.created\"") && heard.send(Instant::now()).is_err() {
            return;
        }
    }
}

/// The next text frame that is not a ping (which is answered).
async fn next_text(socket: &mut Socket) -> anyhow::Result<String> {
    loop {
        match socket.next().await.context("the connection closed")?? {
            Message::Text(text) if text.as_str() == "2" => send(socket, "3").await?,
            Message::Text(text) => return Ok(text.as_str().to_owned()),
            _ => {}
        }
    }
}

async fn send(socket: &mut Socket, text: &str) -> anyhow::Result<()> {
    socket.send(Message::text(text)).await?;
    Ok(())
}

fn rss_kib(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}
