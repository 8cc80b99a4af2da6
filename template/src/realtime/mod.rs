//! Realtime: Socket.IO (protocol v5, what socket.io-client 3 and 4 speak) on the service's own
//! port, WebSocket transport only. Clients authenticate in the handshake ([`connect`]), join
//! the rooms of the projects they may read ([`rooms`]), and hear every change to those
//! projects and their tasks after it commits. A change is published once
//! ([`Realtime::announce`]) to every replica ([`fanout`]: PostgreSQL NOTIFY{% if redis %}, here Redis
//! pub/sub{% endif %}), and each replica's [`hub`] hands it to its own clients in the room. No
//! sticky sessions are needed: a connection lives on one replica, and every replica hears
//! every change.

mod config;
mod connect;
mod fanout;
mod head;
mod hub;
mod metrics;
pub mod protocol;
mod rooms;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use serde::Serialize;
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use uuid::Uuid;

pub use config::RealtimeConfig;
pub use fanout::Fanout;
pub use metrics::RealtimeMetrics;

use self::hub::Hub;
use self::protocol::Change;
use crate::AppState;
use crate::events::EventType;

/// Changes a subscriber may fall behind by before it misses some.
pub const BROADCAST_CAPACITY: usize = 256;

/// Publishes changes, and serves the clients of the endpoint [`router`] makes.
#[derive(Debug)]
pub struct Realtime {
    fanout: Fanout,
    metrics: RealtimeMetrics,
    closing: watch::Sender<bool>,
    hubs: Mutex<Vec<JoinHandle<()>>>,
    /// Every change this instance hears, for subscribers besides the Socket.IO rooms.
    heard: broadcast::Sender<Arc<Announced>>,
}

/// A change as every replica hears it, after it committed.
#[derive(Debug)]
pub struct Announced {
    pub kind: EventType,
    pub project_id: Uuid,
    /// The change as published: a [`Change`] in JSON.
    pub message: String,
}

impl Realtime {
    pub fn new(fanout: Fanout, metrics: RealtimeMetrics) -> Self {
        Self {
            fanout,
            metrics,
            closing: watch::Sender::new(false),
            hubs: Mutex::default(),
            heard: broadcast::Sender::new(BROADCAST_CAPACITY),
        }
    }

    /// The changes this instance hears from now on, and whether it is closing. A receiver more
    /// than [`BROADCAST_CAPACITY`] changes behind misses the oldest ones and is told so.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Announced>>, watch::Receiver<bool>) {
        (self.heard.subscribe(), self.closing.subscribe())
    }

    /// Tells the clients in the project's room, on every replica, that `data` changed. Call it
    /// after the change committed: a change that rolled back must not be heard. A change that
    /// cannot be published is logged and counted, not failed: it committed.
    pub async fn announce(&self, kind: EventType, project_id: Uuid, data: &impl Serialize) {
        let change = Change {
            id: Uuid::now_v7(),
            kind,
            project_id,
            data,
        };
        let published = match serde_json::to_string(&change) {
            Ok(message) => self.fanout.publish(&message).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = published {
            self.metrics.publish_failure();
            tracing::error!(
                error = format!("{err:#}"),
                event = kind.as_str(),
                %project_id,
                "a committed change could not be sent to realtime clients"
            );
        }
    }

    /// Closes every connection (clients reconnect elsewhere) once the server stopped accepting.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let hubs = std::mem::take(&mut *self.hubs.lock().unwrap_or_else(PoisonError::into_inner));
        for hub in hubs {
            if tokio::time::timeout(Duration::from_secs(5), hub).await.is_err() {
                tracing::warn!("realtime connections still open at exit");
            }
        }
    }
}

/// The Socket.IO endpoint (`/socket.io/`, behind the copying of its handshakes' heads:
/// [`head`]), and the task that hands it the changes the replicas publish. A route of its own
/// rather than socketioxide's layer, which would wrap every other route and be paid for by
/// every request. Must be called inside a Tokio runtime.
pub fn router(state: &AppState) -> Router {
    let config = &state.config.realtime;
    let hub = Arc::new(Hub::new(
        config.clone(),
        state.realtime.metrics.clone(),
        state.realtime.heard.clone(),
    ));
    let (endpoint, io) = SocketIo::builder()
        .transports([TransportType::Websocket])
        .max_buffer_size(config.send_buffer)
        .ws_max_message_size(config.max_message_bytes)
        .ws_max_frame_size(config.max_message_bytes)
        // Clients send little: a handshake with its token fits in 512 bytes, and the buffer
        // grows for a longer message. Every idle connection keeps one.
        .ws_read_buffer_size(512)
        .ping_interval(config.ping_interval())
        .ping_timeout(config.ping_timeout())
        .connect_timeout(Duration::from_secs(10))
        .with_state(state.clone())
        .with_state(Arc::clone(&hub))
        .build_svc();
    io.ns("/", connect::connected.with(connect::authenticate));
    let task = tokio::spawn(hub::run(
        hub,
        io,
        state.realtime.fanout.listen(),
        state.realtime.closing.subscribe(),
    ));
    state
        .realtime
        .hubs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(task);
    Router::new().route_service(head::PATH, endpoint.map_request(head::owned))
}
