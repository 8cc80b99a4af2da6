//! Realtime under misbehaving clients and limits: payloads of the wrong shape, unknown
//! events, malformed packets and oversized messages, event rate and connection limits, a
//! client that stops reading, and tokens that expire.

use std::time::Duration;

use axum::Router;
use serde_json::json;
use service::config::Config;
use service::events::EventType;
use tokio::net::TcpSocket;
use uuid::Uuid;

use crate::helpers::{TestApp, metric};
use crate::realtime::{Client, HEARD_WITHIN, Packet, project};

async fn signed_in_with(configure: impl FnOnce(&mut Config)) -> (TestApp, crate::callers::TestUser) {
    let mut app = TestApp::spawn_with(configure, Router::new()).await;
    let user = app.user("owner@example.com", "user").await;
    app.act_as(&user);
    (app, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_sent_the_moment_clients_are_connected_are_all_answered() {
    let (app, user) = signed_in_with(|config| config.realtime.max_connections_per_account = 50).await;
    let (project_id, _) = project(&app, "At once").await;
    // socket.io-client emits the moment it hears it is connected; many clients at once keep
    // the server busy, so nothing it runs apart for a connection starts early by luck.
    let joins = (0..50).map(|_| async {
        let mut client = Client::signed_in(&app, &user).await;
        client.join(&project_id).await;
        client
    });
    let clients = futures_util::future::join_all(joins).await;
    assert_eq!(metric(&app, "realtime_connections ").await, 50);
    drop(clients);
}

#[tokio::test]
async fn wrong_payloads_and_unknown_events_are_refused_in_the_acknowledgement_and_counted() {
    let (app, user) = TestApp::signed_in().await;
    let mut client = Client::signed_in(&app, &user).await;

    let bad = client.call("join", &json!({ "project": "nope" })).await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["error"]["code"], "bad_payload");
    let unknown = client.call("subscribe", &json!({})).await;
    assert_eq!(unknown["error"]["code"], "unknown_event");
    assert_eq!(
        metric(&app, "realtime_client_errors_total{kind=\"bad_payload\"}").await,
        1
    );
    assert_eq!(
        metric(&app, "realtime_client_errors_total{kind=\"unknown_event\"}").await,
        1
    );
    // The connection is still good.
    let (project_id, _) = project(&app, "Still here").await;
    client.join(&project_id).await;
}

#[tokio::test]
async fn a_malformed_packet_or_an_oversized_message_ends_the_connection_and_is_counted() {
    let (app, user) = signed_in_with(|config| config.realtime.max_message_bytes = 1024).await;

    let mut malformed = Client::signed_in(&app, &user).await;
    malformed.send("42[\"join\", {broken").await;
    assert_eq!(malformed.packet(HEARD_WITHIN).await, Some(Packet::Closed));

    let mut oversized = Client::signed_in(&app, &user).await;
    let big = json!({ "project_id": "x".repeat(2048) });
    oversized.send(&format!("42[\"join\",{big}]")).await;
    assert_eq!(oversized.packet(HEARD_WITHIN).await, Some(Packet::Closed));

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&app, "realtime_client_errors_total{kind=\"malformed\"}").await,
        1
    );
    assert_eq!(
        metric(&app, "realtime_disconnects_total{reason=\"transport_error\"}").await,
        1
    );
    assert_eq!(metric(&app, "realtime_connections ").await, 0);
}

