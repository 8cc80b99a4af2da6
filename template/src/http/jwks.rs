//! `/.well-known/jwks.json`: the public keys that verify this service's access tokens
//! (RFC 7517), so that other services can check the tokens without calling this one.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::AlgorithmParameters;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(jwks))
}

/// A JSON Web Key Set.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(rename = "use")]
    pub use_: &'static str,
    /// The key id: its RFC 7638 thumbprint, as in the `kid` header of tokens it signed.
    pub kid: String,
    /// The public key, base64url.
    pub x: String,
}

/// Public keys of the access tokens
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", operation_id = "jwks",
    responses((status = 200, description = "The keys that verify access tokens", body = KeySet)))]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keys = state
        .auth
        .tokens
        .keys()
        .jwks()
        .keys
        .iter()
        .filter_map(|jwk| match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(params) => Some(PublicKey {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                use_: "sig",
                kid: jwk.common.key_id.clone()?,
                x: params.x.clone(),
            }),
            _ => None,
        })
        .collect();
    // Verifiers may cache the set briefly; a rotation adds the new key ahead of its use.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(KeySet { keys }),
    )
}
