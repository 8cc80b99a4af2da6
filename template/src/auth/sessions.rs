//! The permissions of live sessions, remembered so that an authenticated request does not
//! ask the database about its caller every time, and forgotten the moment they change.
//!
//! Triggers announce every change that can end a session or alter an account's permissions
//! (disabling, roles, a role's permissions, a revoked session) on the PostgreSQL channel
//! [`CHANNEL`] when it commits, and every replica listens. What each replica remembers is
//! only used while it has heard from the channel within [`STALE_AFTER`]: every replica
//! announces a heartbeat several times a second, and notifications arrive in commit order,
//! so hearing a heartbeat means every change committed before it has arrived too. A replica
//! whose listener is down, slow or cut off therefore falls back to reading the database on
//! every request, and no change takes longer than [`STALE_AFTER`] to take effect anywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::db::Database;
use crate::db::users::LiveSession;

/// The channel the triggers of migration `20260301000000` announce changes on: an account's
/// id, or `*` for a change to every account (a role's permissions).
pub const CHANNEL: &str = "account_changes";

/// The payload of heartbeats on [`CHANNEL`].
const HEARTBEAT: &str = "heartbeat";

/// The most time a change takes to reach a replica that keeps using what it remembers.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// Sessions remembered at most, a few hundred bytes each; past it, new ones are read from the
/// database on every request until remembered ones lapse or change.
const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct Sessions {
    remembered: RwLock<Remembered>,
    /// When the channel was last heard from, in milliseconds since `started`; 0: never.
    heard_at_ms: AtomicU64,
    started: Instant,
    /// Run by the first lookup, which wakes the listener: a replica that never sees an
    /// authenticated request opens no connection for it.
    asked: Once,
    wake: Notify,
    /// Whether the listener is connected, so that heartbeats are sent only to be heard.
    listening: AtomicBool,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Account, then session.
    accounts: HashMap<Uuid, HashMap<Uuid, LiveSession>>,
    sessions: usize,
    /// Moves on with every change forgotten, so that an answer read before a change is not
    /// remembered after it.
    epoch: u64,
}

/// Where a lookup started: [`Sessions::remember`] takes the answer only if nothing changed
/// since.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl Default for Sessions {
    fn default() -> Self {
        Self {
            remembered: RwLock::default(),
            heard_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            asked: Once::new(),
            wake: Notify::new(),
            listening: AtomicBool::new(false),
        }
    }
}

impl Sessions {
    /// The permissions of `session` of `account`, if remembered, current, and the channel was
    /// heard from lately.
    pub fn get(&self, account: Uuid, session: Uuid) -> Option<Arc<[String]>> {
        self.asked.call_once(|| self.wake.notify_one());
        if !self.is_listening() {
            return None;
        }
        let remembered = self.remembered.read().unwrap_or_else(PoisonError::into_inner);
        let live = remembered.accounts.get(&account)?.get(&session)?;
        (live.ends_at > OffsetDateTime::now_utc()).then(|| Arc::clone(&live.permissions))
    }

    pub fn len(&self) -> usize {
        self.remembered.read().unwrap_or_else(PoisonError::into_inner).sessions
    }

    /// To be taken before the database is asked, and handed to [`Sessions::remember`].
    pub fn epoch(&self) -> Epoch {
        Epoch(self.remembered.read().unwrap_or_else(PoisonError::into_inner).epoch)
    }

    /// Remembers what the database said at `epoch`, unless something changed since.
    pub fn remember(&self, epoch: Epoch, account: Uuid, session: Uuid, live: &LiveSession) {
        if !self.is_listening() {
            return;
        }
        let mut remembered = self.remembered.write().unwrap_or_else(PoisonError::into_inner);
        if remembered.epoch != epoch.0 || remembered.sessions >= CAPACITY && !remembered.make_room() {
            return;
        }
        let sessions = remembered.accounts.entry(account).or_default();
        if sessions.insert(session, live.clone()).is_none() {
            remembered.sessions += 1;
        }
    }

