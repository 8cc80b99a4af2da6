//! The handshake and the life of a connection. A client authenticates in the handshake's
//! `auth` payload with an access token, checked exactly as the REST API checks a bearer
//! token; a refusal reaches it as `connect_error` with the reason, and is a security event.
//! When the token expires the server disconnects the client, unless it sent a fresh one for
//! the same account (`auth`) first.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::socket::{DisconnectReason, Sid};
use time::OffsetDateTime;

use super::hub::{Hub, Presence};
use super::protocol::{Ack, Handshake, Refresh};
use super::rooms;
use crate::AppState;
use crate::auth::AccessClaims;
use crate::http::authn::{self, CurrentUser};
use crate::http::error::ApiError;

/// Why a handshake was refused, as the client reads it.
#[derive(Debug)]
pub struct Refused(&'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const INVALID: &str = "the access token is invalid or expired";

/// Connect middleware: admits a connection with a valid token and room under the limits, and
/// registers the events it may send.
pub async fn authenticate(
    socket: SocketRef,
    io: SocketIo,
    TryData(handshake): TryData<Handshake>,
    State(state): State<AppState>,
    State(hub): State<Arc<Hub>>,
) -> Result<(), Refused> {
    let refuse = |reason: &'static str, message: &'static str| {
        state.metrics.security_event("realtime_handshake_refused");
        tracing::warn!(
            target: "security",
            event = "realtime_handshake_refused",
            reason,
            sid = %socket.id,
            "realtime handshake refused"
        );
        Refused(message)
    };
    let Some(token) = handshake
        .ok()
        .and_then(|handshake| handshake.token)
        .filter(|token| !token.is_empty())
    else {
        return Err(refuse(
            "missing_token",
            "send an access token in the handshake: auth: { token }",
        ));
    };
    let (claims, _) = check(&state, &token).await.map_err(|err| match err {
        ApiError::Unauthorized { .. } => refuse("invalid_token", INVALID),
        _ => Refused("the service cannot check tokens now; try again shortly"),
    })?;
    // The leeway for clock skew that the REST API allows would only buy seconds before the
    // connection is ended for expiry; a token past its `exp` does not connect.
    if claims.exp <= OffsetDateTime::now_utc().unix_timestamp() {
        return Err(refuse("invalid_token", INVALID));
    }
    let presence = hub
        .enter(claims)
        .map_err(|message| refuse("too_many_connections", message))?;
    let expiry = tokio::spawn(expire(io, socket.id, Arc::downgrade(&presence)));
    let _ = presence.expiry.set(expiry.abort_handle());
    socket.extensions.insert(presence);
    // Here, not in the connect handler: socketioxide runs that as a task of its own, which may
    // start only after the client, already told it is connected, has sent its first event;
    // that event would find no handler and be lost.
    socket.on("join", rooms::join);
    socket.on("leave", rooms::leave);
    socket.on("auth", refresh);
    socket.on_fallback(unknown);
    socket.on_disconnect(disconnected);
    Ok(())
}

/// A token's claims and its account as it is now.
async fn check(state: &AppState, token: &str) -> Result<(AccessClaims, CurrentUser), ApiError> {
    let claims = authn::verify(state, token).await?;
    let user = CurrentUser::holding(state, &claims).await?;
    Ok((claims, user))
}

/// Connect handler, once the client is told it is connected; its events were registered by
/// [`authenticate`].
pub async fn connected(socket: SocketRef) {
    if let Some(presence) = socket.extensions.get::<Arc<Presence>>() {
        tracing::info!(sid = %socket.id, user_id = %presence.account, "realtime client connected");
    }
}

/// `auth`: a fresh token for the same account pushes the expiry back.
async fn refresh(
    socket: SocketRef,
    TryData(body): TryData<Refresh>,
    ack: AckSender,
    State(state): State<AppState>,
    State(hub): State<Arc<Hub>>,
) {
    let reply = async {
        let presence = hub.admit(&socket)?;
        let body = body.map_err(|err| rooms::bad_payload(&hub, &err))?;
        let (claims, user) = check(&state, &body.token)
            .await
            .map_err(|err| rooms::refusal(err, INVALID))?;
        if user.id != presence.account {
            return Err(Ack::failed("unauthorized", "the token is for another account"));
        }
        let expires_at = claims.exp;
        presence.renew(claims);
        Ok(Ack::Refreshed { ok: true, expires_at })
    };
    let _ = ack.send(&reply.await.unwrap_or_else(|refusal| refusal));
}

/// Any other event: refused, and counted.
async fn unknown(Event(event): Event, ack: AckSender, State(hub): State<Arc<Hub>>) {
    hub.metrics.client_error("unknown_event");
    tracing::debug!(event = %event, "unknown realtime event");
    let _ = ack.send(&Ack::failed("unknown_event", format!("there is no event {event:?}")));
}

/// Counts why connections end; a packet the server could not parse is a client error too.
async fn disconnected(reason: DisconnectReason, State(hub): State<Arc<Hub>>) {
    let label = match reason {
        DisconnectReason::TransportClose => "transport_close",
        DisconnectReason::MultipleHttpPollingError => "polling_error",
        DisconnectReason::PacketParsingError => "malformed",
        DisconnectReason::TransportError => "transport_error",
        DisconnectReason::HeartbeatTimeout => "heartbeat_timeout",
        DisconnectReason::ClientNSDisconnect => "client_disconnect",
        DisconnectReason::ServerNSDisconnect => "server_disconnect",
        DisconnectReason::ClosingServer => "closing",
    };
    if reason == DisconnectReason::PacketParsingError {
        hub.metrics.client_error("malformed");
    }
    hub.metrics.disconnect(label);
}

/// Disconnects the client when its token expires, unless a fresh one moved the expiry on.
async fn expire(io: SocketIo, sid: Sid, presence: std::sync::Weak<Presence>) {
    loop {
        let Some(expires_at) = presence.upgrade().map(|presence| presence.claims().exp) else {
            return;
        };
        let left = expires_at - OffsetDateTime::now_utc().unix_timestamp();
        if left > 0 {
            tokio::time::sleep(Duration::from_secs(left.unsigned_abs())).await;
            continue;
        }
        if let Some(socket) = io.get_socket(sid) {
            tracing::info!(sid = %sid, "realtime client disconnected: its access token expired");
            let _ = socket.emit("session.expired", &());
            let _ = socket.disconnect();
        }
        return;
    }
}
