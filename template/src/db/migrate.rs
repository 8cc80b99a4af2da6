//! The embedded migrations and the `migrate` subcommand's operations. Each runs on a dedicated
//! connection without the statement timeout, closed afterwards, so the advisory lock sqlx
//! takes is never left behind in a pool when a migration fails.

use std::collections::HashSet;

use sqlx::migrate::{Migrate, MigrateDatabase, MigrateError, MigrationType, Migrator};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

/// Every migration in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

const TABLE: &str = "_sqlx_migrations";

/// A migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Applies every pending migration of `migrator` (in the service, [`MIGRATOR`]).
pub async fn run(migrator: &Migrator, pool: &PgPool) -> Result<(), MigrateError> {
    with_connection(pool, async |conn| migrator.run(conn).await).await
}

/// Reverts the latest `steps` applied migrations, newest first; `None` reverts all of them.
/// Returns the versions reverted.
pub async fn revert(migrator: &Migrator, pool: &PgPool, steps: Option<usize>) -> Result<Vec<i64>, MigrateError> {
    with_connection(pool, async |conn| {
        conn.ensure_migrations_table(TABLE).await?;
        let mut applied: Vec<i64> = conn
            .list_applied_migrations(TABLE)
            .await?
            .into_iter()
            .map(|migration| migration.version)
            .collect();
        applied.sort_unstable();
        let keep = steps.map_or(0, |steps| applied.len().saturating_sub(steps));
        let reverted = applied.split_off(keep);
        // sqlx's undo silently skips a version without a down file; refuse instead of claiming
        // to have reverted it.
        if let Some(version) = reverted.iter().find(|version| !has_down(migrator, **version)) {
            return Err(MigrateError::Source(
                format!("migration {version} has no .down.sql; it cannot be reverted").into(),
            ));
        }
        let target = applied.last().copied().unwrap_or(0);
        if !reverted.is_empty() {
            migrator.undo(conn, target).await?;
        }
        Ok(reverted.into_iter().rev().collect())
    })
    .await
}

/// Lists every known migration, oldest first, with whether it has been applied.
pub async fn status(migrator: &Migrator, pool: &PgPool) -> Result<Vec<MigrationStatus>, MigrateError> {
    with_connection(pool, async |conn| {
        conn.ensure_migrations_table(TABLE).await?;
        let applied: HashSet<i64> = conn
            .list_applied_migrations(TABLE)
            .await?
            .into_iter()
            .map(|migration| migration.version)
            .collect();
        Ok(migrator
            .iter()
            .filter(|migration| migration.migration_type.is_up_migration())
            .map(|migration| MigrationStatus {
                version: migration.version,
                description: migration.description.to_string(),
                applied: applied.contains(&migration.version),
            })
            .collect())
    })
    .await
}

fn has_down(migrator: &Migrator, version: i64) -> bool {
    migrator
        .iter()
        .any(|migration| migration.version == version && migration.migration_type == MigrationType::ReversibleDown)
}

/// Whether `err` says the database itself does not exist (SQLSTATE 3D000).
pub fn is_missing_database(err: &MigrateError) -> bool {
    let (MigrateError::Execute(err) | MigrateError::ExecuteMigration(err, _)) = err else {
        return false;
    };
    err.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .as_deref()
        == Some("3D000")
}

/// Creates the database `url` names, connecting to the server's maintenance database.
pub async fn create_database(url: &str) -> Result<(), sqlx::Error> {
    Postgres::create_database(url).await
}

async fn with_connection<T>(
    pool: &PgPool,
    operation: impl AsyncFnOnce(&mut PgConnection) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    let mut conn = pool.acquire().await?.detach();
    // Schema changes such as index builds may run far longer than any request should.
    sqlx::query("SET statement_timeout = 0").execute(&mut conn).await?;
    let result = operation(&mut conn).await;
    // Closing ends the session, which releases the advisory lock even after a failure.
    let _ = conn.close().await;
    result
}
