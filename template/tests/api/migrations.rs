//! Migrations apply, report their state, and revert cleanly.

use service::config::DatabaseConfig;
use service::db::Database;
use service::db::migrate::{self, MIGRATOR};

use crate::database::TestDatabase;

fn database(test_db: &TestDatabase) -> Database {
    let config = DatabaseConfig {
        url: Some(test_db.url.as_str().into()),
        ..DatabaseConfig::default()
    };
    Database::connect(&config).expect("valid settings")
}

fn count_up_migrations() -> usize {
    MIGRATOR
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration())
        .count()
}

#[tokio::test]
async fn every_migration_reverts_and_applies_again() {
    let test_db = TestDatabase::empty().await;
    let db = database(&test_db);
    let pool = db.pool();

    let pending = migrate::status(pool).await.expect("status");
    assert_eq!(pending.len(), count_up_migrations());
    assert!(pending.iter().all(|migration| !migration.applied));

    migrate::run(pool).await.expect("apply");
    assert!(
        migrate::status(pool)
            .await
            .expect("status")
            .iter()
            .all(|migration| migration.applied)
    );

    let reverted = migrate::revert(pool, None).await.expect("revert all");
    assert_eq!(reverted.len(), count_up_migrations());
    assert!(
        reverted.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {reverted:?}"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await
    .expect("count tables");
    assert_eq!(tables, 0, "down migrations must remove what the up migrations created");

    migrate::run(pool).await.expect("apply again");
    assert!(
        migrate::status(pool)
            .await
            .expect("status")
            .iter()
            .all(|migration| migration.applied)
    );
    db.close().await;
}

#[tokio::test]
async fn reverting_one_step_reverts_only_the_newest_migration() {
    let test_db = TestDatabase::empty().await;
    let db = database(&test_db);
    let pool = db.pool();
    migrate::run(pool).await.expect("apply");

    let reverted = migrate::revert(pool, Some(1)).await.expect("revert one");

    let newest = MIGRATOR.iter().map(|migration| migration.version).max();
    assert_eq!(reverted.first().copied(), newest);
    assert!(reverted.len() <= 1);
    let applied = migrate::status(pool)
        .await
        .expect("status")
        .iter()
        .filter(|m| m.applied)
        .count();
    assert_eq!(applied, count_up_migrations().saturating_sub(1));
    db.close().await;
}
