//! `/api/v1/auth`: register, sign in, refresh, sign out, the current account, and password
//! changes. Failures that could tell an attacker which addresses have accounts all look alike:
//! same status, same body, and the same password-hashing work.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use validator::{Validate, ValidationError, ValidationErrors};

use super::authn::CurrentUser;
use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::{Json, Valid};
use super::throttle::refuse;
use crate::AppState;
use crate::auth::{NewPassword, Saturated, Verdict, refresh};
use crate::db;
use crate::db::refresh_tokens::Rotation;
use crate::domain::user::{self, DEFAULT_ROLE, UserStatus};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh_session))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// A password from a request body. Validation rules may copy a value into their error; this
/// type serializes as a placeholder, so a password cannot travel that way (nor through
/// `Debug`, which `SecretString` redacts).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(SecretString);

impl Password {
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

fn password_policy(password: &Password) -> Result<(), ValidationError> {
    user::check_new_password(password.0.expose_secret()).map_err(rule)
}

fn password_max(password: &Password) -> Result<(), ValidationError> {
    user::check_offered_password(password.0.expose_secret()).map_err(rule)
}

fn email(email: &str) -> Result<(), ValidationError> {
    user::check_email(email).map_err(rule)
}

/// [`user::check_email`]'s rule as the document states it.
fn email_schema() -> utoipa::openapi::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .max_length(Some(user::EMAIL_MAX_CHARS))
        .pattern(Some(user::EMAIL_PATTERN))
        .examples(["ada@example.com"])
        .build()
}

/// A domain rule's refusal as a field error.
fn rule(rejected: user::Rejected) -> ValidationError {
    let code = match rejected {
        user::Rejected::Email => "email",
        user::Rejected::PasswordLength | user::Rejected::PasswordTooLong => "length",
        user::Rejected::PasswordGuessable => "guessable",
    };
    ValidationError::new(code).with_message(rejected.to_string().into())
}

/// A new password in `field` refused as too easy to guess: a field error like the others,
/// found once the estimate has run off the async workers.
fn guessable(field: &'static str) -> ApiError {
    let mut errors = ValidationErrors::new();
    errors.add(field, rule(user::Rejected::PasswordGuessable));
    errors.into()
}

/// An email address and a password.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[validate(custom(function = "email"))]
    #[schema(schema_with = email_schema)]
    pub email: String,
    #[validate(custom(function = "password_max"))]
    #[schema(value_type = String, format = Password, max_length = 128)]
    pub password: Password,
}

/// A new account.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[validate(custom(function = "email"))]
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// 12 to 128 characters and hard to guess: common and breached passwords, keyboard patterns,
    /// repeats and dates are refused with the code `guessable`.
    #[validate(custom(function = "password_policy"))]
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub password: Password,
}

/// The same answer whether or not the address already had an account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "if the address is free, the account now exists: sign in to continue")]
    pub detail: String,
}

/// A refresh token, to rotate or to revoke.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[validate(length(max = 1024))]
    #[schema(max_length = 1024)]
    pub refresh_token: String,
}

/// A session: a short-lived access token for the API and a refresh token for the next one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: each refresh returns the next one, and using one twice ends the session.
    pub refresh_token: String,
}

/// The signed-in account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A new password, with the current one as proof.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[validate(custom(function = "password_max"))]
    #[schema(value_type = String, format = Password, max_length = 128)]
    pub current_password: Password,
    /// 12 to 128 characters and hard to guess: common and breached passwords, keyboard patterns,
    /// repeats and dates are refused with the code `guessable`.
    #[validate(custom(function = "password_policy"))]
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub new_password: Password,
}

const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized {
    detail: "the email or password is wrong",
    invalid_token: false,
};
const BAD_REFRESH: ApiError = ApiError::Unauthorized {
    detail: "the refresh token is invalid, expired or already used",
    invalid_token: true,
};

impl From<Saturated> for ApiError {
    fn from(_: Saturated) -> Self {
        Self::Unavailable {
            detail: "too many sign-ins at once; retry shortly",
            retry_after: Some(1),
        }
    }
}

