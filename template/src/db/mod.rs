//! PostgreSQL access: the pool, the embedded migrations, and one module of queries per table.
//! Query functions take a connection, so a caller can run them alone or inside a transaction.

mod error;
pub mod keyset;
pub mod migrate;
mod pool;
{%- if example %}
pub mod projects;
{%- endif %}
{%- if auth == "issuer" %}
pub mod refresh_tokens;
{%- endif %}
{%- if example %}
pub mod tasks;
{%- endif %}
{%- if auth == "issuer" %}
pub mod users;
{%- endif %}
pub mod versioned;

pub use error::DbError;
pub use pool::{Database, PoolStats};
