//! Messages between replicas: [`Redis::publish`] on a channel reaches every replica that
//! called [`Redis::subscribe`] on it. Subscriptions ride the same connection as commands
//! (RESP3 pushes) and are renewed by the connection manager after it reconnects; a message
//! published while a replica is disconnected does not reach it (Redis keeps none), so what
//! must not be lost belongs in the database, with pub/sub only as the nudge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::{PushInfo, PushKind, Value};
use tokio::sync::broadcast;

use super::{Redis, Unavailable};

/// Messages a slow receiver may fall behind by before it misses some (and is told so by
/// `RecvError::Lagged`).
const BACKLOG: usize = 1024;

/// One message, shared by its receivers.
pub type Message = Arc<[u8]>;

/// The receivers in this process, by channel (the full key).
#[derive(Debug, Default, Clone)]
pub(super) struct Subscribers(Arc<Mutex<HashMap<String, broadcast::Sender<Message>>>>);

impl Subscribers {
    /// Hands a message the connection received to the channel's receivers. Runs on the
    /// connection's task, so it must not block.
    pub(super) fn deliver(&self, push: &PushInfo) {
        if push.kind != PushKind::Message {
            return;
        }
        let [Value::BulkString(channel), Value::BulkString(message)] = push.data.as_slice() else {
            return;
        };
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        if let Some(sender) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(channel) {
            // No receiver left is not an error here.
            let _ = sender.send(message.as_slice().into());
        }
    }
}

impl Redis {
    /// Sends `message` to the subscribers of `channel` in every replica; returns how many
    /// connections received it.
    pub async fn publish(&self, channel: &str, message: &[u8]) -> Result<u64, Unavailable> {
        let channel = self.key(format_args!("channel:{channel}"));
        self.call(async |connection| {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(message)
                .query_async::<u64>(connection)
                .await
        })
        .await
    }

    /// The messages of `channel` from now on. Subscribing once per process is enough: every
    /// receiver of a channel shares one subscription.
    pub async fn subscribe(&self, channel: &str) -> Result<broadcast::Receiver<Message>, Unavailable> {
        let channel = self.key(format_args!("channel:{channel}"));
        let subscribers = &self.0.subscribers;
        let (receiver, first) = {
            let mut senders = subscribers.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(sender) = senders.get(&channel) {
                (sender.subscribe(), false)
            } else {
                let (sender, receiver) = broadcast::channel(BACKLOG);
                senders.insert(channel.clone(), sender);
                (receiver, true)
            }
        };
        if first
            && self
                .call(async |connection| connection.subscribe(&channel).await)
                .await
                .is_err()
        {
            subscribers
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&channel);
            return Err(Unavailable);
        }
        Ok(receiver)
    }
}
