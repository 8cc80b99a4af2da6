//! The database building blocks every resource uses (keyset pagination, versioned writes and
//! error classification), on a scratch table, so they are proven even in a service that has
//! no resources yet.

use std::task::Poll;
use std::time::Duration;

use service::config::DatabaseConfig;
use service::db::keyset::{push_after, push_order_and_limit};
use service::db::versioned::{self, Table};
use service::db::{Database, DbError};
use service::domain::page::{Direction, Page, PageSize, Position, SortValue};
use service::domain::version::Versioned;
use sqlx::{Connection, PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::database::TestDatabase;

const WIDGETS: &str = "CREATE TABLE widgets (
    id uuid PRIMARY KEY,
    label text NOT NULL,
    parent uuid REFERENCES widgets (id),
    version integer NOT NULL DEFAULT 1,
    CONSTRAINT widgets_label_key UNIQUE (label)
)";

async fn widgets(test_db: &TestDatabase, configure: impl FnOnce(&mut DatabaseConfig)) -> Database {
    let mut config = DatabaseConfig {
        url: Some(test_db.url.as_str().into()),
        ..DatabaseConfig::default()
    };
    configure(&mut config);
    let db = Database::connect(&config).expect("valid settings");
    sqlx::query(WIDGETS).execute(db.pool()).await.expect("create widgets");
    db
}

async fn insert(conn: &mut PgConnection, label: &str) -> Result<Uuid, DbError> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO widgets (id, label) VALUES ($1, $2)")
        .bind(id)
        .bind(label)
        .execute(&mut *conn)
        .await
        .map_err(|err| DbError::classify(err, &[("widgets_label_key", "a widget with this label exists")]))?;
    Ok(id)
}

async fn page(conn: &mut PgConnection, direction: Direction, after: Option<&Position>) -> Page<(Uuid, String)> {
    let mut sql = QueryBuilder::new("SELECT id, label FROM widgets WHERE true");
    push_after(&mut sql, "label", direction, after);
    push_order_and_limit(&mut sql, "label", direction, PageSize::clamped(Some(2)));
    let rows: Vec<(Uuid, String)> = sql.build_query_as().fetch_all(&mut *conn).await.expect("page");
    Page::from_overfetch(rows, PageSize::clamped(Some(2)), |(id, label)| Position {
        value: SortValue::Text(label.clone()),
        id: *id,
    })
}

#[tokio::test]
async fn keyset_pages_walk_a_table_in_both_directions() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |_| {}).await;
    let mut conn = db.acquire().await.expect("connection");
    for label in ["c", "a", "e", "b", "d"] {
        insert(&mut conn, label).await.expect("insert");
    }

    for (direction, expected) in [(Direction::Asc, "abcde"), (Direction::Desc, "edcba")] {
        let mut seen = String::new();
        let mut after = None;
        loop {
            let page = page(&mut conn, direction, after.as_ref()).await;
            seen.extend(page.items.iter().map(|(_, label)| label.as_str()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{direction:?}");
    }
}

#[tokio::test]
async fn versioned_deletes_tell_stale_from_missing() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |_| {}).await;
    let mut conn = db.acquire().await.expect("connection");
    let id = insert(&mut conn, "w").await.expect("insert");
    let table = Table {
        name: "widgets",
        owned_by: "true",
    };

    assert_eq!(
        versioned::current_version(&mut conn, table, id, None).await.ok(),
        Some(Some(1))
    );
    let stale = versioned::delete(&mut conn, table, id, None, Some(&[7]))
        .await
        .expect("delete");
    assert_eq!(stale, Versioned::Stale { current: 1 });
    let deleted = versioned::delete(&mut conn, table, id, None, Some(&[1]))
        .await
        .expect("delete");
    assert_eq!(deleted, Versioned::Applied(()));
    let missing = versioned::delete(&mut conn, table, id, None, None)
        .await
        .expect("delete");
    assert_eq!(missing, Versioned::NotFound);
    assert_eq!(
        versioned::current_version(&mut conn, table, id, None).await.ok(),
        Some(None)
    );
}

#[tokio::test]
async fn database_errors_are_classified_for_the_client() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |_| {}).await;
    let mut conn = db.acquire().await.expect("connection");
    insert(&mut conn, "taken").await.expect("insert");

    let duplicate = insert(&mut conn, "taken").await;
    assert!(
        matches!(duplicate, Err(DbError::Conflict("a widget with this label exists"))),
        "{duplicate:?}"
    );

    let orphan = sqlx::query("INSERT INTO widgets (id, label, parent) VALUES ($1, 'orphan', $2)")
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained);
    assert!(matches!(orphan, Err(DbError::MissingReference(_))), "{orphan:?}");

    let nul = insert(&mut conn, "a\u{0}b").await;
    assert!(matches!(nul, Err(DbError::InvalidValue)), "{nul:?}");

    let cast = sqlx::query("SELECT 'not a number'::int")
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained);
    assert!(
        matches!(cast, Err(DbError::Other(_))),
        "a failed cast is a bug, not bad input: {cast:?}"
    );

    sqlx::query("SET statement_timeout = '50ms'")
        .execute(&mut *conn)
        .await
        .expect("set");
    let slow = sqlx::query("SELECT pg_sleep(1)")
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained);
    assert!(matches!(slow, Err(DbError::Timeout)), "{slow:?}");
}

