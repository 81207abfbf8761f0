//! `/api/v1/auth/*`: register, login, logout, me.

use actix_web::{HttpResponse, web};
use serde_json::Value;
use task_domain::{Email, UserId};
use task_store::{NewUser, StoreError, User};
use time::OffsetDateTime;

use crate::auth::{AuthUser, Verified};
use crate::dto::{MessageResponse, UserResponse, parse_credentials};
use crate::error::{ApiError, FieldError};
use crate::events::rfc3339;
use crate::state::AppState;

/// The shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

fn user_response(user: &User) -> UserResponse {
    UserResponse {
        id: user.id.into_uuid(),
        email: user.email.as_str().to_owned(),
        created_at: rfc3339(user.created_at),
    }
}

fn login_failed() -> ApiError {
    ApiError::Authentication("Invalid email or password".to_owned())
}

/// Registers a user and signs them in.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = crate::dto::Credentials,
    responses(
        (status = 201, description = "Registered; the auth_token cookie is set", body = UserResponse),
        (status = 409, description = "Email already registered", body = crate::error::ErrorEnvelope),
        (status = 422, description = "Invalid email or password", body = crate::error::ErrorEnvelope),
        (status = 429, description = "Too many requests", body = crate::error::ErrorEnvelope),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After seconds",
            body = crate::error::ErrorEnvelope)))]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (email, password) = parse_credentials(body.into_inner())?;
    let mut details = Vec::new();
    let email = match Email::parse(&email) {
        Ok(email) => Some(email),
        Err(err) => {
            details.push(FieldError::new("email", err.to_string()));
            None
        }
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        details.push(FieldError::new(
            "password",
            format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let email = match email {
        Some(email) if details.is_empty() => email,
        _ => {
            let message = details
                .first()
                .map(|d| d.message.clone())
                .unwrap_or_default();
            return Err(ApiError::Validation { message, details });
        }
    };
    let conflict = || ApiError::Conflict("Email already registered".to_owned());
    if state.store.find_user_by_email(&email).await?.is_some() {
        return Err(conflict());
    }
    let password_hash = state.passwords.hash(password).await?;
    let new = NewUser {
        id: UserId::new_v4(),
        email,
        password_hash,
        now: OffsetDateTime::now_utc(),
    };
    let user = state
        .store
        .create_user(new)
        .await
        .map_err(|err| match err {
            StoreError::UniqueViolation { .. } => conflict(),
            other => other.into(),
        })?;
    let token = state.auth.issue(user.id.into_uuid(), user.email.as_str())?;
    Ok(HttpResponse::Created()
        .cookie(state.auth.cookie(&token))
        .json(user_response(&user)))
}

/// Signs a user in.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = crate::dto::Credentials,
    responses(
        (status = 200, description = "Signed in; the auth_token cookie is set", body = UserResponse),
        (status = 401, description = "Invalid email or password", body = crate::error::ErrorEnvelope),
        (status = 429, description = "Too many requests", body = crate::error::ErrorEnvelope),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After seconds",
            body = crate::error::ErrorEnvelope)))]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (email, password) = parse_credentials(body.into_inner())?;
    let user = match Email::parse(&email) {
        Ok(email) => state.store.find_user_by_email(&email).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    // An unknown email verifies dummy hashes of the same cost, so timing does not reveal registered emails.
    let verified = state.passwords.verify(password, stored).await?;
    let user = match (user, verified) {
        (Some(user), Verified::Valid) => user,
        (Some(user), Verified::ValidRehashed(hash)) => {
            // An outdated hash (the original's bcrypt, or another algorithm than PASSWORD_HASH) is replaced
            // now that the password is known. A failure here must not fail the login: the old hash still works.
            if let Err(err) = state
                .store
                .set_password_hash(user.id, &hash, OffsetDateTime::now_utc())
                .await
            {
                slog::warn!(state.log, "could not upgrade a password hash"; "user_id" => %user.id,
                    "error" => %crate::error::ErrorChain(&err));
            }
            user
        }
        _ => return Err(login_failed()),
    };
    let token = state.auth.issue(user.id.into_uuid(), user.email.as_str())?;
    Ok(HttpResponse::Ok()
        .cookie(state.auth.cookie(&token))
        .json(user_response(&user)))
}

/// Signs out: clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, description = "The cookie is cleared", body = MessageResponse)))]
pub async fn logout(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .cookie(state.auth.removal_cookie())
        .json(MessageResponse {
            message: "Logged out successfully".to_owned(),
        }))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorEnvelope)))]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let found = state.store.find_user(UserId::from_uuid(user.id)).await?;
    let user = found.ok_or_else(|| ApiError::Authentication("User no longer exists".to_owned()))?;
    Ok(HttpResponse::Ok().json(user_response(&user)))
}
