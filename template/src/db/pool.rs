//! The connection pool. It is created without connecting, so the service starts (and reports
//! itself unready) while PostgreSQL is away, and every connection carries the statement
//! timeout. Requests take connections through [`Database::acquire`], which counts waiters
//! and hands out connections that requests released cleanly before going to sqlx's pool.

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;

use super::DbError;
use crate::config::DatabaseConfig;

/// SQLSTATE `too_many_connections`.
const TOO_MANY_CONNECTIONS: &str = "53300";

/// How long the answer of [`Database::ping`] is reused: however many probes arrive, PostgreSQL
/// sees at most one check per this interval, and an outage shows within it.
pub const PING_REUSE: Duration = Duration::from_millis(500);

/// A connection idle for longer is checked before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A connection out of sqlx's pool for this long goes back there when released, so that
/// callers waiting there (transactions, background work) are served in turn, and sqlx applies
/// its limits, the connection's lifetime among them.
const RETURN_AFTER: Duration = Duration::from_millis(100);

/// The pool plus the bookkeeping sqlx does not expose.
#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    shared: Arc<Shared>,
    last_ping: Arc<tokio::sync::Mutex<Option<Ping>>>,
}

/// What [`Database`] and the connections it handed out share.
#[derive(Debug)]
struct Shared {
    /// Callers waiting for sqlx's pool right now.
    waiting: AtomicUsize,
    /// Connections released cleanly, oldest first, for the next [`Database::acquire`].
    released: Mutex<Vec<Released>>,
    /// Wakes a caller of [`Database::acquire`] waiting for a connection when one is released.
    on_release: Notify,
    /// At most half the pool waits here idle, so that users of sqlx's pool itself always find
    /// the rest.
    keep_at_most: usize,
}

#[derive(Debug)]
struct Released {
    conn: PoolConnection<Postgres>,
    at: Instant,
    /// When it left sqlx's pool.
    taken: Instant,
}

/// The outcome of the latest check, and when it ended.
#[derive(Debug)]
struct Ping {
    at: Instant,
    outcome: Result<(), String>,
}

/// A snapshot of the pool for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle ones included.
    pub size: u32,
    pub idle: usize,
    /// Callers waiting for a connection right now.
    pub waiting: usize,
}