#[tokio::test]
async fn an_exhausted_pool_reports_unavailable_and_counts_its_waiters() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |config| {
        config.max_connections = 1;
        config.acquire_timeout_ms = 1_000;
    })
    .await;
    let held = db.acquire().await.expect("the only connection");

    let waiter = tokio::spawn({
        let db = db.clone();
        async move { db.acquire().await.map(drop) }
    });
    let counted = async {
        while db.stats().waiting != 1 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_millis(900), counted)
        .await
        .expect("the waiter is counted");

    assert!(matches!(waiter.await.expect("task"), Err(DbError::Unavailable)));
    assert_eq!(db.stats().waiting, 0);
    drop(held);
    assert!(db.ping(Duration::from_secs(1)).await.is_ok());
}

/// A caller that goes away while its transaction begins (a client that hung up, a timeout)
/// leaves the pool's connection outside any transaction, so that what the next borrower
/// writes commits.
#[tokio::test]
async fn a_transaction_abandoned_while_it_begins_leaves_its_connection_outside_it() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |config| config.max_connections = 1).await;
    let mut observer = PgConnection::connect(&test_db.url).await.expect("connection");

    // Abandoned after one poll, then after two, and so on until one poll more would finish:
    // some of these cuts fall while PostgreSQL's answer to BEGIN is awaited.
    for polls in 1.. {
        let mut beginning = Box::pin(db.begin());
        let mut begun = false;
        for _ in 0..polls {
            begun = std::future::poll_fn(|cx| Poll::Ready(beginning.as_mut().poll(cx).is_ready())).await;
            if begun {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(beginning);

        let label = format!("after {polls} polls");
        let mut conn = db.acquire().await.expect("the only connection");
        insert(&mut conn, &label).await.expect("insert");
        drop(conn);
        let committed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM widgets WHERE label = $1)")
            .bind(&label)
            .fetch_one(&mut observer)
            .await
            .expect("query");
        assert!(
            committed,
            "a write after a BEGIN abandoned at poll {polls} never committed"
        );
        if begun {
            break;
        }
    }
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("pid")
}

/// A connection released after its queries completed goes to the next caller as it is,
/// without the round trip sqlx's pool makes for each connection handed back to it.
#[tokio::test]
async fn a_released_connection_serves_the_next_caller_without_going_back_to_the_pool() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |config| config.max_connections = 4).await;
    // The connection that created the table, once sqlx's pool has it back.
    idle_in_pool(&db, 1).await;
    let mut conn = db.acquire().await.expect("connection");
    let first = backend_pid(&mut conn).await;
    conn.release();
    assert_eq!(db.pool().num_idle(), 0, "sqlx's pool did not take it back");
    assert_eq!(db.stats().idle, 1, "the kept connection counts as idle");

    let mut next = db.acquire().await.expect("connection");
    assert_eq!(backend_pid(&mut next).await, first);

    // Dropped instead of released, as when a query failed or the request went away, it goes
    // back to sqlx's pool, which checks it first.
    drop(next);
    idle_in_pool(&db, 1).await;
    assert_eq!(db.stats().idle, 1);
}

/// Waits until sqlx's pool holds `count` idle connections: it takes one back in a task.
async fn idle_in_pool(db: &Database, count: usize) {
    let returned = async {
        while db.pool().num_idle() != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), returned)
        .await
        .expect("sqlx's pool took its connections back");
}

/// A caller waiting for a connection gets the next one released, though sqlx's pool, which
/// it also waits on, sees none come back.
#[tokio::test]
async fn a_caller_waiting_for_a_connection_gets_the_next_one_released() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |config| {
        config.max_connections = 2;
        config.acquire_timeout_ms = 5_000;
    })
    .await;
    let (mut first, _second) = (db.acquire().await.expect("one"), db.acquire().await.expect("two"));
    let pid = backend_pid(&mut first).await;
    let waiter = tokio::spawn({
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await.expect("a connection");
            backend_pid(&mut conn).await
        }
    });
    while db.stats().waiting != 1 {
        tokio::task::yield_now().await;
    }
    first.release();
    let got = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiter was served long before the acquire timeout")
        .expect("task");
    assert_eq!(got, pid);
}

/// Connections kept for requests never keep a transaction waiting: with the whole pool
/// either kept or in use, beginning hands a kept one back to sqlx's pool.
#[tokio::test]
async fn a_transaction_begins_while_the_rest_of_the_pool_is_kept_for_requests() {
    let test_db = TestDatabase::empty().await;
    let db = widgets(&test_db, |config| {
        config.max_connections = 2;
        config.acquire_timeout_ms = 2_000;
    })
    .await;
    let (kept, _held) = (db.acquire().await.expect("one"), db.acquire().await.expect("two"));
    kept.release();
    assert_eq!(db.stats().idle, 1);

    let mut tx = db
        .begin()
        .await
        .expect("a transaction, well before the acquire timeout");
    insert(&mut tx, "in a transaction").await.expect("insert");
    service::db::commit(tx).await.expect("commit");
}
