//! Optimistic concurrency: a write applies only while the row still has a version the client
//! last read, so two clients editing at once cannot silently overwrite each other. Tables
//! using it have `id uuid` and `version integer` columns.

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

/// The outcome of a write guarded by expected versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    /// The write happened; holds what the row became.
    Applied(T),
    /// No row has that id.
    NotFound,
    /// The row changed since the client read it; holds its version now.
    Stale { current: i32 },
}

impl<T> Versioned<T> {
    /// The outcome of a guarded write that touched no row, given the row's version now
    /// (`None` when the row does not exist).
    pub fn missed(current: Option<i32>) -> Self {
        current.map_or(Self::NotFound, |current| Self::Stale { current })
    }
}

/// The version row `id` of `table` has now, if it exists. `table` is a constant of the
/// calling module, never input.
pub async fn current_version(
    conn: &mut PgConnection,
    table: &'static str,
    id: Uuid,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT version FROM {table} WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Deletes row `id` of `table` if its version is one of `expected` (any version when `None`).
pub async fn delete(
    conn: &mut PgConnection,
    table: &'static str,
    id: Uuid,
    expected: Option<&[i32]>,
) -> Result<Versioned<()>, sqlx::Error> {
    let deleted = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE id = $1 AND ($2::int4[] IS NULL OR version = ANY($2))"
    )))
    .bind(id)
    .bind(expected)
    .execute(&mut *conn)
    .await?;
    if deleted.rows_affected() == 1 {
        return Ok(Versioned::Applied(()));
    }
    Ok(Versioned::missed(current_version(conn, table, id).await?))
}
