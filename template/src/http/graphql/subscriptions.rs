//! Subscriptions: the changes to a project's tasks, fed by the same fan-out as the Socket.IO
//! rooms (every replica hears every change, after it commits), over WebSocket at `/graphql`
//! with `graphql-transport-ws` (or the older `graphql-ws`). The access token comes in
//! `connection_init`'s payload, `{"Authorization": "Bearer <token>"}`; subscribing to a project
//! checks it as `project(id)` does, with the account's permissions as they are then.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Context, Data, Enum, Error, ErrorExtensions, SimpleObject, Subscription as SubscriptionRoot};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::error::{Result, from_api};
use super::tasks::Task;
use super::{Caller, loader_for};
use crate::AppState;
use crate::auth::AccessClaims;
use crate::events::EventType;
use crate::http::authn::{self, CurrentUser};
use crate::http::error::ApiError;
use crate::http::{projects, tasks};
use crate::realtime::Announced;

/// Upgrades `GET /graphql` to a WebSocket speaking a GraphQL protocol the client offers.
pub async fn upgrade(state: AppState, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let Ok(protocol) = GraphQLProtocol::from_request_parts(&mut parts, &state).await else {
        let offer = "offer the WebSocket subprotocol graphql-transport-ws (or graphql-ws)";
        return ApiError::BadRequest(offer.to_owned()).into_response();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    let largest = state.config.graphql.max_body_bytes;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(largest)
        .max_frame_size(largest)
        .on_upgrade(move |socket| {
            let schema = state.graphql.0.clone();
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| connection_init(state, payload))
                .serve()
        })
}

/// The connection's caller, from the token in `connection_init`; without a valid one the
/// connection is closed (1002, with the reason).
async fn connection_init(state: AppState, payload: serde_json::Value) -> Result<Data> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(serde_json::Value::as_str);
    let token = header
        .and_then(authn::bearer_token)
        .ok_or_else(|| Error::new("send an access token in connection_init: Authorization: Bearer <token>"))?;
    let claims = authn::verify(&state, token).await.map_err(from_api)?;
    let user = CurrentUser::holding(&state, &claims).await.map_err(from_api)?;
    let mut data = Data::default();
    data.insert(loader_for(&state, &user));
    data.insert(Caller(Ok(user)));
    data.insert(Session {
        claims,
        subscriptions: Arc::default(),
    });
    data.insert(state);
    Ok(data)
}

/// What a WebSocket connection knows besides its caller.
struct Session {
    claims: AccessClaims,
    /// Its subscriptions running now.
    subscriptions: Arc<AtomicUsize>,
}

#[derive(Default)]
pub struct Subscription;

#[SubscriptionRoot]
impl Subscription {
    /// The changes to the tasks of a project you may see, as they commit on any replica. The
    /// stream ends with an error when the access token expires (`UNAUTHENTICATED`), when this
    /// subscriber falls too far behind (`SLOW_CONSUMER`) and when the server shuts down
    /// (`SHUTTING_DOWN`): subscribe again, with a fresh token.
    async fn task_events(&self, ctx: &Context<'_>, project_id: Uuid) -> Result<impl Stream<Item = Result<TaskEvent>>> {
        let state = ctx.data_unchecked::<AppState>();
        let session = ctx
            .data_opt::<Session>()
            .ok_or_else(|| Error::new("subscribe over a WebSocket at /graphql"))?;
        // Permissions as they are now, not as they were when the connection opened.
        let user = CurrentUser::holding(state, &session.claims).await.map_err(from_api)?;
        projects::get(state, &user, project_id).await.map_err(from_api)?;
        let limit = state.config.realtime.max_rooms_per_connection;
        let running = Running::start(&session.subscriptions, limit)?;
        let (heard, closing) = state.realtime.subscribe();
        let expires = OffsetDateTime::from_unix_timestamp(session.claims.exp).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(events(Listening {
            heard,
            closing,
            project_id,
            expires,
            _running: running,
        }))
    }
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TaskChange {
    Created,
    Updated,
    Deleted,
}

/// A change to one of a project's tasks, after it committed.
#[derive(SimpleObject)]
pub struct TaskEvent {
    #[graphql(name = "type")]
    kind: TaskChange,
    /// The task as it is now; for a deletion, as it was. A task moved to another project is
    /// `UPDATED` with that project's id.
    task: Task,
}

/// One subscription, counted against the connection's limit while it runs.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>, limit: usize) -> Result<Self> {
        if count.fetch_add(1, Ordering::Relaxed) >= limit {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(ended(
                &format!("a connection may hold {limit} subscriptions"),
                "BAD_USER_INPUT",
            ));
        }
        Ok(Self(Arc::clone(count)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Listening {
    heard: broadcast::Receiver<Arc<Announced>>,
    closing: watch::Receiver<bool>,
    project_id: Uuid,
    expires: OffsetDateTime,
    _running: Running,
}

/// The project's task changes until one of the endings [`Subscription::task_events`] names.
fn events(listening: Listening) -> impl Stream<Item = Result<TaskEvent>> {
    stream::unfold(Some(listening), |listening| async move {
        let mut listening = listening?;
        let left = (listening.expires - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        let expiry = tokio::time::sleep(left.try_into().unwrap_or_default());
        tokio::pin!(expiry);
        loop {
            let next = tokio::select! {
                heard = listening.heard.recv() => Next::Heard(heard),
                () = &mut expiry => Next::Expired,
                _ = listening.closing.wait_for(|closing| *closing) => Next::Closing,
            };
            let ending = match next {
                Next::Heard(Ok(change)) => match task_event(&change, listening.project_id) {
                    Some(event) => return Some((Ok(event), Some(listening))),
                    None => continue,
                },
                Next::Heard(Err(RecvError::Lagged(missed))) => ended(
                    &format!("{missed} changes were missed while this subscriber was not reading; subscribe again"),
                    "SLOW_CONSUMER",
                ),
                Next::Heard(Err(RecvError::Closed)) => return None,
                Next::Expired => ended(
                    "the access token expired; subscribe again with a fresh one",
                    "UNAUTHENTICATED",
                ),
                Next::Closing => ended("the server is shutting down; subscribe again", "SHUTTING_DOWN"),
            };
            return Some((Err(ending), None));
        }
    })
}

/// What woke a subscription.
enum Next {
    Heard(std::result::Result<Arc<Announced>, RecvError>),
    Expired,
    Closing,
}

/// The event for a change to a task of `project_id`, if `change` is one.
fn task_event(change: &Announced, project_id: Uuid) -> Option<TaskEvent> {
    #[derive(Deserialize)]
    struct Body {
        data: tasks::Task,
    }
    let kind = match change.kind {
        EventType::TaskCreated => TaskChange::Created,
        EventType::TaskUpdated => TaskChange::Updated,
        EventType::TaskDeleted => TaskChange::Deleted,
        _ => return None,
    };
    if change.project_id != project_id {
        return None;
    }
    let body: Body = serde_json::from_str(&change.message).ok()?;
    Some(TaskEvent {
        kind,
        task: Task(body.data),
    })
}

fn ended(message: &str, code: &'static str) -> Error {
    Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}
