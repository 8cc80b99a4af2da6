//! A fresh PostgreSQL database for every test. The server comes from `DATABASE_URL` (the
//! environment or `.env`), otherwise from a container started through testcontainers; each
//! test clones a template database that was migrated once, which takes milliseconds.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock, Weak};

use service::db::migrate::MIGRATOR;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::core::IntoContainerPort;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

/// The PostgreSQL image used when no `DATABASE_URL` is set; the same image as compose.
const POSTGRES_IMAGE_TAG: &str = "15";

/// A database that exists for one test and is dropped with it.
pub struct TestDatabase {
    pub url: String,
    name: String,
    server: Server,
}

/// Where the test databases live. A container is shared by the tests that run at the same
/// time and removed when the last of them finishes.
#[derive(Clone)]
struct Server {
    admin_url: String,
    _container: Option<Arc<ContainerAsync<Postgres>>>,
}

impl TestDatabase {
    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        let server = server().await;
        let template = ensure_template(&server.admin_url).await;
        Self::create(server, Some(&template)).await
    }

    /// A new database without any migration.
    pub async fn empty() -> Self {
        Self::create(server().await, None).await
    }

    async fn create(server: Server, template: Option<&str>) -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(&server.admin_url).await;
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        admin
            .execute(AssertSqlSafe(sql))
            .await
            .expect("cannot create a test database");
        let _ = admin.close().await;
        Self {
            url: with_database(&server.admin_url, &name),
            name,
            server,
        }
    }

    /// Runs `sql` on the server, outside this database, e.g. to take this database offline.
    pub async fn admin(&self, sql: String) {
        let mut admin = connect(&self.server.admin_url).await;
        admin.execute(AssertSqlSafe(sql)).await.expect("admin statement failed");
        let _ = admin.close().await;
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    /// Drops the database, ending any connection still open to it. `Drop` cannot await, and
    /// the test's runtime may be shutting down, so this runs on a thread of its own.
    fn drop(&mut self) {
        let admin_url = self.server.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                admin.execute(AssertSqlSafe(sql)).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("cannot connect to the test PostgreSQL server")
}

/// Clones of the template are cheap; the template itself is built once per migration set,
/// under an advisory lock so that parallel test processes build it only once.
async fn ensure_template(admin_url: &str) -> String {
    let mut hasher = DefaultHasher::new();
    for migration in MIGRATOR.iter() {
        (
            migration.version,
            &*migration.checksum,
            migration.migration_type.label(),
        )
            .hash(&mut hasher);
    }
    let template = format!("test_template_{:016x}", hasher.finish());
    let mut admin = connect(admin_url).await;
    admin
        .execute("SELECT pg_advisory_lock(7215100)")
        .await
        .expect("advisory lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    if !exists {
        // Built under another name and renamed when complete, so a failed build never
        // leaves a half-migrated template behind.
        let building = format!("{template}_building");
        admin
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {building}")))
            .await
            .expect("drop");
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .await
            .expect("create template");
        let mut conn = connect(&with_database(admin_url, &building)).await;
        MIGRATOR
            .run(&mut conn)
            .await
            .expect("migrations failed on the template database");
        let _ = conn.close().await;
        admin
            .execute(AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {template}")))
            .await
            .expect("rename template");
    }
    admin
        .execute("SELECT pg_advisory_unlock(7215100)")
        .await
        .expect("advisory unlock");
    let _ = admin.close().await;
    template
}

/// The container shared by the tests running now, and its port; it goes away with the last
/// test that holds it.
static CONTAINER: OnceLock<tokio::sync::Mutex<(Weak<ContainerAsync<Postgres>>, u16)>> = OnceLock::new();

/// The server to create databases on: `DATABASE_URL` when set, else a shared container.
async fn server() -> Server {
    let _ = dotenvy::dotenv();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Server {
            admin_url: url,
            _container: None,
        };
    }
    let mut shared = CONTAINER.get_or_init(Default::default).lock().await;
    let container = if let Some(container) = shared.0.upgrade() {
        container
    } else {
        let (container, port) = start_container().await;
        let container = Arc::new(container);
        *shared = (Arc::downgrade(&container), port);
        container
    };
    Server {
        admin_url: format!("postgres://postgres:postgres@127.0.0.1:{}/postgres", shared.1),
        _container: Some(container),
    }
}

/// A port for a container to publish on. Mapping a chosen port works with Docker and Podman
/// alike; asking the engine for the published port does not on every Podman version.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free port")
}

async fn start_container() -> (ContainerAsync<Postgres>, u16) {
    let port = free_port();
    let container = Postgres::default()
        .with_tag(POSTGRES_IMAGE_TAG)
        .with_mapped_port(port, 5432.tcp())
        .start()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "no PostgreSQL for the tests: set DATABASE_URL (`cargo xtask db up` writes one to .env) \
                 or run a Docker-compatible engine for testcontainers ({err})"
            )
        });
    (container, port)
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |index| index + 3);
    let base = base[authority..]
        .find('/')
        .map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn the_database_of_a_url_is_replaced() {
    assert_eq!(with_database("postgres://u:p@h:1/app", "t"), "postgres://u:p@h:1/t");
    assert_eq!(
        with_database("postgres://u:p@h:1/app?sslmode=disable", "t"),
        "postgres://u:p@h:1/t?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
}