/// Register
///
/// Answers 202 whether or not the address already has an account, after the same work, so
/// the answer does not tell which addresses are registered.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", operation_id = "register",
    request_body = Registration,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 422, description = "Invalid fields"),
        (status = 429, description = "Too many attempts from this address or for this account"),
        (status = 503, description = "Too many sign-ins at once"),
    ))]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Valid(body): Valid<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .auth
        .sign_in
        .check(ip, &body.email)
        .await
        .map_err(|limited| refuse(&state.metrics, limited))?;
    let NewPassword::Hashed(hash) = state.auth.passwords.hash_new(body.password.secret()).await?? else {
        return Err(guessable("password"));
    };
    let mut conn = state.db.acquire().await?;
    let created = db::users::insert(&mut conn, body.email.trim(), &hash, DEFAULT_ROLE).await?;
    if let Some(id) = created {
        tracing::info!(target: "security", event = "account_created", user_id = %id, "account created");
    } else {
        tracing::info!(target: "security", event = "registration_for_existing_account", "registration for an existing address");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            detail: "if the address is free, the account now exists: sign in to continue".to_owned(),
        }),
    ))
}

/// Sign in
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "Wrong email or password, or a disabled account"),
        (status = 422, description = "Invalid fields"),
        (status = 429, description = "Too many attempts from this address or for this account"),
        (status = 503, description = "Too many sign-ins at once"),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Valid(body): Valid<Credentials>,
) -> Result<Json<TokenPair>, ApiError> {
    state
        .auth
        .sign_in
        .check(ip, &body.email)
        .await
        .map_err(|limited| refuse(&state.metrics, limited))?;
    let mut conn = state.db.acquire().await?;
    let account = db::users::credentials_by_email(&mut conn, body.email.trim()).await?;
    // Released while hashing: a connection must not wait on the CPU.
    drop(conn);
    let verdict = state
        .auth
        .passwords
        .verify(
            account.as_ref().map(|account| account.password_hash.as_str()),
            body.password.secret(),
        )
        .await?;
    let (account, needs_rehash) = match (account, verdict) {
        (Some(account), Verdict::Match { needs_rehash }) if account.status == UserStatus::Active => {
            (account, needs_rehash)
        }
        (account, _) => {
            state.metrics.security_event("login_failed");
            tracing::warn!(
                target: "security",
                event = "login_failed",
                user_id = account.as_ref().map(|account| account.id.to_string()),
                disabled = account.as_ref().is_some_and(|account| account.status == UserStatus::Disabled),
                "sign-in failed"
            );
            return Err(BAD_CREDENTIALS);
        }
    };
    let mut conn = state.db.acquire().await?;
    if needs_rehash {
        // The hashing parameters were raised since this hash was made.
        let hash = state.auth.passwords.hash(body.password.secret()).await??;
        db::users::set_password_hash(&mut conn, account.id, &hash).await?;
    }
    let (refresh_token, refresh_hash) = refresh::generate()?;
    let session = db::refresh_tokens::start_family(
        &mut conn,
        account.id,
        &refresh_hash,
        state.config.auth.session_lifetimes(),
    )
    .await?;
    state.metrics.security_event("login_succeeded");
    tracing::info!(target: "security", event = "login_succeeded", user_id = %account.id, "signed in");
    Ok(Json(
        token_pair(&state, &mut conn, account.id, session, refresh_token, BAD_CREDENTIALS).await?,
    ))
}

/// A new pair for `user` in `session`, or `refused` when the account was disabled or the
/// session ended meanwhile.
async fn token_pair(
    state: &AppState,
    conn: &mut PgConnection,
    user: Uuid,
    session: Uuid,
    refresh_token: String,
    refused: ApiError,
) -> Result<TokenPair, ApiError> {
    // The permissions travel in the token for services that check it without this database.
    let permissions = db::users::live_session(conn, user, session)
        .await?
        .ok_or(refused)?
        .permissions;
    Ok(TokenPair {
        access_token: state.auth.tokens.issue_access(user, session, &permissions)?,
        token_type: "Bearer".to_owned(),
        expires_in: state.auth.tokens.access_ttl().as_secs(),
        refresh_token,
    })
}

