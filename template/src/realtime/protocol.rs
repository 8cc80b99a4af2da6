//! What travels over the socket, as types: the handshake's `auth`, the events a client sends
//! and the acknowledgements it gets, and the changes it hears. Their JSON schemas make the
//! AsyncAPI document (`asyncapi.json`, from [`asyncapi`]).

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::events::EventType;
use crate::http::projects::Project;
use crate::http::tasks::Task;

/// The handshake's `auth` payload: `io(url, { auth: { token } })`. Never in the URL, which
/// proxies log.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Handshake {
    /// An access token, as sent in `Authorization: Bearer` to the REST API.
    pub token: Option<String>,
}

/// `join`: hear the changes of a project the account may read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    pub project_id: Uuid,
    /// The `id` of the last change heard from this project, when coming back: the changes
    /// since are sent before the acknowledgement, if this instance still has them all.
    pub since: Option<Uuid>,
}

/// `leave`: stop hearing a project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    pub project_id: Uuid,
}

/// `auth`: a fresh access token for the same account, before the current one expires.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    pub token: String,
}

/// A change to a project or one of its tasks, after it committed. The Socket.IO event is
/// named after `type`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Change<T> {
    /// Unique, and increasing over time; give the last one heard as `since` when joining again.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub project_id: Uuid,
    /// The resource as the REST API shows it; for a deletion, as it was.
    pub data: T,
}

/// The acknowledgement of every client event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Ack {
    Joined {
        ok: bool,
        /// Whether the changes since `since` were all sent; when false, read the project
        /// again through the REST API.
        recovered: bool,
        /// How many changes were sent again.
        missed: usize,
    },
    Refreshed {
        ok: bool,
        /// When the new token expires, in seconds since the Unix epoch.
        expires_at: i64,
    },
    Done {
        ok: bool,
    },
    Failed {
        ok: bool,
        error: AckError,
    },
}

/// Why a client event was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct AckError {
    /// `bad_payload`, `not_found`, `too_many_rooms`, `rate_limited`, `slow_consumer`,
    /// `unauthorized`, `unavailable` or `unknown_event`.
    pub code: &'static str,
    pub message: String,
}

impl Ack {
    pub fn done() -> Self {
        Self::Done { ok: true }
    }

    pub fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self::Failed {
            ok: false,
            error: AckError {
                code,
                message: message.into(),
            },
        }
    }
}

#[derive(OpenApi)]
#[openapi(components(schemas(Handshake, Join, Leave, Refresh, Change<Project>, Change<Task>, Ack, AckError, Project, Task)))]
struct Schemas;

/// The realtime protocol as an AsyncAPI 3 document.
pub fn asyncapi() -> serde_json::Value {
    let schemas = Schemas::openapi().components.map(|components| components.schemas);
    let receive = |event: &str, schema: &str, summary: &str| {
        json!({
            "address": event,
            "messages": { "change": { "name": event, "summary": summary, "payload": { "$ref": format!("#/components/schemas/{schema}") } } },
        })
    };
    let send = |event: &str, schema: &str, summary: &str| {
        json!({
            "address": event,
            "messages": {
                "request": { "name": event, "summary": summary, "payload": { "$ref": format!("#/components/schemas/{schema}") } },
                "ack": { "name": format!("{event} ack"), "payload": { "$ref": "#/components/schemas/Ack" } },
            },
        })
    };
    let mut channels = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    for (event, schema, summary) in [
        (
            "project.updated",
            "Change_Project",
            "A project of a joined room changed",
        ),
        (
            "project.deleted",
            "Change_Project",
            "A project of a joined room was deleted",
        ),
        ("task.created", "Change_Task", "A task was added to the project"),
        (
            "task.updated",
            "Change_Task",
            "A task changed, or moved to or from the project",
        ),
        ("task.deleted", "Change_Task", "A task of the project was deleted"),
    ] {
        channels.insert(event.to_owned(), receive(event, schema, summary));
        operations.insert(
            format!("hear {event}"),
            json!({ "action": "receive", "channel": { "$ref": format!("#/channels/{event}") } }),
        );
    }
    for (event, schema, summary) in [
        (
            "join",
            "Join",
            "Join a project's room; refused like a missing project unless the account may read it",
        ),
        ("leave", "Leave", "Leave a project's room"),
        (
            "auth",
            "Refresh",
            "Replace the connection's access token before it expires",
        ),
    ] {
        channels.insert(event.to_owned(), send(event, schema, summary));
        operations.insert(
            format!("send {event}"),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{event}") },
                "reply": { "channel": { "$ref": format!("#/channels/{event}") }, "messages": [{ "$ref": format!("#/channels/{event}/messages/ack") }] },
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": concat!(env!("CARGO_PKG_NAME"), " realtime"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Socket.IO v5 over WebSocket at /socket.io/ (socket.io-client 3 and 4 with transports: [\"websocket\"]). \
                Authenticate with the handshake's auth payload ({ token }); a refusal arrives as connect_error with its reason. \
                Each event a client sends takes an acknowledgement callback and gets an Ack. A connection whose token expires \
                is disconnected by the server unless it sent `auth` with a fresh token.",
        },
        "defaultContentType": "application/json",
        "servers": { "service": { "host": "localhost", "protocol": "ws", "pathname": "/socket.io/" } },
        "channels": channels,
        "operations": operations,
        "components": { "schemas": schemas },
    })
}
