//! The accept loop. `axum::serve` has no header-read timeout and no connection limit, so
//! connections are served with hyper directly: slow or silent clients are dropped, open
//! connections are capped, and shutdown drains in-flight requests up to a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::Layer as _;

use crate::config::ServerConfig;

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and gives open
/// requests until the configured shutdown timeout to finish.
pub async fn serve(listener: TcpListener, app: Router, config: &ServerConfig, shutdown: impl Future<Output = ()>) {
    let header_timeout = config.header_read_timeout();
    let mut builder = Builder::new(TokioExecutor::new());
    // The header-read timer also runs while a keep-alive connection sits idle, so it doubles
    // as the idle timeout.
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
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
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
        let service = TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(app.clone()));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Detecting HTTP/2 reads the first bytes before hyper's own timer starts, so a
            // client that connects and stays silent is dropped here.
            if !first_bytes_within(&stream, header_timeout).await {
                tracing::debug!(%peer, "client sent nothing; connection dropped");
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %err, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);

    tracing::info!(
        open_connections = graceful.count(),
        "shutting down: draining in-flight requests"
    );
    if tokio::time::timeout(config.shutdown_timeout(), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout elapsed; dropping the remaining connections");
    }
}

/// Waits for the client's first byte without consuming it; `false` on timeout or hang-up.
async fn first_bytes_within(stream: &TcpStream, timeout: Duration) -> bool {
    let mut first = [0_u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut first)).await, Ok(Ok(1)))
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

/// The address in a form clients can use: `0.0.0.0` becomes `127.0.0.1`.
pub fn local_url(address: SocketAddr) -> String {
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        address.ip().to_string()
    };
    format!("http://{host}:{}", address.port())
}
