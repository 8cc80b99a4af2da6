//! Each instance's side of realtime: who is connected (counted per account and in all, and
//! which rooms each connection is in), the latest changes kept for clients that come back,
//! and the loop that hands every change the replicas publish to this instance's clients in
//! the project's room.
//!
//! Sending never waits: each connection has a bounded buffer, and a connection whose buffer
//! is full (it stopped reading) is a slow consumer. It is dropped from its rooms at once, so
//! nobody else waits for it, and disconnected: the disconnect packet is tried again until the
//! client reads, unless a ping finds the buffer full first, which closes the transport.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::Announced;
use super::config::RealtimeConfig;
use super::fanout::Heard;
use super::metrics::RealtimeMetrics;
use super::protocol::Ack;
use crate::auth::AccessClaims;
use crate::events::EventType;

/// How often a slow consumer's disconnect is tried again.
const RETRY_DISCONNECT: std::time::Duration = std::time::Duration::from_millis(50);

/// The room of a project's changes.
pub fn room(project_id: Uuid) -> String {
    format!("project:{project_id}")
}

#[derive(Debug)]
pub struct Hub {
    pub config: RealtimeConfig,
    pub metrics: RealtimeMetrics,
    counts: Arc<Mutex<Counts>>,
    kept: Mutex<VecDeque<Kept>>,
    /// This instance's other subscribers (GraphQL subscriptions).
    heard: broadcast::Sender<Arc<Announced>>,
}

/// Connections in all and per account, and connections per room.
#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    per_account: HashMap<Uuid, usize>,
    per_room: HashMap<Uuid, usize>,
}

/// A change as heard, ready to send again.
#[derive(Debug)]
struct Kept {
    id: Uuid,
    project_id: Uuid,
    event: &'static str,
    payload: Box<RawValue>,
    heard_at: Instant,
}

/// What a change says about itself; the rest is sent as it came.
#[derive(Debug, Deserialize)]
struct Head {
    id: Uuid,
    #[serde(rename = "type")]
    kind: EventType,
    project_id: Uuid,
}

/// One connection's place in the counts, its rooms, its token and its event budget; kept in
/// the socket's extensions, and given back when the socket is dropped.
#[derive(Debug)]
pub struct Presence {
    counts: Arc<Mutex<Counts>>,
    metrics: RealtimeMetrics,
    /// The account it is counted under: its token's `sub`, which a fresh token cannot change.
    pub account: Uuid,
    rooms: Mutex<HashSet<Uuid>>,
    /// Set once the connection was found not to read; it joins nothing more.
    slow: AtomicBool,
    /// The token it connected with, or the fresh one it sent since.
    claims: Mutex<Arc<AccessClaims>>,
    pub expiry: OnceLock<AbortHandle>,
    limiter: DefaultDirectRateLimiter,
}

impl Hub {
    pub fn new(config: RealtimeConfig, metrics: RealtimeMetrics, heard: broadcast::Sender<Arc<Announced>>) -> Self {
        Self {
            config,
            metrics,
            counts: Arc::default(),
            kept: Mutex::default(),
            heard,
        }
    }

