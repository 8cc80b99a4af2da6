//! Optimistic concurrency in SQL (see `domain::version`): a write applies only while the row
//! still has a version the client last read, so two clients editing at once cannot silently
//! overwrite each other. Tables using it have `id uuid` and `version integer` columns.

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::domain::version::Versioned;

/// A table whose rows carry `id uuid` and `version integer`, and how they are owned.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// A constant of the calling module, never input.
    pub name: &'static str,
    /// SQL that holds for a row that `$2` owns; skipped when `$2` is NULL (anyone's rows).
    /// `"true"` for a table whose rows nobody owns.
    pub owned_by: &'static str,
}

/// The version row `id` has now, if it exists and `owner` may see it (anyone may when `None`).
pub async fn current_version(
    conn: &mut PgConnection,
    table: Table,
    id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<i32>, sqlx::Error> {
    let Table { name, owned_by } = table;
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {name} WHERE id = $1 AND ($2::uuid IS NULL OR {owned_by})"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await
}

/// Deletes row `id` if `owner` may see it and its version is one of `expected` (any version
/// when `None`).
pub async fn delete(
    conn: &mut PgConnection,
    table: Table,
    id: Uuid,
    owner: Option<Uuid>,
    expected: Option<&[i32]>,
) -> Result<Versioned<()>, sqlx::Error> {
    let Table { name, owned_by } = table;
    let deleted = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {name} \
         WHERE id = $1 AND ($2::uuid IS NULL OR {owned_by}) AND ($3::int4[] IS NULL OR version = ANY($3))"
    )))
    .bind(id)
    .bind(owner)
    .bind(expected)
    .execute(&mut *conn)
    .await?;
    if deleted.rows_affected() == 1 {
        return Ok(Versioned::Applied(()));
    }
    Ok(Versioned::missed(current_version(conn, table, id, owner).await?))
}
