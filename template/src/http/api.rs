//! Route groups and the OpenAPI document's root. Each resource module contributes an
//! `OpenApiRouter`, so a route and its documentation are declared in one place.
{%- if auth != "none" %}

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
{%- else %}

use utoipa::OpenApi;
{%- endif %}
use utoipa_axum::router::OpenApiRouter;

use super::error::{FieldError, Problem};
{%- if auth == "issuer" %}
use super::{auth, health, jwks, metrics, users};
{%- elsif auth == "verifier" %}
use super::{health, me, metrics};
{%- else %}
use super::{health, metrics};
{%- endif %}
{%- if example %}
use super::{projects, tasks};
{%- endif %}
use crate::AppState;

/// Title, version and description come from Cargo.toml.
#[derive(OpenApi)]
{%- if auth != "none" %}
#[openapi(components(schemas(Problem, FieldError)), modifiers(&BearerToken))]
{%- else %}
#[openapi(components(schemas(Problem, FieldError)))]
{%- endif %}
struct ApiDoc;
{%- if auth != "none" %}

/// The `bearer` security scheme that protected routes name: an access token from
{%- if auth == "issuer" %}
/// `/api/v1/auth/login`, which Swagger UI's Authorize button takes.
{%- else %}
/// the issuer, which Swagger UI's Authorize button takes.
{%- endif %}
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
{%- endif %}

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

/// Health, metrics{%- if auth == "issuer" %} and the token keys{%- endif %}: cheap routes that must answer even while the
/// API is saturated.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(document())
        .merge(health::router())
        .merge(metrics::router())
{%- if auth == "issuer" %}
        .merge(jwks::router())
{%- endif %}
}

/// The versioned API.
pub fn v1() -> OpenApiRouter<AppState> {
{%- if auth == "issuer" %}
    let v1 = OpenApiRouter::default().merge(auth::router()).merge(users::router());
{%- elsif auth == "verifier" %}
    let v1 = OpenApiRouter::default().merge(me::router());
{%- else %}
    let v1 = OpenApiRouter::default();
{%- endif %}
{%- if example %}
    let v1 = v1.merge(projects::router()).merge(tasks::router());
{%- endif %}
    OpenApiRouter::default().nest("/api/v1", v1)
}
