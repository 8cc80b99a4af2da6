//! Redis shared by replicas: one rate-limit budget, a cache that every write invalidates,
//! messages between replicas; and what happens while Redis is cut off (through a proxy the
//! test controls) and after it is back. The server comes from `REDIS_URL` (the environment or
//! `.env`), otherwise from a container; every test app has its own key prefix.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use reqwest::{Method, Response};
use service::config::Config;
use service::redis::RedisConfig;
use service::redis::cache::{Cache, MAX_VALUE_BYTES};
use testcontainers_modules::redis::Redis;
use testcontainers_modules::testcontainers::core::IntoContainerPort;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::helpers::{TestApp, json, metric};
use crate::rate_limits::assert_limited;

/// The Redis image used when no `REDIS_URL` is set; the same image as compose.
const REDIS_IMAGE_TAG: &str = "7";

/// A Redis server for a test app and its replicas, and their key prefix.
pub struct TestRedis {
    pub url: String,
    prefix: String,
    _container: Option<Arc<ContainerAsync<Redis>>>,
}

static CONTAINER: OnceLock<tokio::sync::Mutex<(Weak<ContainerAsync<Redis>>, u16)>> = OnceLock::new();

impl TestRedis {
    /// `REDIS_URL` when set, else a container shared by the tests running now.
    pub async fn new() -> Self {
        let _ = dotenvy::dotenv();
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Self {
                url,
                prefix,
                _container: None,
            };
        }
        let mut shared = CONTAINER.get_or_init(Default::default).lock().await;
        let container = if let Some(container) = shared.0.upgrade() {
            container
        } else {
            let port = crate::database::free_port();
            let container = Redis::default()
                .with_tag(REDIS_IMAGE_TAG)
                .with_mapped_port(port, 6379.tcp())
                .start()
                .await
                .unwrap_or_else(|err| {
                    panic!(
                        "no Redis for the tests: set REDIS_URL (`cargo xtask db up` writes one to .env) \
                         or run a Docker-compatible engine for testcontainers ({err})"
                    )
                });
            let container = Arc::new(container);
            *shared = (Arc::downgrade(&container), port);
            container
        };
        Self {
            url: format!("redis://127.0.0.1:{}", shared.1),
            prefix,
            _container: Some(container),
        }
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            url: Some(self.url.clone().into()),
            key_prefix: self.prefix.clone(),
            ..RedisConfig::default()
        }
    }
}

