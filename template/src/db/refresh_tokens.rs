//! Queries on `refresh_tokens`: issue, rotate, revoke by family or by user, and delete the
//! families that can no longer be used. Tokens are addressed by their SHA-256 only. A family's
//! first row (its `id` is the `family_id`) is the family's lock: rotating and revoking take it
//! first, so a revocation never misses a token that a rotation in flight adds, and a rotation
//! never extends a family revoked meanwhile.

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::PgTransaction;
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

/// Starts a family for a new session of `user_id`, with its first token; returns the family,
/// which names the session.
pub async fn start_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    token_hash: &[u8],
    lifetimes: SessionLifetimes,
) -> Result<Uuid, DbError> {
    let family_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at, family_expires_at)
         VALUES ($1, $1, $2, $3,
                 now() + make_interval(secs => least($4, $5)),
                 now() + make_interval(secs => $5))",
    )
    .bind(family_id)
    .bind(user_id)
    .bind(token_hash)
    .bind(seconds(lifetimes.idle))
    .bind(seconds(lifetimes.absolute))
    .execute(&mut *conn)
    .await
    .map_err(DbError::unconstrained)?;
    Ok(family_id)
}

/// Marks the token `old_hash` used and adds `new_hash` to its family, in the caller's
/// transaction, which holds the family's lock until it ends: of two concurrent rotations of the
/// same token, the second waits for the first, then finds the token used and is treated as
/// reuse; a family revoked meanwhile is refused.
pub async fn rotate(
    tx: &mut PgTransaction<'_>,
    old_hash: &[u8],
    new_hash: &[u8],
    idle: Duration,
) -> Result<Rotation, DbError> {
    let conn: &mut PgConnection = tx;
    sqlx::query(
        "SELECT 1 FROM refresh_tokens f JOIN refresh_tokens t ON t.family_id = f.id
         WHERE t.token_hash = $1 FOR UPDATE OF f",
    )
    .bind(old_hash)
    .execute(&mut *conn)
    .await
    .map_err(DbError::unconstrained)?;
    let rotated: Option<(Uuid, Uuid)> = sqlx::query_as(
        "WITH used AS (
             UPDATE refresh_tokens t SET used_at = now()
             FROM users u, refresh_tokens f
             WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.revoked_at IS NULL
               AND t.expires_at > now() AND t.family_expires_at > now()
               AND u.id = t.user_id AND u.status = 'active'
               AND f.id = t.family_id AND f.revoked_at IS NULL
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

/// Revokes the family of the token `token_hash` (logout) in the caller's transaction; `false`
/// when no such token exists.
pub async fn revoke_family_of(tx: &mut PgTransaction<'_>, token_hash: &[u8]) -> Result<bool, DbError> {
    let family: Option<Uuid> = sqlx::query_scalar(
        "SELECT f.id FROM refresh_tokens f JOIN refresh_tokens t ON t.family_id = f.id
         WHERE t.token_hash = $1 FOR UPDATE OF f",
    )
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await
    .map_err(DbError::unconstrained)?;
    if let Some(family_id) = family {
        revoke_family(tx, family_id).await?;
    }
    Ok(family.is_some())
}

/// Revokes a family whose lock the caller holds. A statement of its own, after the lock: its
/// snapshot then includes a token that the rotation it waited for added.
async fn revoke_family(conn: &mut PgConnection, family_id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family_id)
        .execute(&mut *conn)
        .await
        .map_err(DbError::unconstrained)?;
    Ok(())
}

/// Revokes every session of the account (password change, disabling) in the caller's
/// transaction, its families locked first, in one order so that two revocations cannot
/// deadlock.
pub async fn revoke_user(tx: &mut PgTransaction<'_>, user_id: Uuid) -> Result<(), DbError> {
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE user_id = $1 AND id = family_id ORDER BY id FOR UPDATE")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::unconstrained)?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(DbError::unconstrained)?;
    Ok(())
}

/// Deletes the families no token of which can be used any more: past their absolute expiry,
/// or idle past the expiry of their newest token. A deleted token is refused like a revoked
/// one. Returns how many tokens were deleted.
pub async fn delete_expired(conn: &mut PgConnection) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM refresh_tokens WHERE family_id IN ( \
             SELECT family_id FROM refresh_tokens GROUP BY family_id \
             HAVING min(family_expires_at) < now() OR max(expires_at) < now())",
    )
    .execute(conn)
    .await
    .map_err(DbError::unconstrained)?;
    Ok(done.rows_affected())
}