    /// Applies one notification of [`CHANNEL`].
    fn heard(&self, payload: &str) {
        match payload {
            HEARTBEAT => {}
            // Anything else is an account's id, or every account.
            _ => match payload.parse::<Uuid>() {
                Ok(account) => self.forget(Some(account)),
                Err(_) => self.forget(None),
            },
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_at_ms.store(now.max(1), Ordering::Release);
    }

    /// Stops trusting what is remembered until the channel is heard from again.
    fn deaf(&self) {
        self.heard_at_ms.store(0, Ordering::Release);
        self.forget(None);
    }

    fn is_listening(&self) -> bool {
        let heard = self.heard_at_ms.load(Ordering::Acquire);
        heard != 0 && self.started.elapsed().as_millis() < u128::from(heard) + STALE_AFTER.as_millis()
    }

    /// Forgets `account`'s sessions, or every session.
    fn forget(&self, account: Option<Uuid>) {
        let mut remembered = self.remembered.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = account {
            let forgotten = remembered
                .accounts
                .remove(&account)
                .map_or(0, |sessions| sessions.len());
            remembered.sessions -= forgotten;
        } else {
            remembered.accounts.clear();
            remembered.sessions = 0;
        }
        remembered.epoch += 1;
    }

    /// From the first lookup on, listens on [`CHANNEL`] on a connection of its own and sends
    /// the heartbeats, from a task that ends when the returned handle is dropped. Must be
    /// called inside a Tokio runtime.
    pub fn watch(self: &Arc<Self>, db: &Database) -> Watch {
        let options = (*db.pool().connect_options()).clone();
        // One connection for the listener, apart from the pool the requests share.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let (sessions, pool) = (Arc::clone(self), db.pool().clone());
        let task = tokio::spawn(async move {
            sessions.wake.notified().await;
            tokio::join!(listen(&sessions, &own), heartbeat(&sessions, &pool));
        });
        Watch(task.abort_handle())
    }
}

impl Remembered {
    /// Drops lapsed sessions; whether that made room.
    fn make_room(&mut self) -> bool {
        let now = OffsetDateTime::now_utc();
        for sessions in self.accounts.values_mut() {
            sessions.retain(|_, live| live.ends_at > now);
        }
        self.accounts.retain(|_, sessions| !sessions.is_empty());
        self.sessions = self.accounts.values().map(HashMap::len).sum();
        self.sessions < CAPACITY
    }
}

/// Stops the listener and the heartbeats when dropped, with the last `Auth`.
#[derive(Debug)]
pub struct Watch(tokio::task::AbortHandle);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn listen(sessions: &Sessions, pool: &PgPool) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for account changes; reading the database instead");
                tokio::time::sleep(STALE_AFTER).await;
                continue;
            }
        };
        sessions.listening.store(true, Ordering::Release);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => sessions.heard(notification.payload()),
                // Reconnected: what was announced meanwhile is lost.
                Ok(None) => {
                    tracing::warn!("the account-change listener lost its connection");
                    sessions.deaf();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the account-change listener failed");
                    sessions.listening.store(false, Ordering::Release);
                    sessions.deaf();
                    break;
                }
            }
        }
    }
}

