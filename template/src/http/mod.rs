//! The HTTP interface, and the only module that knows about axum: routes, request and response
//! types, extractors, error rendering, middleware and the server loop.

mod admission;
mod api;
pub mod client_ip;
mod compression;
mod docs;
pub mod error;
pub mod extract;
mod guard;
mod health;
mod metrics;
pub mod middleware;
pub mod pagination;
pub mod server;
pub mod throttle;
pub mod validation;
{%- if auth != "none" %}

pub mod authn;
{%- endif %}
{%- if auth == "issuer" %}

pub mod auth;
mod jwks;
pub mod users;
{%- endif %}
{%- if auth == "verifier" %}

mod me;
{%- endif %}
{%- if jobs and auth != "none" %}

pub mod jobs;
{%- endif %}
{%- if example %}

pub mod projects;
pub mod tasks;
{%- endif %}
{%- if jobs and example %}
pub mod webhooks;
{%- endif %}
{%- if graphql %}

pub mod graphql;
{%- endif %}

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::OpenApi;

use crate::AppState;

/// The whole service: every route behind the middleware stack, ready to serve or to drive
/// from tests.
pub fn app(state: AppState) -> Router {
{%- if realtime %}
    // Beside the middleware, not behind it: a WebSocket handshake needs none of it, and
    // answers at once, so no request timeout or concurrency slot should hold it.
    let realtime = crate::realtime::router(&state);
    assemble(api_routes(), state).merge(realtime)
{%- else %}
    assemble(api_routes(), state)
{%- endif %}
}

/// The API's own routes (under `/api/v1`{% if graphql %}, and `/graphql`{% endif %}), without middleware.
pub fn api_routes() -> Router<AppState> {
{%- if graphql %}
    api::v1().split_for_parts().0.merge(graphql::router())
{%- else %}
    api::v1().split_for_parts().0
{%- endif %}
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> OpenApi {
    let mut document = api::operations().into_openapi();
    document.merge(api::v1().into_openapi());
    utoipa::Modify::modify(&error::ProblemBodies, &mut document);
    utoipa::Modify::modify(&error::SharedResponses, &mut document);
    document
}

/// Puts `api` behind the request limits and everything behind the shared middleware. Health,
/// metrics and docs bypass the limits, so probes still answer while the API sheds load.
pub fn assemble(api: Router<AppState>, state: AppState) -> Router {
    let (mut operations, _) = api::operations().split_for_parts();
    if state.config.server.docs {
        operations = operations.merge(docs::router(openapi()));
    }
    let operations = operations.fallback(|| async { StatusCode::NOT_FOUND });
    layered(operations, &state, false)
        .merge(layered(api, &state, true))
        .with_state(state)
}

/// `router` behind the layers every route runs through, outermost first, and behind the API's
/// admission control too when `admitted` (see `admission`). One `layer` call for the whole
/// stack, because axum boxes each route once per call, and every request pays for each box.
fn layered(router: Router<AppState>, state: &AppState, admitted: bool) -> Router<AppState> {
    let server = &state.config.server;
    let cors = (server.cors_origins().next().is_some()).then(|| cors(server.cors_origins()));
    let stack = ServiceBuilder::new()
        .layer(middleware::ObserveLayer(state.clone()))
        // Outside the panic catcher, so that a 500 still carries the CORS headers a browser
        // needs to show it.
        .option_layer(cors)
        .layer(compression::CompressionLayer)
        .layer(guard::GuardLayer {
            body_limit: server.body_limit_bytes,
        })
        // The guard limits every body, so axum's own default limit steps aside.
        .layer(DefaultBodyLimit::disable())
        .option_layer(admitted.then(|| admission::AdmissionLayer::new(state)));
    router.layer(stack)
}

fn cors<'a>(origins: impl Iterator<Item = &'a str>) -> CorsLayer {
    // Origins were checked when the configuration loaded.
    let origins: Vec<HeaderValue> = origins
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        // Every method a route answers; a test holds this to the OpenAPI document.
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            middleware::REQUEST_ID,
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            middleware::REQUEST_ID,
        ])
        .max_age(Duration::from_mins(10))
}
