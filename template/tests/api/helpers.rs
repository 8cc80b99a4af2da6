//! `TestApp`: the real service (router, middleware, hyper server) on a free port, backed by
//! its own database, plus a client and shortcuts for the requests tests make.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodRouter, get};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use service::config::{Config, DatabaseConfig, Environment, LogConfig, RateLimitConfig, ServerConfig, TelemetryConfig};
use service::db::Database;
use service::http::server;
use service::{AppState, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, SemaphorePermit, oneshot};
use tokio::task::JoinHandle;

use crate::database::TestDatabase;

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Shared with the app's replicas.
    pub database: Arc<TestDatabase>,
{%- if auth == "verifier" %}
    /// Signs the tokens and serves the keys this service trusts.
    pub issuer: Arc<crate::issuer::TestIssuer>,
{%- endif %}
{%- if redis %}
    /// The Redis server and the key prefix of this app and its replicas.
    pub redis: Arc<crate::redis::TestRedis>,
{%- endif %}
    /// Sent with every request, such as the access token that `act_as` sets.
    pub headers: HeaderMap,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// A client for the service under test: straight to it, whatever proxy the environment names.
pub fn http_client() -> reqwest::ClientBuilder {
    service::outbound::install_tls();
    reqwest::Client::builder().no_proxy()
}

/// Settings for tests: the defaults, bound to loopback.
pub fn test_config(database_url: &str) -> Config {
    Config {
        environment: Environment::Development,
        server: ServerConfig {
            host: [127, 0, 0, 1].into(),
            ..ServerConfig::default()
        },
        database: DatabaseConfig {
            url: Some(database_url.into()),
            ..DatabaseConfig::default()
        },
        log: LogConfig::default(),
        telemetry: TelemetryConfig::default(),
{%- if auth != "none" %}
        auth: crate::callers::development_auth(),
{%- endif %}
        // Off, so that tests may send many requests; `rate_limits.rs` turns them on.
        rate_limit: RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        },
{%- if jobs %}
        jobs: service::jobs::JobsConfig::default(),
{%- endif %}
{%- if jobs and example %}
        // The production guard: a test that delivers to itself allows private addresses.
        webhooks: service::webhooks::WebhooksConfig::default(),
{%- endif %}
{%- if redis %}
        // Replaced by `TestApp::spawn_with` with a test's own server and key prefix.
        redis: service::redis::RedisConfig::default(),
{%- endif %}
{%- if realtime %}
        realtime: service::realtime::RealtimeConfig::default(),
{%- endif %}
{%- if graphql %}
        graphql: service::http::graphql::GraphqlConfig::default(),
{%- endif %}
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, Router::new()).await
    }

    /// Spawns the service with adjusted settings and extra API routes, which run behind the
    /// same limits and middleware as the real ones (for probing timeouts, panics and limits).
    pub async fn spawn_with(configure: impl FnOnce(&mut Config), extra_routes: Router<AppState>) -> Self {
        let database = Arc::new(TestDatabase::migrated().await);
        let mut config = test_config(&database.url);
{%- if auth == "verifier" %}
        let issuer = Arc::new(crate::issuer::TestIssuer::start().await);
        config.auth = issuer.config();
{%- endif %}
{%- if redis %}
        let redis = Arc::new(crate::redis::TestRedis::new().await);
        config.redis = redis.config();
{%- endif %}
        configure(&mut config);
        Self::start(config, database, extra_routes{% if auth == "verifier" %}, issuer{% endif %}{% if redis %}, redis{% endif %}).await
    }
{%- if auth == "issuer" or realtime %}

    /// Another instance of the service on this one's database and settings, as another
    /// replica in the same deployment would be.
    pub async fn replica(&self) -> Self {
        self.replica_with(Router::new()).await
    }
{%- endif %}
{%- if auth == "issuer" or redis or realtime %}

    /// A replica with extra API routes, as [`TestApp::spawn_with`] takes them.
    pub async fn replica_with(&self, extra_routes: Router<AppState>) -> Self {
{%- if auth == "verifier" or redis %}
        Self::start(
            (*self.state.config).clone(),
            Arc::clone(&self.database),
            extra_routes,
{%- if auth == "verifier" %}
            Arc::clone(&self.issuer),
{%- endif %}
{%- if redis %}
            Arc::clone(&self.redis),
{%- endif %}
        )
        .await
{%- else %}
        Self::start((*self.state.config).clone(), Arc::clone(&self.database), extra_routes).await
{%- endif %}
    }
{%- endif %}

