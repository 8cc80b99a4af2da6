//! Access tokens: short-lived JWTs (RFC 9068 profile) signed with Ed25519. Verification pins
//! the algorithm, the token type, the key id, the issuer and the audience, and requires every
//! time claim, so that a token of another kind, another service or another key is refused.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::Keys;
use crate::config::{AuthConfig, Environment};

/// The `typ` header of access tokens (RFC 9068): a refresh token or an ID token from the same
/// issuer carries another type and is refused.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Clock skew tolerated between this service and the issuer, for `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token, for audit trails.
    pub jti: Uuid,
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

/// Issues and verifies access tokens.
#[derive(Debug)]
pub struct Tokens {
    keys: Keys,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    validation: Validation,
}

impl Tokens {
    pub fn new(config: &AuthConfig, environment: Environment) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            keys: Keys::load(config, environment)?,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: config.access_token_ttl(),
            validation,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// A new access token for `user`, valid from now for the configured lifetime.
    pub fn issue_access(&self, user: Uuid) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(self.access_ttl.as_secs())?;
        let claims = AccessClaims {
            sub: user,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            jti: Uuid::new_v4(),
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(kid.to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, key)?)
    }

    /// The claims of `token` if it is an access token of ours, signed, current, and for us.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken::Malformed)?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(InvalidToken::WrongType);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.verifying(kid))
            .ok_or(InvalidToken::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
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
                    // Including a missing claim: every claim is a required field.
                    _ => InvalidToken::Malformed,
                }
            })
    }
}
