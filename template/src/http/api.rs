//! Route groups and the OpenAPI document's root. Each resource module contributes an
//! `OpenApiRouter`, so a route and its documentation are declared in one place.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use super::error::{FieldError, Problem};
use super::{auth, health, jwks, metrics, users};
{%- if example %}
use super::{projects, tasks};
{%- endif %}
use crate::AppState;

/// Title, version and description come from Cargo.toml.
#[derive(OpenApi)]
#[openapi(components(schemas(Problem, FieldError)), modifiers(&BearerToken))]
struct ApiDoc;

/// The `bearer` security scheme that protected routes name: an access token from
/// `/api/v1/auth/login`, which Swagger UI's Authorize button takes.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

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

/// Health, metrics and the token keys: cheap routes that must answer even while the API is
/// saturated.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(document())
        .merge(health::router())
        .merge(metrics::router())
        .merge(jwks::router())
}

/// The versioned API.
pub fn v1() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::default().merge(auth::router()).merge(users::router());
{%- if example %}
    let v1 = v1.merge(projects::router()).merge(tasks::router());
{%- endif %}
    OpenApiRouter::default().nest("/api/v1", v1)
}