/// A TCP proxy in front of Redis that the test cuts and restores, as a network failure or a
/// stopped server would: cutting closes every connection and refuses new ones.
struct Proxy {
    url: String,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn to(redis_url: &str) -> Self {
        let (scheme, credentials, target, path) = parts(redis_url);
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let at = if credentials.is_empty() { "" } else { "@" };
        let slash = if path.is_empty() { "" } else { "/" };
        let url = format!("{scheme}://{credentials}{at}{address}{slash}{path}");
        let (open, _) = watch::channel(true);
        let opened = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*opened.borrow() {
                    continue;
                }
                let mut closed = opened.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Self { url, open, task }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Redis URL's scheme, credentials, `host:port` and path, each possibly empty.
fn parts(url: &str) -> (&str, &str, &str, &str) {
    let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(user, rest)| (user, rest));
    let (address, path) = rest.split_once('/').map_or((rest, ""), |(host, path)| (host, path));
    (scheme, credentials, address, path)
}

/// The service with its rate limits on (3 a minute per address), an API route that does
/// nothing, and `configure` applied.
async fn limited(configure: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(
        |config| {
            config.rate_limit.enabled = true;
            config.rate_limit.per_ip_per_minute = 3;
            configure(config);
        },
        noop(),
    )
    .await
}

fn noop() -> axum::Router<service::AppState> {
    axum::Router::new().route("/probe/noop", post(|| async { StatusCode::NO_CONTENT }))
}

async fn anonymous(app: &TestApp) -> Response {
    app.request(Method::POST, "/probe/noop")
        .send()
        .await
        .expect("request failed")
}

#[tokio::test]
async fn two_replicas_share_one_rate_limit_budget() {
    let first = limited(|_| {}).await;
    let second = first.replica_with(noop()).await;

    assert_eq!(anonymous(&first).await.status(), 204);
    assert_eq!(anonymous(&second).await.status(), 204);
    assert_eq!(anonymous(&first).await.status(), 204);
    // Each replica alone would still allow two more.
    assert_limited(anonymous(&second).await).await;
    assert_limited(anonymous(&first).await).await;
    assert_eq!(metric(&first, "rate_limit_fallbacks_total{").await, 0);
}

#[tokio::test]
async fn a_quota_of_more_than_a_request_a_microsecond_is_kept_in_redis_too() {
    let app = limited(|config| config.rate_limit.per_ip_per_minute = 1_000_000_000).await;
    for _ in 0..3 {
        assert_eq!(anonymous(&app).await.status(), 204);
    }
    assert_eq!(metric(&app, "rate_limit_fallbacks_total{").await, 0);
    assert_eq!(metric(&app, "redis_up ").await, 1);
}

#[tokio::test]
async fn while_redis_is_cut_off_each_replica_limits_alone_and_the_shared_budget_resumes_after() {
    let redis = TestRedis::new().await;
    let proxy = Proxy::to(&redis.url).await;
    let app = limited(|config| config.redis.url = Some(proxy.url.clone().into())).await;
    for _ in 0..3 {
        assert_eq!(anonymous(&app).await.status(), 204);
    }
    assert_limited(anonymous(&app).await).await;

    proxy.cut();
    // The instance's own budget: three more, then limited; never an error, never slow.
    for expected in [204, 204, 204, 429] {
        let started = Instant::now();
        assert_eq!(anonymous(&app).await.status().as_u16(), expected);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a request took {:?} with Redis cut off",
            started.elapsed()
        );
    }
    assert!(metric(&app, "rate_limit_fallbacks_total{").await >= 4);
    assert_eq!(metric(&app, "redis_up ").await, 0);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200, "Redis down is degraded, not unready");
    let ready = json(ready).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["redis"], "down", "{ready}");

    proxy.restore();
    // Back within a second, with the shared bucket as it was: still exhausted.
    let started = Instant::now();
    loop {
        let ready = json(app.get("/health/ready").await).await;
        if ready["status"] == "up" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "Redis never came back: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_limited(anonymous(&app).await).await;
    assert_eq!(metric(&app, "redis_up ").await, 1);
}

#[tokio::test]
async fn requests_under_load_never_fail_or_stall_while_redis_is_cut_off_and_back() {
    let redis = TestRedis::new().await;
    let proxy = Proxy::to(&redis.url).await;
    let app = Arc::new(
        limited(|config| {
            config.rate_limit.per_ip_per_minute = 1_000_000;
            config.redis.url = Some(proxy.url.clone().into());
        })
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut answers, mut slowest) = (Vec::new(), Duration::ZERO);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    answers.push(anonymous(&app).await.status().as_u16());
                    slowest = slowest.max(started.elapsed());
                }
                (answers, slowest)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);

    for client in clients {
        let (answers, slowest) = client.await.expect("client");
        assert!(answers.len() > 10, "{} requests", answers.len());
        assert!(answers.iter().all(|status| *status == 204), "{answers:?}");
        assert!(slowest < Duration::from_millis(500), "a request took {slowest:?}");
    }
    assert!(
        metric(&app, "rate_limit_fallbacks_total{").await > 0,
        "the fallback never engaged"
    );
    assert_eq!(metric(&app, "redis_up ").await, 1, "Redis is in use again");
}

/// A cache of strings on the app's Redis, with the app's settings.
fn strings(app: &TestApp) -> Cache<String> {
    Cache::new(&app.state.redis, &app.state.config.redis, "strings")
}

/// A load that counts its calls and returns `value` after a pause, so concurrent callers
/// overlap.
async fn counted(calls: &AtomicUsize, value: Option<&str>) -> Result<Option<String>, std::convert::Infallible> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(value.map(str::to_owned))
}

