//! The OpenAPI document at `/openapi.json` and Swagger UI at `/docs`, served from assets
//! compiled into the binary: nothing is fetched from a CDN.

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::AppState;

/// Swagger UI needs scripts, styles and inline images from its own origin; the API's
/// `default-src 'none'` policy would blank the page.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                        script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub fn router(openapi: OpenApi) -> Router<AppState> {
    let ui = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
        // The default validator badge would call validator.swagger.io.
        .config(Config::default().validator_url("none"));
    Router::from(ui).layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    ))
}
