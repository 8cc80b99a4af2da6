//! The accept loop. `axum::serve` has no header-read timeout, no idle timeout and no
//! connection limits, so connections are served with hyper directly: slow, silent or idle
//! clients are dropped, open connections are capped in all and per client, and shutdown
//! drains in-flight requests up to a deadline.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::client_ip::is_trusted;
use crate::AppState;
use crate::limits::network;

/// What an HTTP/2 client sends first; hyper reads up to this much to pick the protocol.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `app` on `listener` until `shutdown` completes. Then it keeps serving for the
/// configured shutdown delay, so load balancers see readiness fail and stop routing here,
/// stops accepting, and gives open requests until the shutdown timeout to finish.
pub async fn serve(listener: TcpListener, app: Router, state: &AppState, shutdown: impl Future<Output = ()>) {
    let config = &state.config.server;
    let header_timeout = config.header_read_timeout();
    let mut builder = Builder::new(TokioExecutor::new());
    // No hyper header-read timeout: it arms and drops a timer on every request. Each
    // connection's own watchdog (`Connection::serve`) enforces it instead.
    builder.http1().keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));

    let (drain, draining) = watch::channel(false);
    let connection = Connection {
        builder,
        header_timeout,
        idle_timeout: config.idle_timeout(),
        draining,
    };
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let per_client = Arc::new(PerClient {
        open: Mutex::default(),
        max: config.max_connections_per_client,
        exempt: Arc::clone(&state.trusted_proxies),
        ipv6_prefix: state.config.rate_limit.ipv6_prefix,
    });
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
        let Some(client) = PerClient::enter(&per_client, peer.ip()) else {
            state.metrics.security_event("connection_refused");
            tracing::debug!(%peer, "the client holds its share of connections; connection closed");
            continue;
        };
        let held = Held::new(permit, client, state.metrics.open_connections.clone());
        let (connection, app) = (connection.clone(), app.clone());
        connections.spawn(async move {
            let _held = held;
            connection.serve(stream, peer, app).await;
        });
    }
    drop(listener);
    let _ = drain.send(true);

    tracing::info!(open_connections = connections.len(), "draining in-flight requests");
    let drained = tokio::time::timeout(config.shutdown_timeout(), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open_connections = connections.len(),
            "shutdown timeout elapsed; closing the remaining connections"
        );
    }
    connections.shutdown().await;
}

/// How each connection is served; a copy goes to every connection's task.
#[derive(Clone)]
struct Connection {
    builder: Builder<TokioExecutor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Turns true when the server drains.
    draining: watch::Receiver<bool>,
}

impl Connection {
    /// Serves `app` on `stream` until the connection ends, closing it gracefully (HTTP/1 after
    /// the response in flight, HTTP/2 with GOAWAY once its streams finish) when the server
    /// drains or the connection sits idle too long: an HTTP/1 connection that has not sent a
    /// whole request head within the header-read timeout of its last answer (or of opening),
    /// an HTTP/2 connection that has started no request for the idle timeout.
    async fn serve(mut self, stream: TcpStream, peer: SocketAddr, app: Router) {
        let Some(protocol) = sends_protocol_within(&stream, self.header_timeout).await else {
            tracing::debug!(%peer, "client sent no request in time; connection dropped");
            return;
        };
        // An HTTP/1 connection waits for the next request's head as soon as it has answered
        // one, so there the header-read timeout is its idle timeout too.
        let idle_timeout = match protocol {
            Protocol::Http1 => self.header_timeout,
            Protocol::Http2 => self.idle_timeout,
        };
        let activity = Activity::new();
        let service = TowerToHyperService::new(with_peer(app, peer, activity.clone()));
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(err) = served {
                        tracing::debug!(%peer, error = %err, "connection closed with an error");
                    }
                    break;
                }
                _ = self.draining.wait_for(|draining| *draining), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = activity.idle(idle_timeout, protocol), if !closing => {
                    if activity.is_fresh() {
                        // hyper would wait for the rest of a first request's head, even when
                        // asked to close; nothing has been answered, so nothing is cut off.
                        tracing::debug!(%peer, "client sent no whole request in time; connection dropped");
                        break;
                    }
                    tracing::debug!(%peer, "idle connection closed");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// `app` for one connection: handlers see the peer as `ConnectInfo`, as with `axum::serve`,
/// and each request's start and answer count as activity.
fn with_peer(
    app: Router,
    peer: SocketAddr,
    activity: Activity,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send {
    let answered = activity.clone();
    app.map_request(move |mut request: Request<Incoming>| {
        activity.start();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    })
    .map_response(move |response| {
        answered.answer();
        response
    })
}

/// Open connections per client address, so that no one client takes every slot.
#[derive(Debug)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
    /// Trusted proxies carry many clients each; they are not limited.
    exempt: Arc<[IpNet]>,
    ipv6_prefix: u8,
}

/// A connection counted against its client, given back when dropped.
#[derive(Debug)]
struct ClientSlot {
    counted: Option<(Arc<PerClient>, IpAddr)>,
}

impl PerClient {
    /// Counts a connection from `peer`, or `None` when the client already holds its share.
    fn enter(this: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        if is_trusted(peer, &this.exempt) {
            return Some(ClientSlot { counted: None });
        }
        let client = network(peer, this.ipv6_prefix);
        let mut open = this.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_default();
        if *count >= this.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            counted: Some((Arc::clone(this), client)),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some((per_client, client)) = self.counted.take() else {
            return;
        };
        let mut open = per_client.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&client);
            }
        }
    }
}

