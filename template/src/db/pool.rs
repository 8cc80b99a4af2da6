//! The connection pool. It is created without connecting, so the service starts (and reports
//! itself unready) while PostgreSQL is away, and every connection carries the statement
//! timeout. Requests take connections through [`Database::acquire`], which counts waiters.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use super::DbError;
use crate::config::DatabaseConfig;

/// SQLSTATE `too_many_connections`.
const TOO_MANY_CONNECTIONS: &str = "53300";

/// How long the answer of [`Database::ping`] is reused: however many probes arrive, PostgreSQL
/// sees at most one check per this interval, and an outage shows within it.
pub const PING_REUSE: Duration = Duration::from_millis(500);

/// A connection idle for longer is checked before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The pool plus the bookkeeping sqlx does not expose.
#[derive(Debug, Clone)]
pub struct Database {
    pool: PgPool,
    waiting: Arc<AtomicUsize>,
    last_ping: Arc<tokio::sync::Mutex<Option<Ping>>>,
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
        Self {
            pool,
            waiting: Arc::default(),
            last_ping: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes a connection, waiting at most the configured acquire timeout.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, DbError> {
        let _waiting = Waiting::enter(&self.waiting);
        self.pool.acquire().await.map_err(DbError::unconstrained)
    }

    /// Starts a transaction on a connection taken as [`Self::acquire`] does; it rolls back
    /// unless committed with [`commit`].
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, DbError> {
        let _waiting = Waiting::enter(&self.waiting);
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
            idle: self.pool.num_idle(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection; waits for the ones in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
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
