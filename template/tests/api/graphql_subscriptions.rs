//! GraphQL subscriptions over `graphql-transport-ws`: a subscriber hears its project's task
//! changes through the realtime fan-out, from any replica; a connection needs a valid token,
//! and another account's project is refused like a missing one.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::callers::TestUser;
use crate::helpers::{TestApp, json};

const SUBSCRIBE: &str =
    "subscription($projectId: UUID!) { taskEvents(projectId: $projectId) { type task { id title projectId } } }";

/// A `graphql-transport-ws` client.
struct Client(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Client {
    /// Connects to `app`'s `/graphql` and sends `connection_init` with `token`; returns the
    /// client and the server's first answer.
    async fn connect(app: &TestApp, token: Option<&str>) -> (Self, Value) {
        let url = app.url("/graphql").replace("http://", "ws://");
        let mut request = url.into_client_request().expect("a request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("a header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("a WebSocket");
        let mut client = Self(ws);
        let payload = token.map_or_else(
            || json!({}),
            |token| json!({ "Authorization": format!("Bearer {token}") }),
        );
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let answer = client.next().await;
        (client, answer)
    }

    async fn send(&mut self, message: Value) {
        self.0.send(Message::text(message.to_string())).await.expect("sent");
    }

    /// The next message, or `{"closed": code, "reason": text}` when the server closes.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.0.next())
                .await
                .expect("a message within 5 s");
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((None, String::new()), |frame| {
                        (Some(u16::from(frame.code)), frame.reason.to_string())
                    });
                    return json!({ "closed": code, "reason": reason });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return json!({ "closed": null }),
            }
        }
    }

    async fn subscribe(&mut self, id: &str, project_id: &Value) {
        let payload = json!({ "query": SUBSCRIBE, "variables": { "projectId": project_id } });
        self.send(json!({ "id": id, "type": "subscribe", "payload": payload }))
            .await;
    }
}

async fn create(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = app.post(path, body).await;
    assert_eq!(response.status(), 201, "create at {path}");
    json(response).await
}

#[tokio::test]
async fn a_subscriber_hears_its_project_s_task_changes_from_any_replica() {
    let (app, user) = TestApp::signed_in().await;
    let mut other = app.replica().await;
    other.act_as(&user);
    let project = create(&app, "/api/v1/projects", &json!({ "name": "Apollo" })).await;
    let elsewhere = create(&app, "/api/v1/projects", &json!({ "name": "Gemini" })).await;
    let (mut client, ack) = Client::connect(&app, Some(&user.token)).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    client.subscribe("1", &project["id"]).await;
    // The subscription starts listening as soon as it is accepted; a ping round trip after
    // `subscribe` shows it has been.
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.next().await["type"], "pong");

    create(
        &other,
        "/api/v1/tasks",
        &json!({ "project_id": elsewhere["id"], "title": "Not heard" }),
    )
    .await;
    let task = create(
        &other,
        "/api/v1/tasks",
        &json!({ "project_id": project["id"], "title": "Launch" }),
    )
    .await;

    let heard = client.next().await;
    assert_eq!(heard["type"], "next", "{heard}");
    assert_eq!(heard["id"], "1");
    let event = &heard["payload"]["data"]["taskEvents"];
    assert_eq!(event["type"], "CREATED");
    assert_eq!(event["task"]["id"], task["id"]);
    assert_eq!(event["task"]["title"], "Launch");
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap_or(""));
    assert_eq!(other.delete(&path, None).await.status(), 204);
    assert_eq!(client.next().await["payload"]["data"]["taskEvents"]["type"], "DELETED");
}

#[tokio::test]
async fn a_connection_needs_a_valid_token_and_another_account_s_project_is_not_found() {
    let (mut app, alice) = TestApp::signed_in().await;
    let project = create(&app, "/api/v1/projects", &json!({ "name": "Apollo" })).await;
    let bob = app.user("bob@example.com", "user").await;
    app.act_as(&bob);

    // async-graphql closes a refused `connection_init` with 1002 and the reason.
    for (token, reason) in [
        (None, "send an access token"),
        (Some("not-a-token"), "invalid or expired"),
    ] {
        let (_, answer) = Client::connect(&app, token).await;
        assert_eq!(answer["closed"], 1002, "{answer}");
        assert!(
            answer["reason"].as_str().is_some_and(|text| text.contains(reason)),
            "{answer}"
        );
    }
    let (mut client, ack) = Client::connect(&app, Some(&bob.token)).await;
    assert_eq!(ack["type"], "connection_ack");
    client.subscribe("theirs", &project["id"]).await;
    let refused = client.next().await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert!(refused["payload"]["data"].is_null());
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(client.next().await["type"], "complete", "the subscription ends");

    let TestUser { token, .. } = alice;
    let (mut owner, _) = Client::connect(&app, Some(&token)).await;
    owner.subscribe("mine", &project["id"]).await;
    owner.send(json!({ "type": "ping" })).await;
    assert_eq!(owner.next().await["type"], "pong", "the owner's subscription runs");
}

#[tokio::test]
async fn a_subscriber_is_told_to_subscribe_again_when_the_instance_shuts_down() {
    let (mut app, user) = TestApp::signed_in().await;
    let project = create(&app, "/api/v1/projects", &json!({ "name": "Apollo" })).await;
    let (mut client, _) = Client::connect(&app, Some(&user.token)).await;
    client.subscribe("1", &project["id"]).await;
    client.send(json!({ "type": "ping" })).await;
    assert_eq!(client.next().await["type"], "pong");

    let server = app.begin_shutdown();

    let ended = client.next().await;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "SHUTTING_DOWN",
        "{ended}"
    );
    assert_eq!(client.next().await["type"], "complete");
    server.await.expect("the server loop ends");
}