async fn heartbeat(sessions: &Sessions, pool: &PgPool) {
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !sessions.listening.load(Ordering::Acquire) {
            continue;
        }
        // A failure shows as silence on the channel, which is what matters.
        let _ = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(HEARTBEAT)
            .execute(pool)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(permissions: &[&str], ends_in: time::Duration) -> LiveSession {
        LiveSession {
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            ends_at: OffsetDateTime::now_utc() + ends_in,
        }
    }

    #[test]
    fn nothing_is_used_or_kept_until_the_channel_is_heard() {
        let sessions = Sessions::default();
        let (account, session) = (Uuid::now_v7(), Uuid::now_v7());

        sessions.remember(sessions.epoch(), account, session, &live(&["a"], time::Duration::HOUR));
        sessions.heard(HEARTBEAT);
        assert!(sessions.get(account, session).is_none(), "not kept while deaf");

        sessions.remember(sessions.epoch(), account, session, &live(&["a"], time::Duration::HOUR));
        assert_eq!(sessions.get(account, session).as_deref(), Some(&["a".to_owned()][..]));

        sessions.deaf();
        assert!(sessions.get(account, session).is_none(), "forgotten when deaf");
    }

    #[test]
    fn a_change_forgets_the_account_and_refuses_answers_read_before_it() {
        let sessions = Sessions::default();
        sessions.heard(HEARTBEAT);
        let (account, other) = (Uuid::now_v7(), Uuid::now_v7());
        let session = Uuid::now_v7();
        sessions.remember(sessions.epoch(), account, session, &live(&["a"], time::Duration::HOUR));
        sessions.remember(sessions.epoch(), other, session, &live(&["b"], time::Duration::HOUR));

        let before = sessions.epoch();
        sessions.heard(&account.to_string());
        assert!(sessions.get(account, session).is_none());
        assert!(sessions.get(other, session).is_some(), "other accounts stay");

        sessions.remember(before, account, session, &live(&["a"], time::Duration::HOUR));
        assert!(sessions.get(account, session).is_none(), "read before the change");

        sessions.heard("*");
        assert!(sessions.get(other, session).is_none(), "a change to every account");
    }

    #[test]
    fn a_second_of_silence_on_the_channel_stops_the_remembered_being_used() {
        let sessions = Sessions::default();
        // Heard a while after the start, so that the second is counted from the heartbeat.
        std::thread::sleep(Duration::from_millis(100));
        sessions.heard(HEARTBEAT);
        let (account, session) = (Uuid::now_v7(), Uuid::now_v7());
        sessions.remember(sessions.epoch(), account, session, &live(&[], time::Duration::HOUR));
        assert!(sessions.get(account, session).is_some());

        std::thread::sleep(STALE_AFTER + Duration::from_millis(50));
        assert!(sessions.get(account, session).is_none(), "not used while silent");
        sessions.heard(HEARTBEAT);
        assert!(
            sessions.get(account, session).is_some(),
            "the heartbeat says nothing was missed"
        );
    }

    #[tokio::test]
    async fn dropping_the_watch_stops_its_task() {
        let task = tokio::spawn(std::future::pending::<()>());
        drop(Watch(task.abort_handle()));
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(ended.expect("the task ended").expect_err("aborted").is_cancelled());
    }

    #[test]
    fn a_lapsed_session_is_not_used_and_makes_room() {
        let sessions = Sessions::default();
        sessions.heard(HEARTBEAT);
        let account = Uuid::now_v7();
        let lapsed = Uuid::now_v7();
        sessions.remember(sessions.epoch(), account, lapsed, &live(&[], -time::Duration::SECOND));
        assert!(sessions.get(account, lapsed).is_none());

        for _ in 1..CAPACITY {
            sessions.remember(
                sessions.epoch(),
                Uuid::now_v7(),
                Uuid::now_v7(),
                &live(&[], time::Duration::HOUR),
            );
        }
        let (newcomer, session) = (Uuid::now_v7(), Uuid::now_v7());
        sessions.remember(sessions.epoch(), newcomer, session, &live(&[], time::Duration::HOUR));
        assert!(
            sessions.get(newcomer, session).is_some(),
            "took the lapsed session's place"
        );
        let (late, session) = (Uuid::now_v7(), Uuid::now_v7());
        sessions.remember(sessions.epoch(), late, session, &live(&[], time::Duration::HOUR));
        assert!(sessions.get(late, session).is_none(), "full of live sessions: not kept");
    }
}
