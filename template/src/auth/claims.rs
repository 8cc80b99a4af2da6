//! What an access token says and how it is checked, whoever holds the keys: the RFC 9068
//! profile (type `at+jwt`), EdDSA only, the key named by `kid`, and issuer, audience and every
//! time claim required, so that a token of another kind, service or key is refused.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `typ` header of access tokens (RFC 9068): a refresh token or an ID token from the same
/// issuer carries another type and is refused.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Clock skew tolerated between this service and the issuer, for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The account.
    pub sub: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token, for audit trails.
    pub jti: Uuid,
    /// The session the token belongs to (its refresh-token family): the issuer refuses the
    /// token once that session ends, at logout, a password change or disabling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// The account's permissions when the token was issued, space-separated (RFC 9068), for
    /// services that check tokens without the issuer's database.
    #[serde(default)]
    pub scope: String,
}

impl AccessClaims {
    pub fn permissions(&self) -> Vec<String> {
        self.scope.split_whitespace().map(str::to_owned).collect()
    }
}

/// Why a token was refused. Callers answer every kind the same way; the kind is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    #[error("malformed token")]
    Malformed,
    #[error("token is not an access token")]
    WrongType,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token expired")]
    Expired,
    #[error("token rejected: {0}")]
    Rejected(&'static str),
}

/// The checks every access token must pass, for tokens of `issuer` meant for `audience`.
pub fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

/// The `kid` of `token`'s header, once the header says it is an access token.
pub fn key_id(token: &str) -> Result<String, InvalidToken> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken::Malformed)?;
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(InvalidToken::WrongType);
    }
    header.kid.ok_or(InvalidToken::UnknownKey)
}

/// The claims of `token` if `key` signed it and it passes `validation`.
pub fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<AccessClaims, InvalidToken> {
    jsonwebtoken::decode::<AccessClaims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            match err.kind() {
                ErrorKind::ExpiredSignature => InvalidToken::Expired,
                ErrorKind::InvalidSignature => InvalidToken::Rejected("bad signature"),
                ErrorKind::InvalidAlgorithm => InvalidToken::Rejected("algorithm not allowed"),
                ErrorKind::InvalidIssuer => InvalidToken::Rejected("wrong issuer"),
                ErrorKind::InvalidAudience => InvalidToken::Rejected("wrong audience"),
                ErrorKind::ImmatureSignature => InvalidToken::Rejected("not yet valid"),
                // Including a missing claim: every claim but `scope` is a required field.
                _ => InvalidToken::Malformed,
            }
        })
}
