//! Access tokens issued by another service, checked with the same rules as the issuer's own
//! (see `claims`) against the keys it publishes as a JWKS. The keys are cached. A stale cache or
//! an unknown `kid` (the issuer rotated its key) triggers a refetch, at most one per
//! `jwks_min_refetch_secs`, so tokens with made-up key ids cannot make this service hammer the
//! issuer; and while the issuer is down, the cached keys keep working.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use super::AuthConfig;
use super::claims::{self, AccessClaims, InvalidToken};
use super::verified::VerifiedTokens;
use crate::config::Environment;

/// Largest key set accepted; a real one is a few hundred bytes.
const MAX_KEY_SET_BYTES: usize = 64 * 1024;

/// Verifies access tokens with the issuer's published keys.
pub struct Tokens {
    keys: RemoteKeys,
    validation: Validation,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("jwks_url", &self.keys.url)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Fetches nothing yet: the first token fetches the keys, so this service starts, and
    /// answers its probes, whether or not the issuer is up.
    pub fn new(config: &AuthConfig, environment: Environment) -> anyhow::Result<Self> {
        if config.issuer.trim().is_empty() {
            bail!("APP_AUTH__ISSUER is not set: the `iss` of the access tokens to accept");
        }
        let url = &config.jwks_url;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("APP_AUTH__JWKS_URL must be the http(s) URL of the issuer's key set, not {url:?}");
        }
        crate::outbound::install_tls();
        if environment == Environment::Production && url.starts_with("http://") && !config.jwks_allow_http {
            bail!(
                "APP_AUTH__JWKS_URL is plain HTTP, where anyone on the path could swap the keys; use https, \
                 or set APP_AUTH__JWKS_ALLOW_HTTP=true for traffic that stays inside a trusted network"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(config.jwks_timeout())
            // The key set comes from the configured URL only.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot set up the HTTP client for the issuer's keys")?;
        Ok(Self {
            keys: RemoteKeys {
                url: config.jwks_url.clone(),
                client,
                max_age: config.jwks_max_age(),
                min_refetch: config.jwks_min_refetch(),
                cache: RwLock::default(),
                fetching: Mutex::new(()),
                fetches: AtomicU64::new(0),
            },
            validation: claims::validation(&config.issuer, &config.audience),
            verified: VerifiedTokens::default(),
        })
    }

    /// The claims of `token` if the issuer signed it, it is current, and it is for us; a
    /// token seen before is not checked again (see `verified`), so one signed with a key the
    /// issuer has since withdrawn keeps working until it expires, as it would elsewhere.
    pub async fn verify_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let check = async {
            let kid = claims::key_id(token)?;
            let key = self.keys.get(&kid).await.ok_or(InvalidToken::UnknownKey)?;
            claims::decode(token, &key, &self.validation)
        };
        self.verified.get_or_check(token, check).await
    }

    /// How often the key set was requested from the issuer, successfully or not.
    pub fn fetches(&self) -> u64 {
        self.keys.fetches.load(Ordering::Relaxed)
    }
}

struct RemoteKeys {
    url: String,
    client: reqwest::Client,
    max_age: Duration,
    min_refetch: Duration,
    cache: RwLock<Cache>,
    /// One fetch at a time: requests that find the cache wanting wait for it, then read.
    fetching: Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

impl Cache {
    /// The key named `kid` when the set is young enough to trust without asking again.
    fn fresh(&self, kid: &str, max_age: Duration) -> Option<DecodingKey> {
        let young = self.fetched_at.is_some_and(|at| at.elapsed() < max_age);
        young.then(|| self.keys.get(kid).cloned()).flatten()
    }

    fn may_fetch(&self, min_refetch: Duration) -> bool {
        self.attempted_at.is_none_or(|at| at.elapsed() >= min_refetch)
    }
}

/// What the cache says about a key.
enum Lookup {
    Found(DecodingKey),
    /// A fetch is due, and allowed.
    Fetch,
    /// The cache must do, and lacks the key.
    Missing,
}

impl RemoteKeys {
    async fn get(&self, kid: &str) -> Option<DecodingKey> {
        let mut fetching = None;
        loop {
            match self.lookup(kid).await {
                Lookup::Found(key) => return Some(key),
                Lookup::Missing => return None,
                // Wait for any fetch under way, then look again: it may have brought the key.
                Lookup::Fetch if fetching.is_none() => fetching = Some(self.fetching.lock().await),
                Lookup::Fetch => {
                    self.refresh().await;
                    return self.cache.read().await.keys.get(kid).cloned();
                }
            }
        }
    }

    async fn lookup(&self, kid: &str) -> Lookup {
        let cache = self.cache.read().await;
        if let Some(key) = cache.fresh(kid, self.max_age) {
            return Lookup::Found(key);
        }
        if cache.may_fetch(self.min_refetch) {
            return Lookup::Fetch;
        }
        cache.keys.get(kid).cloned().map_or(Lookup::Missing, Lookup::Found)
    }

    async fn refresh(&self) {
        let attempted = Instant::now();
        // Recorded before the request, so that a caller that gives up mid-fetch (a client that
        // disconnects) still counts against the refetch interval.
        self.cache.write().await.attempted_at = Some(attempted);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.fetch().await;
        let mut cache = self.cache.write().await;
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched_at = Some(attempted);
            }
            Err(err) => tracing::warn!(
                url = %self.url,
                cached_keys = cache.keys.len(),
                "cannot fetch the issuer's keys, keeping the cached ones: {err:#}"
            ),
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let mut response = self.client.get(&self.url).send().await?.error_for_status()?;
        let too_large = || format!("the key set is larger than {MAX_KEY_SET_BYTES} bytes");
        ensure!(
            response
                .content_length()
                .is_none_or(|length| length <= MAX_KEY_SET_BYTES as u64),
            too_large()
        );
        // Counted chunk by chunk: a body without a declared length stops at the cap, not at
        // its end, which may never come.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            ensure!(body.len() + chunk.len() <= MAX_KEY_SET_BYTES, too_large());
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).context("the key set is not a JWKS")?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((signing_key_id(jwk)?.to_owned(), DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        ensure!(!keys.is_empty(), "the key set has no Ed25519 signing key with a kid");
        Ok(keys)
    }
}

/// The `kid` of an Ed25519 key meant for signatures; other keys are left out.
fn signing_key_id(jwk: &Jwk) -> Option<&str> {
    let for_signing = matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature));
    let ed25519 =
        matches!(&jwk.algorithm, AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519);
    (for_signing && ed25519).then_some(jwk.common.key_id.as_deref()?)
}
