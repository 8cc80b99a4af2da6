//! Realtime over a Socket.IO client that speaks the wire protocol itself (Engine.IO 4,
//! Socket.IO 5 over WebSocket), so tests see every packet and can misbehave on purpose:
//! the handshake, rooms and their access checks, changes heard after they commit and only
//! then, across replicas, and changes missed while away sent again.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::callers::TestUser;
use crate::helpers::{TestApp, json, metric};

/// Long enough for a change to cross PostgreSQL or Redis on a busy machine.
pub const HEARD_WITHIN: Duration = Duration::from_secs(5);

/// What the server sent, as the client sees it.
#[derive(Debug, PartialEq)]
pub enum Packet {
    Event(String, Value),
    Ack(u64, Value),
    /// The server ended this Socket.IO session (`41`): socket.io-client would not reconnect.
    Disconnect,
    /// The connection closed without a Socket.IO disconnect: socket.io-client reconnects.
    Closed,
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ack: u64,
    /// Events read while waiting for an acknowledgement.
    pending: Vec<(String, Value)>,
}

impl Client {
    /// Opens a WebSocket to `app` and sends the Socket.IO handshake with `auth`; `Err` carries
    /// the `connect_error` message.
    pub async fn connect(app: &TestApp, auth: &Value) -> Result<Self, String> {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.address);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket handshake");
        Self::handshake(ws, auth).await
    }

    pub async fn handshake(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, auth: &Value) -> Result<Self, String> {
        let mut client = Self {
            ws,
            next_ack: 0,
            pending: Vec::new(),
        };
        let open = client.text().await.expect("engine.io open");
        assert!(open.starts_with('0'), "{open}");
        client.send(&format!("40{auth}")).await;
        let reply = client.connect_reply().await;
        if let Some(error) = reply.strip_prefix("44") {
            let error: Value = serde_json::from_str(error).expect("connect_error JSON");
            return Err(error["message"].as_str().expect("a message").to_owned());
        }
        assert!(reply.starts_with("40"), "{reply}");
        Ok(client)
    }

    /// The answer to the Socket.IO handshake, after the pings that may come first.
    async fn connect_reply(&mut self) -> String {
        loop {
            match self.text().await.expect("socket.io connect reply") {
                ping if ping == "2" => self.send("3").await,
                reply => return reply,
            }
        }
    }

    /// Connects as `user`, which must succeed.
    pub async fn signed_in(app: &TestApp, user: &TestUser) -> Self {
        Self::connect(app, &json!({ "token": user.token }))
            .await
            .expect("connected")
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Emits `event` with `payload` and returns its acknowledgement.
    pub async fn call(&mut self, event: &str, payload: &Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!("42{id}{}", json!([event, payload]))).await;
        loop {
            match self.packet(HEARD_WITHIN).await {
                Some(Packet::Ack(acked, reply)) if acked == id => return reply,
                Some(Packet::Event(event, payload)) => self.pending.push((event, payload)),
                other => panic!("expected the acknowledgement of {event}, got {other:?}"),
            }
        }
    }

    /// Joins a project's room, which must be allowed.
    pub async fn join(&mut self, project_id: &str) -> Value {
        let reply = self.call("join", &json!({ "project_id": project_id })).await;
        assert_eq!(reply["ok"], true, "{reply}");
        reply
    }

    /// The next event, if one comes within `wait`.
    pub async fn event(&mut self, wait: Duration) -> Option<(String, Value)> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        match self.packet(wait).await? {
            Packet::Event(event, payload) => Some((event, payload)),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next packet that is not a ping (which is answered), if one comes within `wait`.
    pub async fn packet(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let text = match tokio::time::timeout_at(deadline, self.text()).await {
                Err(_) => return None,
                Ok(None) => return Some(Packet::Closed),
                Ok(Some(text)) => text,
            };
            if text == "2" {
                self.send("3").await;
                continue;
            }
            if text == "41" {
                return Some(Packet::Disconnect);
            }
            if text == "1" {
                // Engine.IO close; the WebSocket close follows.
                continue;
            }
            if let Some(event) = text.strip_prefix("42") {
                let mut array: Vec<Value> = serde_json::from_str(event).expect("event JSON");
                let payload = array.pop().expect("a payload");
                let name = array
                    .pop()
                    .and_then(|name| name.as_str().map(str::to_owned))
                    .expect("an event name");
                return Some(Packet::Event(name, payload));
            }
            if let Some(ack) = text.strip_prefix("43") {
                let split = ack.find('[').expect("ack arguments");
                let id = ack[..split].parse().expect("ack id");
                let mut arguments: Vec<Value> = serde_json::from_str(&ack[split..]).expect("ack JSON");
                return Some(Packet::Ack(id, arguments.remove(0)));
            }
            panic!("unexpected packet {text}");
        }
    }

    /// The next text frame; `None` once the connection closed.
    async fn text(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => return Some(text.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// A project of the app's signed-in account; its id and ETag.
pub async fn project(app: &TestApp, name: &str) -> (String, String) {
    let response = app.post("/api/v1/projects", &json!({ "name": name })).await;
    assert_eq!(response.status(), 201);
    let etag = response.headers()["etag"].to_str().expect("etag").to_owned();
    let body = json(response).await;
    (body["id"].as_str().expect("id").to_owned(), etag)
}

/// A task in `project_id`; its id and ETag.
async fn task(app: &TestApp, project_id: &str, title: &str) -> (String, String) {
    let response = app
        .post("/api/v1/tasks", &json!({ "project_id": project_id, "title": title }))
        .await;
    assert_eq!(response.status(), 201);
    let etag = response.headers()["etag"].to_str().expect("etag").to_owned();
    let body = json(response).await;
    (body["id"].as_str().expect("id").to_owned(), etag)
}

#[tokio::test]
async fn a_handshake_needs_a_valid_token_in_its_auth_payload_and_says_why_it_was_refused() {
    let (app, user) = TestApp::signed_in().await;

    let missing = Client::connect(&app, &json!({})).await.err();
    assert_eq!(
        missing.as_deref(),
        Some("send an access token in the handshake: auth: { token }")
    );
    let forged = Client::connect(&app, &json!({ "token": format!("{}x", user.token) }))
        .await
        .err();
    assert_eq!(forged.as_deref(), Some("the access token is invalid or expired"));
    assert_eq!(
        metric(&app, "security_events_total{event=\"realtime_handshake_refused\"}").await,
        2
    );

    let _client = Client::signed_in(&app, &user).await;
    assert_eq!(metric(&app, "realtime_connections ").await, 1);
}

#[tokio::test]
async fn a_joined_room_hears_each_change_after_it_commits_and_nothing_of_other_projects() {
    let (app, user) = TestApp::signed_in().await;
    let (project_id, _) = project(&app, "Heard").await;
    let (other_id, _) = project(&app, "Not joined").await;
    let mut client = Client::signed_in(&app, &user).await;
    let joined = client.join(&project_id).await;
    assert_eq!(joined, json!({ "ok": true, "recovered": true, "missed": 0 }));
    assert_eq!(metric(&app, "realtime_rooms ").await, 1);

    task(&app, &other_id, "Elsewhere").await;
    let (task_id, etag) = task(&app, &project_id, "Here").await;
    let (event, change) = client.event(HEARD_WITHIN).await.expect("task.created");
    assert_eq!(event, "task.created");
    assert_eq!(change["type"], "task.created");
    assert_eq!(change["project_id"], project_id.as_str());
    assert_eq!(change["data"]["id"], task_id.as_str());
    assert_eq!(change["data"]["title"], "Here");

    // A delete refused for a stale version rolls back after reading the task: not heard.
    let stale = app.delete(&format!("/api/v1/tasks/{task_id}"), Some("\"99\"")).await;
    assert_eq!(stale.status(), 412);
    let renamed = app
        .patch(
            &format!("/api/v1/tasks/{task_id}"),
            Some(&etag),
            &json!({ "title": "Renamed" }),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let (event, change) = client.event(HEARD_WITHIN).await.expect("task.updated");
    assert_eq!(event, "task.updated", "the refused delete was heard: {change}");
    assert_eq!(change["data"]["title"], "Renamed");

    assert_eq!(
        app.delete(&format!("/api/v1/tasks/{task_id}"), None).await.status(),
        204
    );
    let (event, change) = client.event(HEARD_WITHIN).await.expect("task.deleted");
    assert_eq!(
        (event.as_str(), &change["data"]["id"]),
        ("task.deleted", &json!(task_id))
    );
    assert_eq!(
        app.delete(&format!("/api/v1/projects/{project_id}"), None)
            .await
            .status(),
        204
    );
    let (event, _) = client.event(HEARD_WITHIN).await.expect("project.deleted");
    assert_eq!(event, "project.deleted");

    assert_eq!(client.event(Duration::from_millis(300)).await, None);
    assert!(metric(&app, "realtime_events_emitted_total{event=\"task.created\"}").await >= 1);
}

#[tokio::test]
async fn a_task_moving_between_projects_is_heard_in_both_rooms() {
    let (app, user) = TestApp::signed_in().await;
    let (from, _) = project(&app, "From").await;
    let (to, _) = project(&app, "To").await;
    let (task_id, etag) = task(&app, &from, "Moving").await;
    let mut old_room = Client::signed_in(&app, &user).await;
    old_room.join(&from).await;
    let mut new_room = Client::signed_in(&app, &user).await;
    new_room.join(&to).await;

    let moved = app
        .patch(
            &format!("/api/v1/tasks/{task_id}"),
            Some(&etag),
            &json!({ "project_id": to }),
        )
        .await;
    assert_eq!(moved.status(), 200);
    for client in [&mut old_room, &mut new_room] {
        let (event, change) = client.event(HEARD_WITHIN).await.expect("task.updated");
        assert_eq!(event, "task.updated");
        assert_eq!(change["data"]["project_id"], to.as_str());
    }
}

#[tokio::test]
async fn another_accounts_project_is_refused_exactly_like_a_missing_one() {
    let (app, _owner) = TestApp::signed_in().await;
    let (project_id, _) = project(&app, "Private").await;
    let stranger = app.user("stranger@example.com", "user").await;
    let mut client = Client::signed_in(&app, &stranger).await;

    let theirs = client.call("join", &json!({ "project_id": project_id })).await;
    let missing = client
        .call("join", &json!({ "project_id": uuid::Uuid::now_v7() }))
        .await;
    assert_eq!(theirs, missing);
    assert_eq!(theirs["error"]["code"], "not_found");
    assert_eq!(
        metric(&app, "security_events_total{event=\"realtime_join_refused\"}").await,
        2
    );

    // Nothing of the project reaches the stranger.
    app.patch(
        &format!("/api/v1/projects/{project_id}"),
        Some("\"1\""),
        &json!({ "name": "Renamed" }),
    )
    .await;
    assert_eq!(client.event(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_change_made_on_one_replica_reaches_a_client_joined_on_another() {
    let (app, user) = TestApp::signed_in().await;
    let replica = app.replica().await;
    let (project_id, etag) = project(&app, "Shared").await;
    let mut client = Client::signed_in(&replica, &user).await;
    client.join(&project_id).await;

    let updated = app
        .patch(
            &format!("/api/v1/projects/{project_id}"),
            Some(&etag),
            &json!({ "name": "Seen elsewhere" }),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let (event, change) = client.event(HEARD_WITHIN).await.expect("project.updated");
    assert_eq!(event, "project.updated");
    assert_eq!(change["data"]["name"], "Seen elsewhere");
}

#[tokio::test]
async fn a_change_too_long_for_one_notification_arrives_whole() {
    let (app, user) = TestApp::signed_in().await;
    let (project_id, etag) = project(&app, "Long").await;
    let mut client = Client::signed_in(&app, &user).await;
    client.join(&project_id).await;

    // 2000 characters of four bytes each, over 8000 bytes of JSON with the rest.
    let description = "😀".repeat(2000);
    let updated = app
        .patch(
            &format!("/api/v1/projects/{project_id}"),
            Some(&etag),
            &json!({ "description": description }),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let (_, change) = client.event(HEARD_WITHIN).await.expect("project.updated");
    assert_eq!(change["data"]["description"], description.as_str());
}

#[tokio::test]
async fn a_client_that_comes_back_gets_the_changes_it_missed_or_is_told_to_read_again() {
    let (app, user) = TestApp::signed_in().await;
    let (project_id, _) = project(&app, "Missed").await;
    let mut client = Client::signed_in(&app, &user).await;
    client.join(&project_id).await;
    task(&app, &project_id, "Heard").await;
    let (_, last) = client.event(HEARD_WITHIN).await.expect("task.created");
    drop(client);

    task(&app, &project_id, "Missed one").await;
    task(&app, &project_id, "Missed two").await;
    // The replica hears them too: wait until the second is in its room's history.
    let mut watcher = Client::signed_in(&app, &user).await;
    watcher.join(&project_id).await;
    task(&app, &project_id, "Marker").await;
    watcher.event(HEARD_WITHIN).await.expect("the marker");

    let mut back = Client::signed_in(&app, &user).await;
    let reply = back
        .call("join", &json!({ "project_id": project_id, "since": last["id"] }))
        .await;
    assert_eq!(reply, json!({ "ok": true, "recovered": true, "missed": 3 }));
    let titles: Vec<Value> = back
        .pending
        .drain(..)
        .map(|(_, change)| change["data"]["title"].clone())
        .collect();
    assert_eq!(titles, [json!("Missed one"), json!("Missed two"), json!("Marker")]);

    let unknown = back
        .call(
            "join",
            &json!({ "project_id": project_id, "since": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(unknown, json!({ "ok": true, "recovered": false, "missed": 0 }));
}

#[tokio::test]
async fn shutting_down_closes_connections_so_that_clients_reconnect_elsewhere() {
    let (mut app, user) = TestApp::signed_in().await;
    let mut client = Client::signed_in(&app, &user).await;
    app.shut_down().await;
    // A transport close, not a Socket.IO disconnect, which would keep the client away.
    assert_eq!(client.packet(HEARD_WITHIN).await, Some(Packet::Closed));
}
