//! Access tokens of this service: issued for an account with its permissions, signed with
//! the current key, and verified against every key still accepted (see `claims` for the
//! checks).

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthConfig;
use super::claims::{self, ACCESS_TOKEN_TYPE, AccessClaims, InvalidToken};
use super::keys::Keys;
use super::verified::VerifiedTokens;
use crate::config::Environment;

/// Issues and verifies access tokens.
#[derive(Debug)]
pub struct Tokens {
    keys: Keys,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    validation: Validation,
    verified: VerifiedTokens,
}

impl Tokens {
    pub fn new(config: &AuthConfig, environment: Environment) -> anyhow::Result<Self> {
        Ok(Self {
            keys: Keys::load(config, environment)?,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: config.access_token_ttl(),
            validation: claims::validation(&config.issuer, &config.audience),
            verified: VerifiedTokens::default(),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// A new access token for `user` in `session` with `permissions`, valid from now for the
    /// configured lifetime.
    pub fn issue_access(&self, user: Uuid, session: Uuid, permissions: &[String]) -> anyhow::Result<String> {
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
            sid: Some(session),
            scope: permissions.join(" "),
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(kid.to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, key)?)
    }

    /// The claims of `token` if it is an access token of ours, signed, current, and for us;
    /// a token seen before is not checked again (see `verified`). Async like the verifier's,
    /// which may fetch the issuer's keys, so that callers read the same in every shape.
    pub async fn verify_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let check = async {
            let kid = claims::key_id(token)?;
            let key = self.keys.verifying(&kid).ok_or(InvalidToken::UnknownKey)?;
            claims::decode(token, key, &self.validation)
        };
        self.verified.get_or_check(token, check).await
    }
}
