//! `join` and `leave`: a room per project, joined only by an account that may read the
//! project, checked in SQL like every other read. Another account's project is refused
//! exactly like a missing one, and a refused join is a security event.

use std::sync::Arc;

use socketioxide::ParserError;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::hub::Hub;
use super::protocol::{Ack, Join, Leave};
use crate::AppState;
use crate::db;
use crate::http::authn::CurrentUser;
use crate::http::error::ApiError;

pub async fn join(
    socket: SocketRef,
    TryData(body): TryData<Join>,
    ack: AckSender,
    State(state): State<AppState>,
    State(hub): State<Arc<Hub>>,
) {
    let refused = |err: ApiError| refusal(err, "the access token is no longer valid");
    let reply = async {
        let presence = hub.admit(&socket)?;
        let body = body.map_err(|err| bad_payload(&hub, &err))?;
        // Permissions as they are now, not as they were at the handshake.
        let user = CurrentUser::holding(&state, &presence.claims())
            .await
            .map_err(refused)?;
        let mut conn = state.db.acquire().await.map_err(|err| refused(err.into()))?;
        let project = db::projects::find(&mut conn, user.scope(), body.project_id)
            .await
            .map_err(|err| refused(err.into()))?;
        conn.release();
        if project.is_none() {
            state.metrics.security_event("realtime_join_refused");
            tracing::warn!(
                target: "security",
                event = "realtime_join_refused",
                user_id = %user.id,
                project_id = %body.project_id,
                "realtime join refused"
            );
            return Err(Ack::failed("not_found", "project not found"));
        }
        Ok(hub.join(&socket, &presence, body.project_id, body.since))
    };
    let _ = ack.send(&reply.await.unwrap_or_else(|refusal| refusal));
}

pub async fn leave(socket: SocketRef, TryData(body): TryData<Leave>, ack: AckSender, State(hub): State<Arc<Hub>>) {
    let reply = (|| {
        let presence = hub.admit(&socket)?;
        let body = body.map_err(|err| bad_payload(&hub, &err))?;
        presence.leave(&socket, body.project_id);
        Ok(Ack::done())
    })();
    let _ = ack.send(&reply.unwrap_or_else(|refusal: Ack| refusal));
}

/// A payload of the wrong shape: refused with what was wrong, and counted.
pub fn bad_payload(hub: &Hub, err: &ParserError) -> Ack {
    hub.metrics.client_error("bad_payload");
    Ack::failed("bad_payload", err.to_string())
}

/// An error on the way to an answer, as the client reads it: `unauthorized` for a token
/// refused, else a generic refusal with the internal cause logged.
pub(super) fn refusal(err: ApiError, unauthorized: &'static str) -> Ack {
    match err {
        ApiError::Unauthorized { .. } => Ack::failed("unauthorized", unauthorized),
        err => {
            tracing::error!(error = %err, "realtime event failed");
            Ack::failed("unavailable", "the service cannot answer now; try again shortly")
        }
    }
}
