//! Route groups and the OpenAPI document's root. Each resource module contributes an
//! `OpenApiRouter`, so a route and its documentation are declared in one place.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

{% if auth != "none" %}use super::authn::BearerToken;
{% endif %}use super::error::{FieldError, Problem};
use super::{health, metrics};
use crate::AppState;

/// Title, version and description come from Cargo.toml.
#[derive(OpenApi)]
{%- if auth != "none" %}
#[openapi(components(schemas(Problem, FieldError)), modifiers(&BearerToken))]
{%- else %}
#[openapi(components(schemas(Problem, FieldError)))]
{%- endif %}
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

/// Cheap routes that must answer even while the API is saturated: health, metrics, and the
/// keys that verify this service's tokens when it issues them.
pub fn operations() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(document()).merge(health::router());
{%- if auth == "issuer" %}
    let router = router.merge(super::jwks::router());
{%- endif %}
    router.merge(metrics::router())
}

/// The versioned API. Each route writes its path in full, `/api/v1/...`, rather than being
/// nested under the prefix: a nested route rewrites every request's URI on the way in.
pub fn v1() -> OpenApiRouter<AppState> {
{%- if auth == "none" %}
    OpenApiRouter::default()
{%- else %}
    let mut v1 = OpenApiRouter::default();
{%- if auth == "issuer" %}
    v1 = v1.merge(super::auth::router()).merge(super::users::router());
{%- endif %}
{%- if auth == "verifier" %}
    v1 = v1.merge(super::me::router());
{%- endif %}
{%- if example %}
    v1 = v1.merge(super::projects::router()).merge(super::tasks::router());
{%- endif %}
{%- if jobs %}
    v1 = v1.merge(super::jobs::router());
{%- endif %}
{%- if jobs and example %}
    v1 = v1.merge(super::webhooks::router());
{%- endif %}
    v1
{%- endif %}
}