impl Database {
    /// Builds the pool from configuration; no connection is opened until one is needed.
    /// Must be called inside a Tokio runtime.
    pub fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let url = config.url.as_ref().context("DATABASE_URL is not set")?;
        let options = PgConnectOptions::from_str(url.expose_secret())
            .map_err(|err| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {err}"))?
            .application_name(env!("CARGO_PKG_NAME"))
            .options([("statement_timeout", format!("{}ms", config.statement_timeout_ms))]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout())
            // sqlx would ping every connection before handing it out, a round trip per request;
            // only one that sat idle for a while is checked. One that died in use (a restart, a
            // failover) fails its next query instead, which answers 503 and is not reused.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > CHECK_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Self {
        let keep_at_most = usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(usize::MAX);
        Self {
            pool,
            shared: Arc::new(Shared {
                waiting: AtomicUsize::new(0),
                released: Mutex::default(),
                on_release: Notify::new(),
                keep_at_most,
            }),
            last_ping: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes a connection, waiting at most the configured acquire timeout: the one a request
    /// released last, else whichever comes first of one released meanwhile and one from
    /// sqlx's pool.
    pub async fn acquire(&self) -> Result<DbConnection, DbError> {
        let shared = &self.shared;
        if let Some(Released { conn, taken, .. }) = shared.take_released() {
            return Ok(DbConnection::new(conn, taken, shared));
        }
        let _waiting = Waiting::enter(&shared.waiting);
        // Created once, so that the caller keeps its place in sqlx's queue.
        let mut from_pool = std::pin::pin!(self.pool.acquire());
        loop {
            tokio::select! {
                conn = &mut from_pool => {
                    let conn = conn.map_err(DbError::unconstrained)?;
                    return Ok(DbConnection::new(conn, Instant::now(), shared));
                }
                () = shared.on_release.notified() => {
                    if let Some(Released { conn, taken, .. }) = shared.take_released() {
                        return Ok(DbConnection::new(conn, taken, shared));
                    }
                }
            }
        }
    }

    /// Starts a transaction on a connection of sqlx's pool; it rolls back unless committed
    /// with [`commit`]. When that pool has no idle connection, one that waits released for
    /// the next request goes back there first.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, DbError> {
        if self.pool.num_idle() == 0 {
            drop(self.shared.take_released());
        }
        let _waiting = Waiting::enter(&self.shared.waiting);
        begin(&self.pool).await
    }

    /// Checks that PostgreSQL answers within `timeout`, or repeats the answer of a check that
    /// ended less than [`PING_REUSE`] ago. Callers that arrive during a check wait for its
    /// answer, so a flood of probes opens at most one connection.
    pub async fn ping(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut last = self.last_ping.lock().await;
        let outcome = match last.as_ref() {
            Some(ping) if ping.at.elapsed() < PING_REUSE => ping.outcome.clone(),
            _ => {
                let outcome = self.check(timeout).await.map_err(|err| format!("{err:#}"));
                *last = Some(Ping {
                    at: Instant::now(),
                    outcome: outcome.clone(),
                });
                outcome
            }
        };
        outcome.map_err(anyhow::Error::msg)
    }

    /// One check: on an idle pooled connection when there is one, otherwise on a new
    /// connection, so a pool that is merely busy is not an outage.
    async fn check(&self, timeout: Duration) -> anyhow::Result<()> {
        let ping = async {
            if let Some(mut conn) = self.pool.try_acquire()
                && conn.ping().await.is_ok()
            {
                return Ok(());
            }
            match PgConnection::connect_with(&self.pool.connect_options()).await {
                Ok(mut conn) => {
                    conn.ping().await?;
                    conn.close().await
                }
                // The server answers but every slot is taken, by the pools of this service
                // among others: that is load, not an outage.
                Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(TOO_MANY_CONNECTIONS) => Ok(()),
                Err(err) => Err(err),
            }
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(result) => result.context("PostgreSQL refused the connection"),
            Err(_elapsed) => anyhow::bail!("PostgreSQL did not answer within {timeout:?}"),
        }
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() + self.shared.lock_released().len(),
            waiting: self.shared.waiting.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection; waits for the ones in use to come back.
    pub async fn close(&self) {
        drop(std::mem::take(&mut *self.shared.lock_released()));
        self.pool.close().await;
    }
}

impl Shared {
    fn lock_released(&self) -> std::sync::MutexGuard<'_, Vec<Released>> {
        self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection released last, unless it has been idle for so long that it must be
    /// checked first; connections idle that long go back to sqlx's pool, which checks them.
    fn take_released(&self) -> Option<Released> {
        let mut released = self.lock_released();
        let fresh = released.partition_point(|idle| idle.at.elapsed() > CHECK_AFTER_IDLE);
        let stale: Vec<Released> = released.drain(..fresh).collect();
        let newest = released.pop();
        drop(released);
        drop(stale);
        newest
    }
}

/// A connection from [`Database::acquire`], used as a `PgConnection`.
///
/// Dropped, it goes back to sqlx's pool, which first checks it with a round trip to
/// PostgreSQL: sqlx must assume that a query on it was cut off halfway. A request whose
/// queries all completed calls [`DbConnection::release`] instead, which keeps the connection
/// for the next request, so that a read costs PostgreSQL one round trip, not two.
#[derive(Debug)]
pub struct DbConnection {
    /// Taken out only by `release`.
    conn: Option<PoolConnection<Postgres>>,
    taken: Instant,
    shared: Arc<Shared>,
}

impl DbConnection {
    fn new(conn: PoolConnection<Postgres>, taken: Instant, shared: &Arc<Shared>) -> Self {
        Self {
            conn: Some(conn),
            taken,
            shared: Arc::clone(shared),
        }
    }

    /// Hands the connection to the next request, to be called once its last query completed.
    /// It goes back to sqlx's pool instead [`RETURN_AFTER`] after it left there, when half
    /// the pool waits here already and no more callers wait, or if a transaction was left
    /// open on it.
    pub fn release(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.taken.elapsed() > RETURN_AFTER || conn.is_in_transaction() {
            return;
        }
        let shared = &self.shared;
        let waiting = shared.waiting.load(Ordering::Relaxed);
        let mut released = shared.lock_released();
        if released.len() < shared.keep_at_most.max(waiting) {
            released.push(Released {
                conn,
                at: Instant::now(),
                taken: self.taken,
            });
            drop(released);
            shared.on_release.notify_one();
        }
    }
}

impl Deref for DbConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("present until released")
    }
}

impl DerefMut for DbConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("present until released")
    }
}

/// Counts a waiter for as long as it lives, even when the waiting future is cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts a transaction on a connection of `pool`, whether or not the caller still waits for it.
///
/// sqlx (0.9) counts a transaction as begun only once PostgreSQL has answered its `BEGIN`. A
/// caller dropped while it waits for that answer (a client that hung up, a timeout) hands the
/// pool a connection that is still inside the transaction, and whatever the next borrower
/// writes there is never committed. Begun in a task of its own, the answer is always read; a
/// transaction nobody waits for any more is then dropped, and so rolled back, like any other.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, DbError> {
    let pool = pool.clone();
    #[expect(clippy::disallowed_methods, reason = "the one place it is awaited to the end")]
    let begun = tokio::spawn(async move { pool.begin().await });
    match begun.await {
        Ok(begun) => begun.map_err(DbError::unconstrained),
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(DbError::Unavailable),
    }
}

/// Commits `tx`; a failure (the connection went) is an unavailable database, like others.
pub async fn commit(tx: Transaction<'_, Postgres>) -> Result<(), DbError> {
    tx.commit().await.map_err(DbError::unconstrained)
}