#[tokio::test]
async fn events_over_the_rate_are_refused_and_connections_over_the_limits_are_not_accepted() {
    let (app, user) = signed_in_with(|config| {
        config.realtime.events_per_second = 1;
        config.realtime.event_burst = 2;
        config.realtime.max_connections_per_account = 2;
        config.realtime.max_connections = 3;
    })
    .await;
    let (project_id, _) = project(&app, "Busy").await;

    let mut first = Client::signed_in(&app, &user).await;
    first.join(&project_id).await;
    first.join(&project_id).await;
    let third = first.call("join", &json!({ "project_id": project_id })).await;
    assert_eq!(third["error"]["code"], "rate_limited");
    assert_eq!(
        metric(&app, "realtime_client_errors_total{kind=\"rate_limited\"}").await,
        1
    );

    let _second = Client::signed_in(&app, &user).await;
    let refused = Client::connect(&app, &json!({ "token": user.token })).await.err();
    assert_eq!(refused.as_deref(), Some("this account has too many open connections"));
    let other = app.user("other@example.com", "user").await;
    let _third = Client::signed_in(&app, &other).await;
    let full = Client::connect(&app, &json!({ "token": other.token })).await.err();
    assert_eq!(
        full.as_deref(),
        Some("the server has no room for more connections; try again later")
    );

    // A closed connection gives its place back.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(Client::connect(&app, &json!({ "token": user.token })).await.is_ok());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_the_others_hear_everything() {
    let (app, user) = signed_in_with(|config| {
        config.realtime.send_buffer = 16;
        config.realtime.ping_interval_secs = 1;
        config.realtime.ping_timeout_secs = 1;
    })
    .await;
    let (project_id, _) = project(&app, "Firehose").await;

    // The slow client's socket takes little, so its buffers fill quickly.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let stream = socket.connect(app.address).await.expect("connect");
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.address);
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket handshake");
    let mut slow = Client::handshake(ws, &json!({ "token": user.token }))
        .await
        .expect("connected");
    slow.join(&project_id).await;
    let mut fast = Client::signed_in(&app, &user).await;
    fast.join(&project_id).await;

    let id = Uuid::parse_str(&project_id).expect("uuid");
    // Well over what the kernel buffers for a connection (4 MiB here) and its send buffer.
    let changes = 160;
    let reader = tokio::spawn(async move {
        let mut heard = 0;
        while heard < changes && fast.event(HEARD_WITHIN).await.is_some() {
            heard += 1;
        }
        heard
    });
    let blob = "x".repeat(48 * 1024);
    for n in 0..changes {
        app.state
            .realtime
            .announce(EventType::TaskUpdated, id, &json!({ "n": n, "blob": blob }))
            .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(reader.await.expect("reader"), changes, "the fast client missed changes");
    assert_eq!(metric(&app, "realtime_slow_consumers_total").await, 1);
    // Dropped: once it reads again, what is queued ends with the connection closing.
    let mut last = None;
    for _ in 0..changes + 20 {
        last = slow.packet(HEARD_WITHIN).await;
        if !matches!(last, Some(Packet::Event(..))) {
            break;
        }
    }
    assert!(
        matches!(last, Some(Packet::Closed | Packet::Disconnect)),
        "the slow client was never disconnected: {last:?}"
    );
}

#[tokio::test]
async fn an_expired_token_ends_the_connection_unless_a_fresh_one_came_first() {
    let ttl = 3;
    let (app, user) = short_lived(ttl).await;
    let mut expiring = Client::signed_in(&app, &user).await;
    let mut refreshed = Client::signed_in(&app, &user).await;
    // Issued a second later, so it expires a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = app.token_for(user.id).await;
    let reply = refreshed.call("auth", &json!({ "token": fresh })).await;
    assert_eq!(reply["ok"], true, "{reply}");

    let expired = expiring
        .event(Duration::from_secs(ttl + 3))
        .await
        .expect("session.expired");
    assert_eq!(expired.0, "session.expired");
    assert_eq!(expiring.packet(HEARD_WITHIN).await, Some(Packet::Disconnect));
    // The expired token no longer connects; the refreshed connection is still open.
    let refused = Client::connect(&app, &json!({ "token": user.token })).await.err();
    assert_eq!(refused.as_deref(), Some("the access token is invalid or expired"));
    let (project_id, _) = project(&app, "Still open").await;
    refreshed.join(&project_id).await;
    let other = app.user("other@example.com", "user").await;
    let foreign = refreshed.call("auth", &json!({ "token": other.token })).await;
    assert_eq!(foreign["error"]["code"], "unauthorized");
}
{%- if auth == "issuer" %}

/// An app whose access tokens live `ttl` seconds, and its account.
async fn short_lived(ttl: u64) -> (TestApp, crate::callers::TestUser) {
    signed_in_with(|config| config.auth.access_token_ttl_secs = ttl).await
}
{%- else %}

/// An app and an account whose token expires in `ttl` seconds.
async fn short_lived(ttl: u64) -> (TestApp, crate::callers::TestUser) {
    let (app, mut user) = signed_in_with(|_| {}).await;
    let mut claims = crate::issuer::claims(user.id, "");
    claims["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + i64::try_from(ttl).expect("small"));
    user.token = app.issuer.sign(&claims);
    (app, user)
}
{%- endif %}
