//! The keys behind access tokens: one Ed25519 private key signs, and its public key plus any
//! retired ones verify, each named by its RFC 7638 thumbprint (the `kid`). Rotation is: add the
//! new private key as the signing key and move the old public key to the verification keys
//! until the last token it signed has expired.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::ExposeSecret;

use super::AuthConfig;
use crate::config::Environment;

/// The `kid` of the development key in `config/development.toml`: everyone has that private
/// key, so production refuses to sign with it or to trust its public half.
pub const DEVELOPMENT_KEY_ID: &str = "cPYee2yD-eKNdI0nUvEahVAuxsqsjznH6SIVh4Vpcj8";

pub struct Keys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl std::fmt::Debug for Keys {
    // Only the key ids: the private key must not reach a log line through a `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("signing_kid", &self.signing_kid)
            .field("verifying", &self.verifying.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The keys of `config`; names the setting to fix when one is missing or unusable.
    pub fn load(config: &AuthConfig, environment: Environment) -> anyhow::Result<Self> {
        let signing_pem = config.signing_key.as_ref().context(
            "APP_AUTH__SIGNING_KEY is not set: an Ed25519 private key in PKCS#8 PEM \
             (openssl genpkey -algorithm ed25519)",
        )?;
        let invalid = || anyhow!("APP_AUTH__SIGNING_KEY is not an Ed25519 private key in PKCS#8 PEM");
        let signing = EncodingKey::from_ed_pem(signing_pem.expose_secret().as_bytes()).map_err(|_| invalid())?;
        let signing_jwk = Jwk::from_encoding_key(&signing, Algorithm::EdDSA)
            .ok()
            .and_then(public_jwk)
            .ok_or_else(invalid)?;
        let signing_kid = key_id(&signing_jwk).to_owned();
        if environment == Environment::Production && signing_kid == DEVELOPMENT_KEY_ID {
            bail!("APP_AUTH__SIGNING_KEY is the development key, which is public; production needs a key of its own");
        }
        let mut jwks = vec![signing_jwk];
        for (index, pem) in pem_blocks(&config.verification_keys).enumerate() {
            let jwk = DecodingKey::from_ed_pem(pem.as_bytes())
                .and_then(|key| Jwk::from_decoding_key(&key, Some(Algorithm::EdDSA)))
                .ok()
                .and_then(public_jwk)
                .with_context(|| {
                    format!(
                        "APP_AUTH__VERIFICATION_KEYS: key {} is not an Ed25519 public key in PEM",
                        index + 1
                    )
                })?;
            // Anyone can sign with the development key, so its public half proves nothing.
            if environment == Environment::Production && key_id(&jwk) == DEVELOPMENT_KEY_ID {
                bail!(
                    "APP_AUTH__VERIFICATION_KEYS: key {} is the development key, which is public; production must not trust it",
                    index + 1
                );
            }
            jwks.push(jwk);
        }
        let verifying = jwks
            .iter()
            .map(|jwk| Ok((key_id(jwk).to_owned(), DecodingKey::from_jwk(jwk)?)))
            .collect::<Result<_, jsonwebtoken::errors::Error>>()?;
        Ok(Self {
            signing_kid,
            signing,
            verifying,
            jwks: JwkSet { keys: jwks },
        })
    }

    /// The key that signs new tokens, and its `kid`.
    pub fn signing(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing)
    }

    /// The public key named `kid`, if it is one of ours.
    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    /// Every public key, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

/// `jwk` with its thumbprint as `kid` and `use: sig`.
fn public_jwk(mut jwk: Jwk) -> Option<Jwk> {
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256).ok()?);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Some(jwk)
}

fn key_id(jwk: &Jwk) -> &str {
    jwk.common.key_id.as_deref().unwrap_or_default()
}

/// The blocks of a bundle of public keys in PEM, in order.
fn pem_blocks(bundle: &str) -> impl Iterator<Item = &str> {
    bundle
        .split_inclusive("-----END PUBLIC KEY-----")
        .map(str::trim)
        .filter(|block| !block.is_empty())
}
