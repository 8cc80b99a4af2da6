//! Changes between replicas: each is published once and heard by every replica, itself
//! included, in the same order. Over PostgreSQL `LISTEN/NOTIFY` (nothing more to run), or over
//! Redis pub/sub when the service has Redis. Neither keeps what a disconnected listener
//! missed, so a listener that was away says so ([`Heard::Gap`]) and the hub forgets what it
//! kept for clients that come back rather than replay a history with a hole in it.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::db::Database;

const CHANNEL: &str = "realtime";

/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more, so longer messages go in parts
/// of at most this many bytes, all in one statement (so one transaction, heard together).
const PART_BYTES: usize = 7000;

/// Parts of messages being put together; more pending than this means parts were lost.
const MAX_PENDING: usize = 64;

/// How long a listener that lost its connection waits before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub enum Fanout {
    Postgres(PgPool),
{%- if redis %}
    Redis(crate::redis::Redis),
{%- endif %}
}

/// What a listener hears.
#[derive(Debug)]
pub enum Heard {
    Message(String),
    /// Messages may have been missed.
    Gap,
}

impl Fanout {
{%- if redis %}
    pub fn new(_db: &Database, redis: &crate::redis::Redis) -> Self {
        Self::Redis(redis.clone())
    }
{%- else %}
    pub fn new(db: &Database) -> Self {
        Self::Postgres(db.pool().clone())
    }
{%- endif %}

    /// Sends `message` to every replica.
    pub async fn publish(&self, message: &str) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool) => {
                if message.len() < PART_BYTES {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(CHANNEL)
                        .bind(message)
                        .execute(pool)
                        .await?;
                } else {
                    sqlx::query("SELECT pg_notify($1, part) FROM unnest($2::text[]) AS part")
                        .bind(CHANNEL)
                        .bind(split(message, PART_BYTES))
                        .execute(pool)
                        .await?;
                }
            }
{%- if redis %}
            Self::Redis(redis) => {
                redis.publish(CHANNEL, message.as_bytes()).await?;
            }
{%- endif %}
        }
        Ok(())
    }

    /// Listens from now on, on a task of its own that ends when the receiver is dropped.
    pub fn listen(&self) -> mpsc::Receiver<Heard> {
        let (sender, receiver) = mpsc::channel(1024);
        match self {
            Self::Postgres(pool) => {
                // A connection of its own, apart from the pool the requests share.
                let own = PgPoolOptions::new()
                    .max_connections(1)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect_lazy_with((*pool.connect_options()).clone());
                tokio::spawn(listen_postgres(own, sender));
            }
{%- if redis %}
            Self::Redis(redis) => {
                tokio::spawn(listen_redis(redis.clone(), sender));
            }
{%- endif %}
        }
        receiver
    }
}

/// `message` as numbered parts: `~<message id> <index> <count> <text>`, each under `max`
/// bytes, cut between characters.
fn split(message: &str, max: usize) -> Vec<String> {
    let id = Uuid::new_v4().simple().to_string();
    let mut texts = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let mut end = rest.len().min(max - 64);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        texts.push(&rest[..end]);
        rest = &rest[end..];
    }
    let count = texts.len();
    texts
        .into_iter()
        .enumerate()
        .map(|(index, text)| format!("~{id} {index} {count} {text}"))
        .collect()
}

/// Puts parted messages back together.
#[derive(Debug, Default)]
struct Parts {
    pending: HashMap<String, Vec<Option<String>>>,
}

impl Parts {
    /// The message `payload` completes, if any; `Err` when parts were lost.
    fn add(&mut self, payload: &str) -> Result<Option<String>, ()> {
        let Some(parted) = payload.strip_prefix('~') else {
            return Ok(Some(payload.to_owned()));
        };
        let mut fields = parted.splitn(4, ' ');
        let (Some(id), Some(index), Some(count), Some(text)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(());
        };
        let (Ok(index), Ok(count)) = (index.parse::<usize>(), count.parse::<usize>()) else {
            return Err(());
        };
        if index >= count || count > 1024 {
            return Err(());
        }
        if !self.pending.contains_key(id) && self.pending.len() >= MAX_PENDING {
            self.pending.clear();
            return Err(());
        }
        let parts = self.pending.entry(id.to_owned()).or_insert_with(|| vec![None; count]);
        if parts.len() != count {
            return Err(());
        }
        parts[index] = Some(text.to_owned());
        if parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let parts = self.pending.remove(id).unwrap_or_default();
        Ok(Some(parts.into_iter().flatten().collect()))
    }
}

async fn listen_postgres(pool: PgPool, heard: mpsc::Sender<Heard>) {
    let mut parts = Parts::default();
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for realtime changes; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        loop {
            let next = match listener.try_recv().await {
                Ok(Some(notification)) => match parts.add(notification.payload()) {
                    Ok(Some(message)) => Heard::Message(message),
                    Ok(None) => continue,
                    Err(()) => Heard::Gap,
                },
                // Reconnected: what was announced meanwhile is lost.
                Ok(None) => {
                    tracing::warn!("the realtime listener lost its connection");
                    Heard::Gap
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the realtime listener failed");
                    if heard.send(Heard::Gap).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            if heard.send(next).await.is_err() {
                return;
            }
        }
    }
}
{%- if redis %}

async fn listen_redis(redis: crate::redis::Redis, heard: mpsc::Sender<Heard>) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let Ok(mut messages) = redis.subscribe(CHANNEL).await else {
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        };
        loop {
            let next = match messages.recv().await {
                Ok(message) => match String::from_utf8(message.to_vec()) {
                    Ok(message) => Heard::Message(message),
                    Err(_) => continue,
                },
                Err(RecvError::Lagged(_)) => Heard::Gap,
                Err(RecvError::Closed) => break,
            };
            if heard.send(next).await.is_err() {
                return;
            }
        }
    }
}
{%- endif %}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_goes_in_parts_under_the_limit_and_comes_back_whole() {
        let message = serde_json::json!({ "data": "é€😀x".repeat(2000) }).to_string();
        let parts = split(&message, PART_BYTES);
        assert!(parts.len() > 2);
        assert!(parts.iter().all(|part| part.len() < PART_BYTES));
        let mut assembled = Parts::default();
        // Out of order still assembles; only the last part completes it.
        let mut heard = Vec::new();
        for part in parts.iter().rev() {
            heard.push(assembled.add(part).expect("no part is lost"));
        }
        assert!(heard[..heard.len() - 1].iter().all(Option::is_none));
        assert_eq!(heard.last().cloned().flatten().as_deref(), Some(message.as_str()));
        assert!(assembled.pending.is_empty());
    }

    #[test]
    fn a_whole_message_passes_and_a_mangled_part_is_a_gap() {
        let mut parts = Parts::default();
        assert_eq!(parts.add("{}"), Ok(Some("{}".to_owned())));
        assert_eq!(parts.add("~abc 3 2 text"), Err(()));
        assert_eq!(parts.add("~abc x"), Err(()));
    }
}
