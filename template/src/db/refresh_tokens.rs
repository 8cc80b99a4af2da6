//! Queries on `refresh_tokens`: issue, rotate, and revoke by family or by user. Tokens are
//! addressed by their SHA-256 only.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::DbError;
use crate::domain::user::SessionLifetimes;

/// What presenting a refresh token led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the new one now stands in its place.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// The token had already been used: its family is now revoked, newest token included.
    Reused { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired, revoked, or its account is disabled.
    Refused,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Starts a family for a new session of `user_id`, with its first token.
pub async fn start_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    token_hash: &[u8],
    lifetimes: SessionLifetimes,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at, family_expires_at)
         VALUES ($1, $1, $2, $3,
                 now() + make_interval(secs => least($4, $5)),
                 now() + make_interval(secs => $5))",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(token_hash)
    .bind(seconds(lifetimes.idle))
    .bind(seconds(lifetimes.absolute))
    .execute(&mut *conn)
    .await
    .map_err(DbError::unconstrained)?;
    Ok(())
}

/// Marks the token `old_hash` used and adds `new_hash` to its family, in one statement: of two
/// concurrent rotations of the same token, the second waits for the first's row lock, then
/// finds the token used and is treated as reuse.
pub async fn rotate(
    conn: &mut PgConnection,
    old_hash: &[u8],
    new_hash: &[u8],
    idle: Duration,
) -> Result<Rotation, DbError> {
    let rotated: Option<(Uuid, Uuid)> = sqlx::query_as(
        "WITH used AS (
             UPDATE refresh_tokens t SET used_at = now()
             FROM users u
             WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.revoked_at IS NULL
               AND t.expires_at > now() AND t.family_expires_at > now()
               AND u.id = t.user_id AND u.status = 'active'
             RETURNING t.family_id, t.user_id, t.family_expires_at
         )
         INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at, family_expires_at)
         SELECT $2, family_id, user_id, $3,
                least(now() + make_interval(secs => $4), family_expires_at), family_expires_at
         FROM used
         RETURNING user_id, family_id",
    )
    .bind(old_hash)
    .bind(Uuid::now_v7())
    .bind(new_hash)
    .bind(seconds(idle))
    .fetch_optional(&mut *conn)
    .await
    .map_err(DbError::unconstrained)?;
    if let Some((user_id, family_id)) = rotated {
        return Ok(Rotation::Rotated { user_id, family_id });
    }
    let reused: Option<(Uuid, Uuid)> =
        sqlx::query_as("SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL")
            .bind(old_hash)
            .fetch_optional(&mut *conn)
            .await
            .map_err(DbError::unconstrained)?;
    match reused {
        Some((user_id, family_id)) => {
            revoke_family(conn, family_id).await?;
            Ok(Rotation::Reused { user_id, family_id })
        }
        None => Ok(Rotation::Refused),
    }
}

/// Revokes the family of the token `token_hash` (logout); `false` when no such token exists.
pub async fn revoke_family_of(conn: &mut PgConnection, token_hash: &[u8]) -> Result<bool, DbError> {
    let family: Option<Uuid> = sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    match family {
        Some(family_id) => revoke_family(conn, family_id).await.map(|()| true),
        None => Ok(false),
    }
}

async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family_id)
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    Ok(())
}

/// Revokes every session of the account (password change, disabling).
pub async fn revoke_user(conn: &mut PgConnection, user_id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    Ok(())
}