#[tokio::test]
async fn concurrent_misses_for_one_key_load_once_and_misses_are_remembered() {
    let app = TestApp::spawn().await;
    let cache = Arc::new(strings(&app));
    let calls = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..50)
        .map(|_| {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            tokio::spawn(async move {
                cache
                    .get_or_load("one", async || counted(&calls, Some("value")).await)
                    .await
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.expect("reader").expect("loaded").as_deref(), Some("value"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "fifty misses, one load");
    let cached = cache
        .get_or_load("one", async || counted(&calls, Some("other")).await)
        .await;
    assert_eq!(cached.expect("cached").as_deref(), Some("value"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "served from Redis");

    for _ in 0..3 {
        let missing = cache.get_or_load("missing", async || counted(&calls, None).await).await;
        assert_eq!(missing.expect("a miss"), None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a miss is remembered");
    assert!(metric(&app, "cache_requests_total{cache=\"strings\",outcome=\"hit\"}").await >= 3);
}

#[tokio::test]
async fn a_read_that_loaded_before_a_write_does_not_put_the_old_value_back() {
    let app = TestApp::spawn().await;
    let cache = Arc::new(strings(&app));
    let (loaded, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));

    let reader = {
        let (cache, loaded, release) = (Arc::clone(&cache), Arc::clone(&loaded), Arc::clone(&release));
        tokio::spawn(async move {
            cache
                .get_or_load("row", async || {
                    // The old row is read, then the write commits and invalidates.
                    loaded.notify_one();
                    release.notified().await;
                    Ok::<_, std::convert::Infallible>(Some("old".to_owned()))
                })
                .await
        })
    };
    loaded.notified().await;
    cache.invalidate("row").await;
    release.notify_one();
    assert_eq!(reader.await.expect("reader").expect("loaded").as_deref(), Some("old"));

    let calls = AtomicUsize::new(0);
    let now = cache
        .get_or_load("row", async || counted(&calls, Some("new")).await)
        .await;
    assert_eq!(
        now.expect("loaded").as_deref(),
        Some("new"),
        "the stale fill was refused"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_value_over_the_size_cap_is_not_stored() {
    let app = TestApp::spawn().await;
    let cache = strings(&app);
    let calls = AtomicUsize::new(0);
    let large = "x".repeat(MAX_VALUE_BYTES);
    for _ in 0..2 {
        let value = cache
            .get_or_load("large", async || counted(&calls, Some(&large)).await)
            .await;
        assert_eq!(value.expect("loaded").map(|value| value.len()), Some(large.len()));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "loaded both times");
}

#[tokio::test]
async fn a_cache_switched_off_loads_every_time() {
    let app = TestApp::spawn_with(|config| config.redis.cache = false, axum::Router::new()).await;
    let cache = strings(&app);
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let value = cache
            .get_or_load("key", async || counted(&calls, Some("value")).await)
            .await;
        assert_eq!(value.expect("loaded").as_deref(), Some("value"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_cache_is_skipped_while_redis_is_cut_off_and_used_again_after() {
    let redis = TestRedis::new().await;
    let proxy = Proxy::to(&redis.url).await;
    let app = TestApp::spawn_with(
        |config| config.redis.url = Some(proxy.url.clone().into()),
        axum::Router::new(),
    )
    .await;
    let cache = strings(&app);
    let calls = AtomicUsize::new(0);
    proxy.cut();

    for _ in 0..2 {
        let started = Instant::now();
        let value = cache
            .get_or_load("key", async || counted(&calls, Some("value")).await)
            .await;
        assert_eq!(value.expect("loaded").as_deref(), Some("value"));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no cache while Redis is cut off");
    // A write while Redis is away is invalidated once it is back.
    cache.invalidate("key").await;
    assert!(metric(&app, "cache_requests_total{cache=\"strings\",outcome=\"error\"}").await >= 2);

    proxy.restore();
    // Filled again, and served from Redis (once the invalidation left over went through).
    let started = Instant::now();
    loop {
        let before = calls.load(Ordering::SeqCst);
        let _ = cache
            .get_or_load("key", async || counted(&calls, Some("value")).await)
            .await;
        if calls.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the cache never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(calls.load(Ordering::SeqCst) >= 3, "loaded again after Redis came back");
}

#[tokio::test]
async fn a_message_published_by_one_replica_reaches_another_also_after_a_reconnect() {
    let redis = TestRedis::new().await;
    let proxy = Proxy::to(&redis.url).await;
    let listener = TestApp::spawn_with(
        |config| config.redis.url = Some(proxy.url.clone().into()),
        axum::Router::new(),
    )
    .await;
    let mut publisher_config = listener.state.config.redis.clone();
    publisher_config.url = Some(redis.url.clone().into());
    let publisher =
        service::redis::Redis::new(&publisher_config, service::redis::RedisMetrics::default()).expect("settings");
    let mut messages = listener.state.redis.subscribe("news").await.expect("subscribed");

    assert_eq!(publisher.publish("news", b"first").await, Ok(1));
    let received = tokio::time::timeout(Duration::from_secs(2), messages.recv()).await;
    assert_eq!(&*received.expect("in time").expect("a message"), b"first");

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.restore();
    // Resubscribed by the connection manager once the listener reconnects (a command
    // triggers the reconnection).
    let started = Instant::now();
    loop {
        let _ = listener.state.redis.ping().await;
        if publisher.publish("news", b"second").await == Ok(1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never resubscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = tokio::time::timeout(Duration::from_secs(2), messages.recv()).await;
    assert_eq!(&*received.expect("in time").expect("a message"), b"second");
}
{%- if example %}

#[tokio::test]
async fn a_cached_project_is_fresh_on_every_replica_after_a_write_and_private_to_its_owner() {
    let mut first = TestApp::spawn().await;
    let mut second = first.replica_with(axum::Router::new()).await;
    let owner = first.user("owner@example.com", "user").await;
    let other = first.user("other@example.com", "user").await;
    first.act_as(&owner);
    second.act_as(&owner);
    let created = json(
        first
            .post("/api/v1/projects", &serde_json::json!({"name": "Cached"}))
            .await,
    )
    .await;
    let path = format!("/api/v1/projects/{}", created["id"].as_str().expect("id"));

    assert_eq!(json(second.get(&path).await).await["name"], "Cached");
    let hits = metric(&second, "cache_requests_total{cache=\"projects\",outcome=\"hit\"}").await;
    assert_eq!(json(second.get(&path).await).await["name"], "Cached");
    assert_eq!(
        metric(&second, "cache_requests_total{cache=\"projects\",outcome=\"hit\"}").await,
        hits + 1,
        "the second read came from the cache"
    );

    let etag = format!("\"{}\"", created["version"]);
    let renamed = first
        .patch(&path, Some(&etag), &serde_json::json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status(), 200);
    let read = json(second.get(&path).await).await;
    assert_eq!(read["name"], "Renamed", "no replica serves the old value after a write");

    second.act_as(&other);
    let missing = second.get(&format!("/api/v1/projects/{}", uuid::Uuid::new_v4())).await;
    let missing = (missing.status(), json(missing).await["detail"].clone());
    let foreign = second.get(&path).await;
    assert_eq!(
        (foreign.status(), json(foreign).await["detail"].clone()),
        missing,
        "another account's project is not found"
    );

    second.act_as(&owner);
    assert_eq!(first.delete(&path, None).await.status(), 204);
    assert_eq!(second.get(&path).await.status(), 404, "deleted on every replica");
}
{%- endif %}

#[tokio::test]
async fn a_refused_password_is_logged_at_start_without_it_and_the_service_serves_degraded() {
    let redis = TestRedis::new().await;
    let database = crate::database::TestDatabase::migrated().await;
    let (scheme, _, address, _) = parts(&redis.url);
    let port = crate::process::free_port();
    let child = crate::process::running("serve", &database.url, port)
        // A user Redis does not know: refused whether or not the server wants a password.
        .env("REDIS_URL", format!("{scheme}://nobody:hunter2-secret@{address}"))
        .spawn()
        .expect("start the service");
    crate::process::wait_until_live(port).await;

    let ready = crate::helpers::http_client()
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(ready.status(), 200);
    assert_eq!(json(ready).await["status"], "degraded");
    let (code, lines) = crate::process::terminate(child).await;
    assert_eq!(code, Some(0));
    let text = lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("cannot connect to Redis"), "{text}");
    assert!(!text.contains("hunter2-secret"), "the password reached the log: {text}");
}

#[test]
fn the_service_refuses_to_start_without_a_redis_url() {
    use crate::process::RunToExit;
    let output = crate::process::binary(&["serve"])
        .env_remove("REDIS_URL")
        .env("DATABASE_URL", "postgres://127.0.0.1:9/unused")
        .run_to_exit();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("REDIS_URL is not set"), "{stderr}");
}