{%- if auth == "verifier" or redis %}
    async fn start(
        config: Config,
        database: Arc<TestDatabase>,
        extra_routes: Router<AppState>,
{%- if auth == "verifier" %}
        issuer: Arc<crate::issuer::TestIssuer>,
{%- endif %}
{%- if redis %}
        redis: Arc<crate::redis::TestRedis>,
{%- endif %}
    ) -> Self {
{%- else %}
    async fn start(config: Config, database: Arc<TestDatabase>, extra_routes: Router<AppState>) -> Self {
{%- endif %}
        let db = Database::connect(&config.database).expect("valid database settings");
        let state = AppState::new(config, db).expect("valid auth settings");
        let router = http::assemble(http::api_routes().merge(extra_routes), state.clone());
{%- if realtime %}
        let router = router.merge(service::realtime::router(&state));
{%- endif %}

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            let lifecycle = server_state.lifecycle.clone();
            let signal = async move {
                let _ = shutdown_signal.await;
                lifecycle.start_draining();
            };
            server::serve(listener, router, &server_state, signal).await;
{%- if realtime %}
            server_state.realtime.close().await;
{%- endif %}
        });
        let client = http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Self {
            address,
            client,
            state,
            database,
{%- if auth == "verifier" %}
            issuer,
{%- endif %}
{%- if redis %}
            redis,
{%- endif %}
            headers: HeaderMap::new(),
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .headers(self.headers.clone())
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("request failed")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    #[allow(dead_code, reason = "resource tests use it; a service without resources does not")]
    pub async fn patch(&self, path: &str, if_match: Option<&str>, body: &Value) -> Response {
        let mut request = self.request(Method::PATCH, path).json(body);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.expect("request failed")
    }

    #[allow(dead_code, reason = "resource tests use it; a service without resources does not")]
    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> Response {
        let mut request = self.request(Method::DELETE, path);
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        request.send().await.expect("request failed")
    }

    /// Starts a graceful shutdown and waits for the server loop to finish draining.
    pub async fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task panicked");
        }
    }

    /// Sends the shutdown signal without waiting for the drain.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.take().expect("server already shut down")
    }
}

/// Follows `next_cursor` from `first` (a list path with a query string) to the last page and
/// returns every item, checking that no page exceeds `limit` items.
#[allow(dead_code, reason = "resource tests use it; a service without resources does not")]
pub async fn all_pages(app: &TestApp, first: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page = json(app.get(&path).await).await;
        let page_items = page["items"].as_array().expect("items");
        assert!(page_items.len() <= limit, "a page larger than {limit}: {page}");
        items.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return items,
        }
    }
}

/// The value of the metric series that starts with `series`, 0 when there is none yet.
#[allow(dead_code, reason = "tests of optional parts use it")]
pub async fn metric(app: &TestApp, series: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Reads a response as JSON, with the status and body in the panic message when it is not.
pub async fn json(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("status {status}: body is not JSON ({err}): {text}"))
}

/// Asserts an RFC 9457 problem response with `status` and returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body = json(response).await;
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["type"], "about:blank", "{body}");
    assert!(body["title"].as_str().is_some_and(|title| !title.is_empty()), "{body}");
    body
}

/// Sends raw bytes on a new connection and returns everything the server writes until it
/// closes the connection (or five seconds pass).
pub async fn raw_exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Parks requests in a probe handler until the test releases them, and tells the test when
/// one has arrived, so tests order events without sleeping.
#[derive(Clone)]
pub struct Gate {
    entered: Arc<Notify>,
    open: Arc<Semaphore>,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            entered: Arc::new(Notify::new()),
            open: Arc::new(Semaphore::new(0)),
        }
    }

    /// A GET and POST route whose requests wait at the gate, then answer 200.
    pub fn route(&self) -> MethodRouter<AppState> {
        let gate = self.clone();
        let handler = move || {
            let gate = gate.clone();
            async move {
                gate.pass().await;
                "released"
            }
        };
        get(handler.clone()).post(handler)
    }

    /// Says a request has arrived, then waits until the gate opens.
    pub async fn pass(&self) {
        self.entered.notify_one();
        let _ = self.open.acquire().await.map(SemaphorePermit::forget);
    }

    /// Waits until a request has reached the handler. A request that never arrives (answered
    /// early by a layer in front) fails the test here rather than hanging it.
    pub async fn entered(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.entered.notified())
            .await
            .expect("no request reached the gate within 10 s");
    }

    /// Lets every waiting and future request through.
    pub fn open(&self) {
        self.open.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}
{%- if jobs %}

/// Waits up to five seconds for `check` to hold: for what a worker does in the background.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
{%- endif %}
