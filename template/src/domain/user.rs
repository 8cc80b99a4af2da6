//! Accounts: who may sign in, and with which roles and permissions.

use time::OffsetDateTime;
use uuid::Uuid;

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
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
    pub status: UserStatus,
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
