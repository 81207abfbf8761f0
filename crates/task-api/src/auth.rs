//! Authentication: HS256 JWTs, the `auth_token` cookie, bearer tokens and password hashing.

use std::future::{Ready, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{AuthConfig, CookieSameSite};
use crate::error::ApiError;
use crate::state::AppState;

/// The name of the cookie that carries the token.
pub const COOKIE_NAME: &str = "auth_token";
/// How long a token (and the cookie) lives.
pub const TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// The claims of our tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's (lowercased) email.
    pub email: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// Signs and verifies tokens, and builds the auth cookie.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    cookie_secure: bool,
    cookie_same_site: SameSite,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// An authenticator for `config`.
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            cookie_secure: config.cookie_secure,
            cookie_same_site: match config.cookie_samesite {
                CookieSameSite::Lax => SameSite::Lax,
                CookieSameSite::Strict => SameSite::Strict,
                CookieSameSite::None => SameSite::None,
            },
        }
    }

    /// A token for `user` valid for 24 hours.
    pub fn issue(&self, user_id: Uuid, email: &str) -> Result<String, ApiError> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id,
            email: email.to_owned(),
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The claims of a valid token; 401 for anything else (bad signature, `alg: none`, expired, garbage).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Authentication("Token has expired".to_owned())
                }
                _ => ApiError::Authentication("Invalid authentication token".to_owned()),
            })
    }

    /// The cookie that carries `token`.
    pub fn cookie(&self, token: &str) -> Cookie<'static> {
        Cookie::build(COOKIE_NAME, token.to_owned())
            .http_only(true)
            .secure(self.cookie_secure)
            .same_site(self.cookie_same_site)
            .path("/")
            .max_age(CookieDuration::seconds(TOKEN_LIFETIME_SECS as i64))
            .finish()
    }

    /// A cookie that clears the auth cookie.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = Cookie::build(COOKIE_NAME, "")
            .http_only(true)
            .secure(self.cookie_secure)
            .same_site(self.cookie_same_site)
            .path("/")
            .finish();
        cookie.make_removal();
        cookie
    }
}

/// The token a request carries: the `Authorization: Bearer` header first, then the cookie.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !token.trim().is_empty()
        {
            return Some(token.trim().to_owned());
        }
    }
    req.cookie(COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// The authenticated user of a request, extracted from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The user id (`sub`).
    pub id: Uuid,
    /// The email claim.
    pub email: String,
}

/// The user id of a request once authenticated, kept in the request extensions for the access log.
#[derive(Debug, Clone, Copy)]
pub struct RequestUserId(pub Uuid);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

pub(crate) fn authenticate(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state is not configured"))?;
    let token = request_token(req)
        .ok_or_else(|| ApiError::Authentication("Not authenticated".to_owned()))?;
    let claims = state.auth.verify(&token)?;
    req.extensions_mut().insert(RequestUserId(claims.sub));
    Ok(AuthUser {
        id: claims.sub,
        email: claims.email,
    })
}

/// Hashes a new password with argon2id (run it on a blocking thread).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(ApiError::internal)
}

/// Checks `password` against a stored argon2 or bcrypt (`$2a$`/`$2b$`/`$2y$`) hash (run it on a blocking thread).
pub fn verify_password(password: &str, stored: &str) -> bool {
    if stored.starts_with("$2") {
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fixed argon2 hash verified when the email is unknown, so login time does not reveal which emails exist.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$hqnXnyUzZnGFK8PsDy2NTNS9BmfMngNyG/EnwnmQFGI";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn authenticator(secret: &str) -> Authenticator {
        Authenticator::new(&AuthConfig {
            jwt_secret: Secret::new(secret.to_owned()),
            cookie_secure: false,
            cookie_samesite: CookieSameSite::Lax,
        })
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let auth = authenticator("a-secret-of-enough-length-0123456789");
        let id = Uuid::new_v4();
        let token = auth.issue(id, "a@example.com").unwrap();
        let claims = auth.verify(&token).unwrap();
        assert_eq!(claims.sub, id);
        assert_eq!(claims.email, "a@example.com");
        assert_eq!(claims.exp - claims.iat, TOKEN_LIFETIME_SECS);
    }

    #[test]
    fn tokens_signed_with_another_secret_are_rejected() {
        let token = authenticator("secret-one-secret-one-secret-one")
            .issue(Uuid::new_v4(), "a@b.c")
            .unwrap();
        let err = authenticator("secret-two-secret-two-secret-two")
            .verify(&token)
            .unwrap_err();
        assert_eq!(err.code(), "AUTHENTICATION_ERROR");
    }

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        let argon = hash_password("correct horse").unwrap();
        assert!(argon.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &argon));
        assert!(!verify_password("wrong horse", &argon));
        let bcrypt_hash = bcrypt::hash("legacy-pass", 4).unwrap();
        assert!(verify_password("legacy-pass", &bcrypt_hash));
        assert!(!verify_password("other-pass", &bcrypt_hash));
        assert!(!verify_password("anything", "not a hash"));
        assert!(!verify_password("anything", DUMMY_HASH));
    }
}
