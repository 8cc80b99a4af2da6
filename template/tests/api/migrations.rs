//! Migrations apply, report their state, and revert cleanly: the service's own, and a fixture
//! set that pins down the revert logic however many migrations the service has.

use service::config::DatabaseConfig;
use service::db::Database;
use service::db::migrate::{self, MIGRATOR};
use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::database::TestDatabase;

fn database(test_db: &TestDatabase) -> Database {
    let config = DatabaseConfig {
        url: Some(test_db.url.as_str().into()),
        ..DatabaseConfig::default()
    };
    Database::connect(&config).expect("valid settings")
}

fn up_migrations(migrator: &Migrator) -> usize {
    migrator
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration())
        .count()
}

/// Tables `first` and `second`, each with a down migration, and `third` without one.
fn fixture() -> Migrator {
    let migration =
        |version, kind, sql| Migration::new(version, "fixture".into(), kind, SqlStr::from_static(sql), false);
    Migrator::with_migrations(vec![
        migration(1, MigrationType::ReversibleUp, "CREATE TABLE first (id int)"),
        migration(1, MigrationType::ReversibleDown, "DROP TABLE first"),
        migration(2, MigrationType::ReversibleUp, "CREATE TABLE second (id int)"),
        migration(2, MigrationType::ReversibleDown, "DROP TABLE second"),
    ])
}

async fn tables(db: &Database) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .expect("list tables")
}

#[tokio::test]
async fn the_services_migrations_revert_completely_and_apply_again() {
    let test_db = TestDatabase::empty().await;
    let db = database(&test_db);
    let pool = db.pool();

    let pending = migrate::status(&MIGRATOR, pool).await.expect("status");
    assert_eq!(pending.len(), up_migrations(&MIGRATOR));
    assert!(pending.iter().all(|migration| !migration.applied));

    migrate::run(&MIGRATOR, pool).await.expect("apply");
    assert!(
        migrate::status(&MIGRATOR, pool)
            .await
            .expect("status")
            .iter()
            .all(|m| m.applied)
    );

    let reverted = migrate::revert(&MIGRATOR, pool, None).await.expect("revert all");
    assert_eq!(reverted.len(), up_migrations(&MIGRATOR));
    assert_eq!(
        tables(&db).await,
        Vec::<String>::new(),
        "down migrations must undo the up migrations"
    );

    migrate::run(&MIGRATOR, pool).await.expect("apply again");
    assert!(
        migrate::status(&MIGRATOR, pool)
            .await
            .expect("status")
            .iter()
            .all(|m| m.applied)
    );
    db.close().await;
}

#[tokio::test]
async fn reverting_one_step_reverts_only_the_newest_migration() {
    let test_db = TestDatabase::empty().await;
    let db = database(&test_db);
    let migrator = fixture();
    migrate::run(&migrator, db.pool()).await.expect("apply");
    assert_eq!(tables(&db).await, ["first", "second"]);

    let reverted = migrate::revert(&migrator, db.pool(), Some(1))
        .await
        .expect("revert one");

    assert_eq!(reverted, [2]);
    assert_eq!(tables(&db).await, ["first"]);
    let applied: Vec<(i64, bool)> = migrate::status(&migrator, db.pool())
        .await
        .expect("status")
        .into_iter()
        .map(|migration| (migration.version, migration.applied))
        .collect();
    assert_eq!(applied, [(1, true), (2, false)]);

    assert_eq!(
        migrate::revert(&migrator, db.pool(), Some(5))
            .await
            .expect("revert the rest"),
        [1]
    );
    assert_eq!(
        migrate::revert(&migrator, db.pool(), None).await.expect("nothing left"),
        Vec::<i64>::new()
    );
    db.close().await;
}

#[tokio::test]
async fn a_migration_without_a_down_file_is_not_reported_as_reverted() {
    let test_db = TestDatabase::empty().await;
    let db = database(&test_db);
    let one_way = Migrator::with_migrations(vec![Migration::new(
        7,
        "one way".into(),
        MigrationType::ReversibleUp,
        SqlStr::from_static("CREATE TABLE kept (id int)"),
        false,
    )]);
    migrate::run(&one_way, db.pool()).await.expect("apply");

    let refused = migrate::revert(&one_way, db.pool(), None).await;

    let message = refused.expect_err("must refuse").to_string();
    assert!(message.contains("7 has no .down.sql"), "{message}");
    assert_eq!(tables(&db).await, ["kept"]);
    db.close().await;
}