/// Refresh
///
/// Exchanges a refresh token for a new pair. Each refresh token works once: presenting a used
/// one again ends its session, including the newest token, since one of the two parties
/// holding it is not the account's owner.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The next pair", body = TokenPair),
        (status = 401, description = "Invalid, expired, revoked or reused token"),
    ))]
async fn refresh_session(
    State(state): State<AppState>,
    Valid(body): Valid<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let (refresh_token, new_hash) = refresh::generate()?;
    let mut tx = state.db.begin().await?;
    let idle = state.config.auth.session_lifetimes().idle;
    let pair = match db::refresh_tokens::rotate(&mut tx, &refresh::hash(&body.refresh_token), &new_hash, idle).await? {
        Rotation::Rotated { user_id, family_id } => {
            token_pair(&state, &mut tx, user_id, family_id, refresh_token, BAD_REFRESH).await
        }
        Rotation::Reused { user_id, family_id } => {
            state.metrics.security_event("refresh_token_reused");
            tracing::warn!(
                target: "security",
                event = "refresh_token_reused",
                user_id = %user_id,
                family_id = %family_id,
                "a used refresh token was presented again; its session is revoked"
            );
            Err(BAD_REFRESH)
        }
        Rotation::Refused => Err(BAD_REFRESH),
    };
    // A reused token's revocation stands whatever the answer.
    db::commit(tx).await?;
    pair.map(Json)
}

/// Sign out
///
/// Ends the session the refresh token belongs to: its refresh token and the access tokens
/// issued in it stop working. Answers 204 for any token, known or not.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", operation_id = "logout",
    request_body = RefreshRequest,
    responses((status = 204, description = "The session is over")))]
async fn logout(State(state): State<AppState>, Valid(body): Valid<RefreshRequest>) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    db::refresh_tokens::revoke_family_of(&mut tx, &refresh::hash(&body.refresh_token)).await?;
    db::commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = Me),
        (status = 401, description = "No valid access token"),
    ))]
async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Me>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let account = db::users::find(&mut conn, user.id).await?;
    conn.release();
    let account = account.ok_or(ApiError::NotFound("account not found"))?;
    Ok(Json(Me {
        id: account.id,
        email: account.email,
        roles: account.roles,
        permissions: user.permissions.to_vec(),
        created_at: account.created_at,
    }))
}

/// Change the password
///
/// Ends every session of the account, this one's refresh token included: sign in again.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", operation_id = "changePassword",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every session is revoked"),
        (status = 401, description = "No valid access token"),
        (status = 403, description = "The current password is wrong"),
        (status = 422, description = "Invalid fields"),
        (status = 429, description = "Too many attempts from this address or for this account"),
        (status = 503, description = "Too many sign-ins at once"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    user: CurrentUser,
    Valid(body): Valid<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    state
        .auth
        .sign_in
        .check_signed_in(ip, user.id)
        .await
        .map_err(|limited| refuse(&state.metrics, limited))?;
    let mut conn = state.db.acquire().await?;
    let account = db::users::credentials_by_id(&mut conn, user.id).await?;
    drop(conn);
    let verdict = state
        .auth
        .passwords
        .verify(
            account.as_ref().map(|account| account.password_hash.as_str()),
            body.current_password.secret(),
        )
        .await?;
    if !matches!(verdict, Verdict::Match { .. }) {
        tracing::warn!(target: "security", event = "password_change_refused", user_id = %user.id, "wrong current password");
        return Err(ApiError::Forbidden("the current password is wrong"));
    }
    let NewPassword::Hashed(hash) = state.auth.passwords.hash_new(body.new_password.secret()).await?? else {
        return Err(guessable("new_password"));
    };
    let mut tx = state.db.begin().await?;
    db::users::replace_password(&mut tx, user.id, &hash).await?;
    db::commit(tx).await?;
    tracing::info!(target: "security", event = "password_changed", user_id = %user.id, "password changed; sessions revoked");
    Ok(StatusCode::NO_CONTENT)
}
