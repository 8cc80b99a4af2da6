//! Password hashing with Argon2id. Hashing is deliberately slow and memory-hard, so it runs on
//! the blocking pool behind a semaphore: a flood of logins waits for a permit for a bounded
//! time and is then turned away, instead of starving every other request of CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::AuthConfig;
use crate::domain::user;

/// Hashing is saturated: the caller should answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Saturated;

/// What became of a new password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewPassword {
    /// Its PHC string, to store.
    Hashed(String),
    /// Too easy to guess (`domain::user::check_guessable`); not hashed.
    Guessable,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match {
        /// The stored hash uses weaker parameters than configured; store a new one.
        needs_rehash: bool,
    },
    Mismatch,
}

#[derive(Debug)]
pub struct Passwords {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// `$argon2id$v=19$m=...,t=...,p=...$`: hashes without it were made with other settings.
    current_prefix: String,
    /// Checked when the account does not exist, so that the answer takes as long as a real
    /// check and timing does not tell which addresses have accounts.
    dummy_hash: String,
    /// Hashes and checks run so far: shows that every failed sign-in costs one check.
    pub performed: AtomicU64,
}

impl Passwords {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.password_memory_kib,
            config.password_iterations,
            config.password_parallelism,
            None,
        )
        .map_err(|err| anyhow::anyhow!("APP_AUTH__PASSWORD_*: {err}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = phc(&argon2, "a password no account has")?;
        let current_prefix = dummy_hash
            .rsplitn(3, '$')
            .nth(2)
            .context("an Argon2 PHC string has salt and hash fields")?
            .to_owned()
            + "$";
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(config.password_hashing_concurrency())),
            wait: Duration::from_millis(config.password_queue_timeout_ms),
            current_prefix,
            dummy_hash,
            performed: AtomicU64::new(0),
        })
    }

    /// A new PHC string for `password`, whatever its strength: a password that was accepted
    /// once, hashed again with stronger parameters.
    pub async fn hash(&self, password: &SecretString) -> Result<anyhow::Result<String>, Saturated> {
        let password = password.clone();
        self.run(move |argon2| phc(argon2, password.expose_secret())).await
    }

    /// A new password (registration, a change, an administrator): refused when too easy to
    /// guess, else hashed. The estimate runs in the same blocking job as the hash, since it
    /// too takes milliseconds.
    pub async fn hash_new(&self, password: &SecretString) -> Result<anyhow::Result<NewPassword>, Saturated> {
        let password = password.clone();
        self.run(move |argon2| {
            let password = password.expose_secret();
            if user::check_guessable(password).is_err() {
                return Ok(NewPassword::Guessable);
            }
            phc(argon2, password).map(NewPassword::Hashed)
        })
        .await
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is no account,
    /// which then never matches.
    pub async fn verify(&self, stored: Option<&str>, password: &SecretString) -> Result<Verdict, Saturated> {
        let exists = stored.is_some();
        let hash = stored.unwrap_or(&self.dummy_hash).to_owned();
        let needs_rehash = !hash.starts_with(&self.current_prefix);
        let password = password.clone();
        let matched = self
            .run(move |argon2| {
                argon2
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(if matched && exists {
            Verdict::Match { needs_rehash }
        } else {
            Verdict::Mismatch
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, Saturated> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Saturated)?
            .map_err(|_| Saturated)?;
        self.performed.fetch_add(1, Ordering::Relaxed);
        let argon2 = self.argon2.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&argon2)
        })
        .await;
        // A panic inside the hasher is a bug; surface it as such rather than as saturation.
        Ok(result.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic())))
    }
}

/// The PHC string of `password` with a fresh salt.
fn phc(argon2: &Argon2<'_>, password: &str) -> anyhow::Result<String> {
    argon2
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("cannot hash: {err}"))
}
