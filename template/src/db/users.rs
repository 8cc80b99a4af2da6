//! Queries on `users` and their roles. Emails compare without letter case, through the
//! `lower(email)` unique index.

use std::sync::Arc;

use sqlx::postgres::PgTransaction;
use sqlx::{PgConnection, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::DbError;
use super::keyset::{push_after, push_order_and_limit};
use crate::domain::page::{Direction, Page, PageSize, Position, SortValue};
use crate::domain::user::{Credentials, User, UserStatus};

const CONSTRAINTS: &[(&str, &str)] = &[("user_roles_role_fkey", "no such role")];

/// A user with the roles aggregated; a macro so that `concat!` builds each query statically.
macro_rules! select_users {
    () => {
        "SELECT u.id, u.email, u.status::text AS status, u.created_at, u.updated_at,
                coalesce(array_agg(ur.role ORDER BY ur.role) FILTER (WHERE ur.role IS NOT NULL), '{}') AS roles
         FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id"
    };
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    status: String,
    roles: Vec<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            status: UserStatus::parse(&row.status),
            roles: row.roles,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn classify(err: sqlx::Error) -> DbError {
    DbError::classify(err, CONSTRAINTS)
}

/// Creates an account with `role`, or returns `None` when the address is taken: the caller
/// must not be able to tell the two apart from outside.
pub async fn insert(
    conn: &mut PgConnection,
    email: &str,
    password_hash: &str,
    role: &str,
) -> Result<Option<Uuid>, DbError> {
    sqlx::query_scalar(
        "WITH created AS (
             INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT ((lower(email))) DO NOTHING
             RETURNING id
         )
         INSERT INTO user_roles (user_id, role) SELECT id, $4 FROM created RETURNING user_id",
    )
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(password_hash)
    .bind(role)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)
}

/// The columns signing in needs.
macro_rules! select_credentials {
    () => {
        "SELECT id, password_hash, status::text FROM users WHERE "
    };
}

type CredentialsRow = (Uuid, String, String);

fn credentials((id, password_hash, status): CredentialsRow) -> Credentials {
    Credentials {
        id,
        password_hash,
        status: UserStatus::parse(&status),
    }
}

pub async fn credentials_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<Credentials>, DbError> {
    sqlx::query_as::<_, CredentialsRow>(concat!(select_credentials!(), "lower(email) = lower($1)"))
        .bind(email)
        .fetch_optional(&mut *conn)
        .await
        .map(|row| row.map(credentials))
        .map_err(classify)
}

pub async fn credentials_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Credentials>, DbError> {
    sqlx::query_as::<_, CredentialsRow>(concat!(select_credentials!(), "id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map(|row| row.map(credentials))
        .map_err(classify)
}

pub async fn set_password_hash(conn: &mut PgConnection, id: Uuid, password_hash: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(password_hash)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Stores a new password hash and ends every session of the account, together, in the
/// caller's transaction.
pub async fn replace_password(tx: &mut PgTransaction<'_>, id: Uuid, password_hash: &str) -> Result<(), DbError> {
    set_password_hash(tx, id, password_hash).await?;
    super::refresh_tokens::revoke_user(tx, id).await
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<User>, DbError> {
    sqlx::query_as::<_, UserRow>(concat!(select_users!(), " WHERE u.id = $1 GROUP BY u.id"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map(|row| row.map(User::from))
        .map_err(classify)
}

/// An active account's session that has not ended, and what the account may do in it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// Through the account's roles.
    pub permissions: Arc<[String]>,
    /// When the session reaches its absolute lifetime, unless it ends earlier.
    pub ends_at: OffsetDateTime,
}

/// Session `session` of account `id`, while both are live; `None` when the account is missing
/// or disabled, or the session ended or lapsed.
pub async fn live_session(conn: &mut PgConnection, id: Uuid, session: Uuid) -> Result<Option<LiveSession>, DbError> {
    let row: Option<(Vec<String>, OffsetDateTime)> = sqlx::query_as(
        "SELECT coalesce(array_agg(DISTINCT rp.permission) FILTER (WHERE rp.permission IS NOT NULL), '{}'),
                f.family_expires_at
         FROM users u
         JOIN refresh_tokens f ON f.id = $2 AND f.user_id = u.id
                               AND f.revoked_at IS NULL AND f.family_expires_at > now()
         LEFT JOIN user_roles ur ON ur.user_id = u.id
         LEFT JOIN role_permissions rp ON rp.role = ur.role
         WHERE u.id = $1 AND u.status = 'active'
         GROUP BY u.id, f.family_expires_at",
    )
    .bind(id)
    .bind(session)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(row.map(|(permissions, ends_at)| LiveSession {
        permissions: permissions.into(),
        ends_at,
    }))
}

/// Accounts oldest first, a page at a time.
pub async fn list(conn: &mut PgConnection, after: Option<&Position>, size: PageSize) -> Result<Page<User>, DbError> {
    let mut sql = QueryBuilder::new(concat!(select_users!(), " WHERE true"));
    push_after(&mut sql, "u.created_at", Direction::Asc, after);
    sql.push(" GROUP BY u.id");
    push_order_and_limit(&mut sql, "u.created_at", Direction::Asc, size);
    let rows: Vec<UserRow> = sql.build_query_as().fetch_all(&mut *conn).await.map_err(classify)?;
    let users = rows.into_iter().map(User::from).collect();
    Ok(Page::from_overfetch(users, size, |user: &User| Position {
        value: SortValue::Time(user.created_at),
        id: user.id,
    }))
}

/// Replaces the account's roles in the caller's transaction; `false` when there is no such
/// account.
pub async fn set_roles(tx: &mut PgTransaction<'_>, id: Uuid, roles: &[String]) -> Result<bool, DbError> {
    let updated = sqlx::query("UPDATE users SET updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    sqlx::query("INSERT INTO user_roles (user_id, role) SELECT $1, unnest($2::text[])")
        .bind(id)
        .bind(roles)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(true)
}

/// Disables the account and ends its sessions, in the caller's transaction; `false` when there
/// is no such account.
pub async fn disable(tx: &mut PgTransaction<'_>, id: Uuid) -> Result<bool, DbError> {
    let result = sqlx::query("UPDATE users SET status = 'disabled', updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    super::refresh_tokens::revoke_user(tx, id).await?;
    Ok(result.rows_affected() == 1)
}
