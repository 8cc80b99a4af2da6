//! Access tokens already verified, with their claims. A client sends the same token with
//! every request for minutes, and checking its Ed25519 signature costs tens of microseconds,
//! far more than the rest of a request; so a token is checked once and then found here, by
//! its full text, until it expires. Only the signature and the fixed claims are remembered:
//! whether the account and its session may still act is asked anew (see `Auth::permissions`).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use time::OffsetDateTime;

use super::claims::{AccessClaims, InvalidToken, LEEWAY_SECS};

/// At most this many tokens are remembered, a few hundred bytes each; past it, new ones are
/// checked on every request until old ones expire, so a flood of distinct tokens cannot make
/// the cache grow or churn.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct VerifiedTokens {
    tokens: RwLock<HashMap<Box<str>, AccessClaims>>,
}

impl VerifiedTokens {
    /// The claims of `token`: remembered, or from `check`, which only runs (and is only
    /// remembered when it passes) if the token is not known yet.
    pub async fn get_or_check(
        &self,
        token: &str,
        check: impl Future<Output = Result<AccessClaims, InvalidToken>>,
    ) -> Result<AccessClaims, InvalidToken> {
        if let Some(claims) = self.get(token) {
            return Ok(claims);
        }
        let claims = check.await?;
        self.insert(token, &claims);
        Ok(claims)
    }

    /// The claims of `token` if it was verified before and has not expired since, with the
    /// same leeway as the full check.
    fn get(&self, token: &str) -> Option<AccessClaims> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        tokens.get(token).filter(|claims| is_current(claims, now)).cloned()
    }

    /// Remembers a token that has just passed every check.
    fn insert(&self, token: &str, claims: &AccessClaims) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= CAPACITY {
            tokens.retain(|_, claims| is_current(claims, now));
            if tokens.len() >= CAPACITY {
                return;
            }
        }
        tokens.insert(token.into(), claims.clone());
    }
}

fn is_current(claims: &AccessClaims, now: i64) -> bool {
    now <= claims.exp.saturating_add(LEEWAY_SECS.cast_signed())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: Uuid::now_v7(),
            iss: "issuer".into(),
            aud: "audience".into(),
            iat: 0,
            nbf: 0,
            exp,
            jti: Uuid::now_v7(),
            sid: None,
            scope: String::new(),
        }
    }

    #[test]
    fn a_token_is_found_by_its_whole_text_until_it_expires() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let cache = VerifiedTokens::default();
        let current = claims(now + 60);
        cache.insert("a.b.c", &current);
        cache.insert("a.b.old", &claims(now - LEEWAY_SECS.cast_signed() - 1));

        assert_eq!(cache.get("a.b.c"), Some(current));
        assert_eq!(cache.get("a.b.c2"), None);
        assert_eq!(cache.get("a.b"), None);
        assert_eq!(cache.get("a.b.old"), None, "expired beyond the leeway");
    }

    #[test]
    fn a_full_cache_makes_room_only_by_dropping_expired_tokens() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let cache = VerifiedTokens::default();
        for n in 0..CAPACITY {
            let exp = if n == 0 { now - 3600 } else { now + 60 };
            cache.insert(&format!("token-{n}"), &claims(exp));
        }
        cache.insert("one more", &claims(now + 60));
        assert!(cache.get("one more").is_some(), "took the expired token's place");
        assert_eq!(cache.tokens.read().expect("lock").len(), CAPACITY);

        cache.insert("and another", &claims(now + 60));
        assert!(cache.get("and another").is_none(), "full of current tokens: not kept");
        assert_eq!(cache.tokens.read().expect("lock").len(), CAPACITY);
    }
}
