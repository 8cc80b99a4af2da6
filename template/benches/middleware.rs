//! What the middleware stack costs every request, without the network: the liveness probe
//! through the whole service (`http::app`), next to the same request to a bare axum route in
//! the same run. The gap between the two is the stack's own cost.

use std::hint::black_box;
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use figment::Figment;
use figment::providers::{Format, Toml};
use service::config::Config;
use service::db::Database;
use service::{AppState, http};
use tower::ServiceExt;

/// The development settings, with a database{% if redis %} and a Redis{% endif %} that liveness never reaches.
fn service() -> Router {
    let config: Config = Figment::from(Toml::file_exact(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/development.toml"
    )))
    .merge(("database.url", "postgres://127.0.0.1:1/unused"))
{%- if redis %}
    .merge(("redis.url", "redis://127.0.0.1:1"))
{%- endif %}
    .extract()
    .expect("the development settings");
    let db = Database::connect(&config.database).expect("database settings");
    http::app(AppState::new(config, db).expect("state"))
}

/// A request as a load generator sends it, with the peer address the server loop adds.
fn liveness() -> Request<Body> {
    let mut request = Request::get("/health/live")
        .header("host", "127.0.0.1:8080")
        .body(Body::empty())
        .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    request
}

fn stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let bare = Router::new().route("/health/live", get(|| async { "ok" }));
    for (name, router) in [("a bare axum route", bare), ("the whole middleware stack", service())] {
        c.bench_function(&format!("GET /health/live through {name}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = router.clone().oneshot(liveness()).await.expect("infallible");
                    black_box(to_bytes(response.into_body(), usize::MAX).await.expect("body"))
                })
            });
        });
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
