//! The accept loop. `axum::serve` has no header-read timeout and no connection limit, so
//! connections are served with hyper directly: slow or silent clients are dropped, open
//! connections are capped, and shutdown drains in-flight requests up to a deadline.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::ServerConfig;

/// What an HTTP/2 client sends first; hyper reads up to this much to pick the protocol.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes. Then it keeps serving for the
/// configured shutdown delay, so load balancers see readiness fail and stop routing here,
/// stops accepting, and gives open requests until the shutdown timeout to finish.
pub async fn serve(listener: TcpListener, app: Router, config: &ServerConfig, shutdown: impl Future<Output = ()>) {
    let header_timeout = config.header_read_timeout();
    let mut builder = Builder::new(TokioExecutor::new());
    // The header-read timer also runs while a keep-alive connection sits idle, so it doubles
    // as the HTTP/1 idle timeout.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let shutdown = async {
        shutdown.await;
        tracing::info!(
            delay_secs = config.shutdown_delay_secs,
            "shutdown requested; readiness now fails"
        );
        tokio::time::sleep(config.shutdown_delay()).await;
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Reap finished connections so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Handlers and middleware see the peer as `ConnectInfo`, as with `axum::serve`.
        let service = TowerToHyperService::new(app.clone().layer(Extension(ConnectInfo(peer))));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _permit = permit;
            if !sends_protocol_within(&stream, header_timeout).await {
                tracing::debug!(%peer, "client sent no request in time; connection dropped");
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %err, "connection closed with an error");
            }
        });
    }
    drop(listener);

    tracing::info!(open_connections = graceful.count(), "draining in-flight requests");
    if tokio::time::timeout(config.shutdown_timeout(), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = connections.len(),
            "shutdown timeout elapsed; closing the remaining connections"
        );
    }
    connections.shutdown().await;
}

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2, without consuming it.
/// hyper's own timer only starts after that, so a client that connects and stays silent, or
/// trickles out the HTTP/2 preface, is dropped here.
async fn sends_protocol_within(stream: &TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0_u8; HTTP2_PREFACE.len()];
    loop {
        let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await else {
            return false;
        };
        if read == 0 {
            return false;
        }
        if read == buffer.len() || !HTTP2_PREFACE.starts_with(&buffer[..read]) {
            return true;
        }
        // Part of the preface arrived. peek returns at once while data is queued (and then
        // beats any timeout), so pause before looking again and watch the deadline here.
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes and container engines send).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

/// The address in a form clients on this host can use: an unspecified address becomes
/// loopback.
pub fn loopback(mut address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        address.set_ip(if address.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    address
}

/// The URL of the service listening on `address`, for log lines.
pub fn local_url(address: SocketAddr) -> String {
    format!("http://{}", loopback(address))
}

/// Asks the service at `address` for `/health/live` and succeeds on 200. Plain blocking I/O:
/// it runs as a one-shot command, without the async runtime.
pub fn check_live(address: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("nothing is listening on {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /health/live HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")?;
    let mut status_line = [0_u8; 12];
    stream.read_exact(&mut status_line).context("no HTTP response")?;
    if !status_line.starts_with(b"HTTP/1.1 200") {
        anyhow::bail!(
            "liveness probe answered {}",
            String::from_utf8_lossy(&status_line).trim()
        );
    }
    Ok(())
}