/// What an open connection holds: its slot in all and its client's, and the gauge of open
/// connections, all given back when the connection ends.
struct Held {
    _permit: OwnedSemaphorePermit,
    _client: ClientSlot,
    open: Gauge,
}

impl Held {
    fn new(permit: OwnedSemaphorePermit, client: ClientSlot, open: Gauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            _client: client,
            open,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// When a connection last started or answered a request, and whether one is in flight, for
/// its idle timeout. An HTTP/1 connection has one request in flight at most; for HTTP/2 only
/// the time counts.
#[derive(Debug, Clone)]
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last start or answer.
    last: Arc<AtomicU64>,
    /// [`FRESH`], [`IN_FLIGHT`] or [`ANSWERED`].
    phase: Arc<AtomicU8>,
}

/// No request has started yet.
const FRESH: u8 = 0;
const IN_FLIGHT: u8 = 1;
const ANSWERED: u8 = 2;

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: Arc::default(),
            phase: Arc::new(AtomicU8::new(FRESH)),
        }
    }

    fn start(&self) {
        self.touch();
        self.phase.store(IN_FLIGHT, Ordering::Relaxed);
    }

    fn answer(&self) {
        self.touch();
        self.phase.store(ANSWERED, Ordering::Relaxed);
    }

    fn touch(&self) {
        let since_opened = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(since_opened, Ordering::Relaxed);
    }

    fn is_fresh(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == FRESH
    }

    /// Completes once no request has started or been answered for `timeout`, and, on HTTP/1,
    /// none is in flight. An HTTP/2 stream may end without an answer (a reset), so there only
    /// the time counts.
    async fn idle(&self, timeout: Duration, protocol: Protocol) {
        loop {
            let last = self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if protocol == Protocol::Http1 && self.phase.load(Ordering::Relaxed) == IN_FLIGHT {
                // A request outlasting the timeout; its answer moves the deadline.
                tokio::time::sleep(timeout).await;
            } else {
                return;
            }
        }
    }
}

/// What a client speaks, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2, without consuming it,
/// and says which; `None` for a client that stays silent, trickles out the HTTP/2 preface or
/// hangs up within `timeout`.
async fn sends_protocol_within(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0_u8; HTTP2_PREFACE.len()];
    loop {
        let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await else {
            return None;
        };
        if read == 0 {
            return None;
        }
        if !HTTP2_PREFACE.starts_with(&buffer[..read]) {
            return Some(Protocol::Http1);
        }
        if read == buffer.len() {
            return Some(Protocol::Http2);
        }
        // Part of the preface arrived. peek returns at once while data is queued (and then
        // beats any timeout), so pause before looking again and watch the deadline here.
        if Instant::now() >= deadline {
            return None;
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