    /// Counts a new connection with `claims`, or says why there is no room for it.
    pub fn enter(&self, claims: AccessClaims) -> Result<Arc<Presence>, &'static str> {
        let account = claims.sub;
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.connections >= self.config.max_connections {
            return Err("the server has no room for more connections; try again later");
        }
        let mine = counts.per_account.entry(account).or_default();
        if *mine >= self.config.max_connections_per_account {
            return Err("this account has too many open connections");
        }
        *mine += 1;
        counts.connections += 1;
        self.metrics.connections.inc();
        let per_second = NonZeroU32::new(self.config.events_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.config.event_burst).unwrap_or(NonZeroU32::MIN);
        Ok(Arc::new(Presence {
            counts: Arc::clone(&self.counts),
            metrics: self.metrics.clone(),
            account,
            rooms: Mutex::default(),
            slow: AtomicBool::new(false),
            claims: Mutex::new(Arc::new(claims)),
            expiry: OnceLock::new(),
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
        }))
    }

    /// The connection's presence, if it is within its event budget; the refusal otherwise.
    pub fn admit(&self, socket: &SocketRef) -> Result<Arc<Presence>, Ack> {
        let presence = socket
            .extensions
            .get::<Arc<Presence>>()
            .ok_or_else(|| Ack::failed("unauthorized", "the connection is not authenticated"))?;
        if presence.limiter.check().is_err() {
            self.metrics.client_error("rate_limited");
            return Err(Ack::failed("rate_limited", "too many events; slow down"));
        }
        Ok(presence)
    }

    /// Puts `socket` in the project's room, after sending it the changes since `since` if they
    /// are all still kept. Under the lock of what is kept, so no change heard meanwhile is
    /// missed or sent twice.
    pub fn join(&self, socket: &SocketRef, presence: &Presence, project_id: Uuid, since: Option<Uuid>) -> Ack {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if presence.slow.load(Ordering::Relaxed) {
            return Ack::failed("slow_consumer", "the connection is being closed");
        }
        {
            let mut rooms = presence.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if !rooms.contains(&project_id) {
                if rooms.len() >= self.config.max_rooms_per_connection {
                    return Ack::failed("too_many_rooms", "leave a project before joining another");
                }
                rooms.insert(project_id);
                presence.entered(project_id);
            }
        }
        socket.join(room(project_id));
        let Some(since) = since else {
            return Ack::Joined {
                ok: true,
                recovered: true,
                missed: 0,
            };
        };
        let Some(position) = kept.iter().position(|change| change.id == since) else {
            return Ack::Joined {
                ok: true,
                recovered: false,
                missed: 0,
            };
        };
        let mut missed = 0;
        for change in kept
            .iter()
            .skip(position + 1)
            .filter(|change| change.project_id == project_id)
        {
            if !self.send(socket, presence, change) {
                break;
            }
            missed += 1;
        }
        Ack::Joined {
            ok: true,
            recovered: true,
            missed,
        }
    }

    /// Keeps a change the replicas published and sends it to this instance's clients in its
    /// project's room.
    fn hear(&self, io: &SocketIo, message: String) {
        let head = match serde_json::from_str::<Head>(&message) {
            Ok(head) => head,
            Err(err) => {
                tracing::warn!(error = %err, "a realtime change could not be read; skipped");
                return;
            }
        };
        if self.heard.receiver_count() > 0 {
            let announced = Announced {
                kind: head.kind,
                project_id: head.project_id,
                message: message.clone(),
            };
            // Sent to those subscribed now; none may have stayed since.
            let _ = self.heard.send(Arc::new(announced));
        }
        let Ok(payload) = RawValue::from_string(message) else {
            return;
        };
        let change = Kept {
            id: head.id,
            project_id: head.project_id,
            event: head.kind.as_str(),
            payload,
            heard_at: Instant::now(),
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        for socket in io.to(room(change.project_id)).sockets() {
            if let Some(presence) = socket.extensions.get::<Arc<Presence>>() {
                self.send(&socket, &presence, &change);
            }
        }
        let window = self.config.replay_window();
        while kept
            .front()
            .is_some_and(|oldest| kept.len() >= self.config.replay_events || oldest.heard_at.elapsed() > window)
        {
            kept.pop_front();
        }
        kept.push_back(change);
    }

    /// Forgets every kept change: some were missed, so a replay would have a hole.
    fn forget(&self) {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Sends `change` without waiting; false when the connection did not take it.
    fn send(&self, socket: &SocketRef, presence: &Presence, change: &Kept) -> bool {
        match socket.emit(change.event, &*change.payload) {
            Ok(()) => {
                self.metrics.emitted(change.event);
                true
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                self.drop_slow(socket, presence);
                false
            }
            // Closed: it is on its way out.
            Err(_) => false,
        }
    }

    fn drop_slow(&self, socket: &SocketRef, presence: &Presence) {
        if presence.slow.swap(true, Ordering::Relaxed) {
            return;
        }
        self.metrics.slow_consumer();
        tracing::warn!(
            sid = %socket.id,
            user_id = %presence.account,
            "realtime client dropped: it is not reading what is sent to it"
        );
        let rooms: Vec<Uuid> = presence
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for project_id in rooms {
            socket.leave(room(project_id));
            presence.left(project_id);
        }
        // The disconnect needs room in the same buffer: tried until the client reads again, or
        // until a ping finds the buffer full and closes the transport.
        let socket = socket.clone();
        let give_up = self.config.ping_interval() + self.config.ping_timeout();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while socket.connected() && started.elapsed() < give_up {
                match socket.clone().disconnect() {
                    Err(SocketError::InternalChannelFull) => tokio::time::sleep(RETRY_DISCONNECT).await,
                    _ => return,
                }
            }
        });
    }
}

impl Presence {
    pub fn claims(&self) -> Arc<AccessClaims> {
        Arc::clone(&self.claims.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A fresh token of the same account.
    pub fn renew(&self, claims: AccessClaims) {
        *self.claims.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(claims);
    }

    pub fn leave(&self, socket: &SocketRef, project_id: Uuid) {
        socket.leave(room(project_id));
        if self
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&project_id)
        {
            self.left(project_id);
        }
    }

    fn entered(&self, project_id: Uuid) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.per_room.entry(project_id).or_default() += 1;
        self.metrics.rooms.set(gauge(counts.per_room.len()));
    }

    fn left(&self, project_id: Uuid) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut counts.per_room, project_id);
        self.metrics.rooms.set(gauge(counts.per_room.len()));
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(expiry) = self.expiry.get() {
            expiry.abort();
        }
        let rooms = std::mem::take(self.rooms.get_mut().unwrap_or_else(PoisonError::into_inner));
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for project_id in rooms {
            decrement(&mut counts.per_room, project_id);
        }
        decrement(&mut counts.per_account, self.account);
        counts.connections = counts.connections.saturating_sub(1);
        self.metrics.rooms.set(gauge(counts.per_room.len()));
        self.metrics.connections.dec();
    }
}

fn decrement(counts: &mut HashMap<Uuid, usize>, key: Uuid) {
    if let Some(count) = counts.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Hands what the replicas publish to this instance's clients until the service closes,
/// then closes every connection, which tells socket.io clients to reconnect (elsewhere, as
/// this instance no longer accepts).
pub async fn run(hub: Arc<Hub>, io: SocketIo, mut heard: mpsc::Receiver<Heard>, mut closing: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            next = heard.recv() => match next {
                Some(Heard::Message(message)) => hub.hear(&io, message),
                Some(Heard::Gap) => hub.forget(),
                None => break,
            },
            _ = closing.wait_for(|closing| *closing) => break,
        }
    }
    io.close().await;
}
