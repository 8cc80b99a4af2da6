//! Route groups and the OpenAPI document's root. Each resource module contributes an
//! `OpenApiRouter`, so a route and its documentation are declared in one place.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::error::{FieldError, Problem};
use super::{health, metrics};
{%- if example %}
use super::{projects, tasks};
{%- endif %}
use crate::AppState;

/// Title, version and description come from Cargo.toml.
#[derive(OpenApi)]
#[openapi(components(schemas(Problem, FieldError)))]
struct ApiDoc;

fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    // A service without a license in Cargo.toml would otherwise declare an empty, invalid one.
    if document
        .info
        .license
        .as_ref()
        .is_some_and(|license| license.name.is_empty())
    {
        document.info.license = None;
    }
    document
}

/// Health and metrics: cheap routes that must answer even while the API is saturated.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(document())
        .merge(health::router())
        .merge(metrics::router())
}

/// The versioned API.
pub fn v1() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::default();
{%- if example %}
    let v1 = v1.merge(projects::router()).merge(tasks::router());
{%- endif %}
    OpenApiRouter::default().nest("/api/v1", v1)
}
