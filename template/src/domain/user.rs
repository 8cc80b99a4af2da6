//! Accounts: who may sign in, with which password, roles and permissions, and how long a
//! session lasts.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

/// Shortest and longest password accepted. The maximum bounds the hashing work a request can
/// ask for; it is checked before any hashing.
pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// The least zxcvbn score (0 to 4) a new password needs. 3 means about 10^10 guesses: out of
/// reach online and costly offline against Argon2id. Common and breached passwords, words
/// with predictable substitutions, keyboard walks, repeats and dates score 0 to 2.
const PASSWORD_MIN_SCORE: u8 = 3;
/// Only this many leading characters are scored: the estimate's cost grows steeply with
/// length (tens of milliseconds at 128), and a password whose start is hard to guess is too.
const PASSWORD_SCORED_CHARS: usize = 32;
/// Longest email address (RFC 5321's path limit less the angle brackets).
pub const EMAIL_MAX_CHARS: usize = 254;

/// Why a password or an address cannot belong to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")]
    PasswordLength,
    #[error("must be at most {PASSWORD_MAX_CHARS} characters")]
    PasswordTooLong,
    #[error("is too easy to guess: avoid common passwords, names, dates and keyboard patterns")]
    PasswordGuessable,
    #[error("must be an email address of at most {EMAIL_MAX_CHARS} characters")]
    Email,
}

/// The password policy for a new or changed password.
pub fn check_new_password(password: &str) -> Result<(), Rejected> {
    let chars = password.chars().count();
    if (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(Rejected::PasswordLength)
    }
}

/// The rest of the policy for a new password: refused if it is too easy to guess, by an
/// estimate that knows the most common and breached passwords. Takes up to a few
/// milliseconds, so callers run it off the async workers.
pub fn check_guessable(password: &str) -> Result<(), Rejected> {
    let scored: String = password.chars().take(PASSWORD_SCORED_CHARS).collect();
    if u8::from(zxcvbn::zxcvbn(&scored, &[]).score()) >= PASSWORD_MIN_SCORE {
        Ok(())
    } else {
        Err(Rejected::PasswordGuessable)
    }
}

/// A password offered to sign in: any length up to the maximum, so that a password set under
/// an older policy still works, and the hashing work stays bounded.
pub fn check_offered_password(password: &str) -> Result<(), Rejected> {
    if password.chars().count() <= PASSWORD_MAX_CHARS {
        Ok(())
    } else {
        Err(Rejected::PasswordTooLong)
    }
}

/// The addresses [`check_email`] accepts, as a regular expression for the API's document:
/// the HTML form's rule for email inputs (WHATWG), without international domain names.
pub const EMAIL_PATTERN: &str = "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@\
    [A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";

/// An address an account can be registered under: [`EMAIL_PATTERN`], at most
/// [`EMAIL_MAX_CHARS`] long.
pub fn check_email(email: &str) -> Result<(), Rejected> {
    let local_char = |byte: u8| byte.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&byte);
    let label = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let valid = email.len() <= EMAIL_MAX_CHARS
        && email.split_once('@').is_some_and(|(local, domain)| {
            (1..=64).contains(&local.len()) && local.bytes().all(local_char) && domain.split('.').all(label)
        });
    if valid { Ok(()) } else { Err(Rejected::Email) }
}

/// How long a session's refresh token lives: unused for `idle` it lapses, and the session
/// ends after `absolute` from the sign-in whatever happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetimes {
    pub idle: Duration,
    pub absolute: Duration,
}

/// An account as administrators and its owner see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub status: UserStatus,
    pub roles: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    /// Cannot sign in or refresh; its sessions were revoked when it was disabled.
    Disabled,
}

impl UserStatus {
    pub fn parse(text: &str) -> Self {
        if text == "active" { Self::Active } else { Self::Disabled }
    }
}

/// What signing in checks.
#[derive(Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
    pub status: UserStatus,
}

/// Without the hash: a debug print or an error report must not carry what an attacker would
/// crack offline.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("password_hash", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

/// The permissions roles grant, as named in the `permissions` table.
pub mod permission {
    pub const USERS_READ: &str = "users:read";
    pub const USERS_WRITE: &str = "users:write";
}

/// The role every new account gets.
pub const DEFAULT_ROLE: &str = "user";
/// The role `users create-admin` grants.
pub const ADMIN_ROLE: &str = "admin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_policy_bounds_length_in_characters() {
        assert_eq!(check_new_password("short"), Err(Rejected::PasswordLength));
        assert_eq!(check_new_password("twelve chars"), Ok(()));
        assert_eq!(check_new_password(&"é".repeat(128)), Ok(()));
        assert_eq!(check_new_password(&"é".repeat(129)), Err(Rejected::PasswordLength));
        assert_eq!(check_offered_password("short"), Ok(()));
        assert_eq!(check_offered_password(&"x".repeat(129)), Err(Rejected::PasswordTooLong));
    }

    #[test]
    fn common_and_patterned_passwords_are_too_easy_to_guess() {
        for weak in [
            "password1234",
            "Password123!",
            "qwertyuiop123",
            "iloveyou2024",
            "passwordpassword",
        ] {
            assert_eq!(check_guessable(weak), Err(Rejected::PasswordGuessable), "{weak}");
        }
        // Only the start is scored: a weak start is weak however long the rest.
        assert_eq!(
            check_guessable(&format!("{}{}", "1".repeat(32), "kX9#mP2$vL7@nQ4!")),
            Err(Rejected::PasswordGuessable)
        );
        for strong in ["correct horse battery staple", "twelve chars", "Tr0ub4dor&3xx"] {
            assert_eq!(check_guessable(strong), Ok(()), "{strong}");
        }
    }

    #[test]
    fn credentials_print_without_the_hash() {
        let credentials = Credentials {
            id: Uuid::nil(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            status: UserStatus::Active,
        };

        let printed = format!("{credentials:?} {credentials:#?}");

        assert!(!printed.contains("argon2id"), "{printed}");
        assert!(
            printed.contains("[redacted]") && printed.contains("Active"),
            "{printed}"
        );
    }

    #[test]
    fn only_addresses_are_accepted_as_emails() {
        assert_eq!(check_email("ada@example.com"), Ok(()));
        assert_eq!(check_email("ada"), Err(Rejected::Email));
        assert_eq!(check_email("o'hara+news@mail-1.example"), Ok(()));
        assert_eq!(check_email("root@localhost"), Ok(()));
        for refused in [
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example..com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@bücher.example",
            "ada@[127.0.0.1]",
            "ada@example.com@example.com",
        ] {
            assert_eq!(check_email(refused), Err(Rejected::Email), "{refused}");
        }
        assert_eq!(
            check_email(&format!("{}@example.com", "a".repeat(65))),
            Err(Rejected::Email)
        );
        assert_eq!(
            check_email(&format!("ada@{}.com", "a".repeat(64))),
            Err(Rejected::Email)
        );
        assert_eq!(
            check_email(&format!("{}@example.com", "a".repeat(250))),
            Err(Rejected::Email)
        );
    }
}
