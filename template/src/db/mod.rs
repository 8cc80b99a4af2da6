//! PostgreSQL access: the pool, the embedded migrations, and one module of queries per table.
//! Query functions take a connection, so a caller can run them alone or inside a transaction;
//! those that are only correct as a whole take the caller's transaction, from [`begin`].

mod error;
pub mod keyset;
pub mod migrate;
mod pool;
pub mod versioned;
{%- if auth == "issuer" %}

pub mod refresh_tokens;
pub mod users;
{%- endif %}
{%- if example %}

pub mod projects;
pub mod tasks;
{%- endif %}
{%- if jobs and example %}
pub mod webhooks;
{%- endif %}

pub use error::DbError;
pub use pool::{Database, DbConnection, PING_REUSE, PoolStats, begin, commit};
