//! Authentication: HS256 JWTs, the `auth_token` cookie, bearer tokens and password hashing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use task_domain::UserId;
use task_store::{Store, StoreError};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::config::{AuthConfig, CookieSameSite, PasswordConfig, PasswordHashAlgorithm};
use crate::error::ApiError;

/// The name of the cookie that carries the token.
pub const COOKIE_NAME: &str = "auth_token";
/// How long a token (and the cookie) lives.
pub const TOKEN_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// The claims of our tokens. We write `iat` and `exp` as integers; tokens of the original service carry them as
/// JSON floats (python-jose with `datetime.timestamp()`), which are read too, truncated to whole seconds as
/// python-jose's own check (`int(exp)`) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's (lowercased) email.
    pub email: String,
    /// Issued at, seconds since the epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
}

/// A JWT NumericDate (RFC 7519 §2: seconds, "non-integer values can be represented"): a non-negative integer or
/// a finite non-negative float, truncated to whole seconds.
fn numeric_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative number of seconds")
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<u64, E> {
            Ok(value)
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<u64, E> {
            u64::try_from(value).map_err(|_| E::custom("a negative NumericDate"))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<u64, E> {
            // 2^53: past that a float no longer holds whole seconds exactly (and is far past any real date).
            if value.is_finite() && (0.0..9_007_199_254_740_992.0).contains(&value) {
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "finite, non-negative and below 2^53: truncation to whole seconds is the intent"
                )]
                Ok(value.trunc() as u64)
            } else {
                Err(E::custom("a NumericDate out of range"))
            }
        }
    }
    deserializer.deserialize_any(Visitor)
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
        let secret = secrecy::ExposeSecret::expose_secret(&config.jwt_secret).as_bytes();
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
    ///
    /// `iat`/`exp` may be integers (ours) or floats (the original service's). An `exp` in the past, compared in
    /// whole seconds as python-jose compares it, is expired: both services accept and refuse the same tokens.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let expired = || ApiError::Authentication("Token has expired".to_owned());
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => expired(),
                _ => ApiError::Authentication("Invalid authentication token".to_owned()),
            })?;
        // jsonwebtoken rounds a float `exp` (x.6 becomes x+1); python-jose truncates. Truncate here too.
        if claims.exp < now_secs() {
            return Err(expired());
        }
        Ok(claims)
    }

    /// The subject (`sub`) of the validly signed, unexpired token `req` carries, if any. No database lookup: for
    /// keying the per-user rate limit, not for authenticating (that is [`AuthUser`]).
    pub fn token_subject(&self, req: &HttpRequest) -> Option<Uuid> {
        self.request_claims(req).ok().map(|claims| claims.sub)
    }

    /// The verified claims of the token `req` carries. Verified once per request: the per-user rate limit and the
    /// extractor both ask, and the second gets the claims the first verified (kept in the request's extensions).
    pub fn request_claims(&self, req: &HttpRequest) -> Result<Claims, ApiError> {
        if let Some(VerifiedClaims(claims)) = req.extensions().get::<VerifiedClaims>() {
            return Ok(claims.clone());
        }
        let token = request_token(req)
            .ok_or_else(|| ApiError::Authentication("Not authenticated".to_owned()))?;
        let claims = self.verify(&token)?;
        req.extensions_mut().insert(VerifiedClaims(claims.clone()));
        Ok(claims)
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
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// The user of a request: a valid token whose user still exists (SPEC §2; the original service looks the user up
/// too), checked through [`KnownUsers`]. Reads the [`Authenticator`] and [`KnownUsers`] the app registers as app
/// data of their own.
pub(crate) async fn authenticate(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let not_configured = || ApiError::internal("authentication is not configured");
    let tokens = req
        .app_data::<web::Data<Authenticator>>()
        .ok_or_else(not_configured)?;
    let users = req
        .app_data::<web::Data<KnownUsers>>()
        .ok_or_else(not_configured)?;
    let claims = tokens.request_claims(req)?;
    if !users.exists(UserId::from_uuid(claims.sub)).await? {
        return Err(ApiError::Authentication("User not found".to_owned()));
    }
    req.extensions_mut().insert(RequestUserId(claims.sub));
    Ok(AuthUser {
        id: claims.sub,
        email: claims.email,
    })
}

/// The claims of a request's token once verified (see [`Authenticator::request_claims`]).
#[derive(Debug, Clone)]
struct VerifiedClaims(Claims);

/// The most users [`KnownUsers`] remembers at once (about 100 bytes each); past it the least used are forgotten
/// first, and only cost a lookup.
pub const KNOWN_USERS_CAPACITY: u64 = 100_000;

/// Whether the user a token names still exists (SPEC §2: a deleted user's token is refused).
///
/// The answer comes from the database (one primary-key lookup, on a task of its own) or, for a user found there
/// within the last `ttl`, from a bounded in-process cache of such positive answers, without a query or a spawned
/// task. Only "exists" is remembered: an unknown user is looked up on every request. So a deleted user's token is
/// refused at most `ttl` after the deletion, on every replica (each has its own cache); `ttl` zero turns the cache
/// off and looks up every request.
#[derive(Clone)]
pub struct KnownUsers {
    store: Store,
    cache: Option<moka::sync::Cache<Uuid, ()>>,
}

impl std::fmt::Debug for KnownUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownUsers")
            .field(
                "cached",
                &self.cache.as_ref().map(moka::sync::Cache::entry_count),
            )
            .finish_non_exhaustive()
    }
}

impl KnownUsers {
    /// Looks users up in `store`, remembering those found for `ttl` (zero: never).
    pub fn new(store: Store, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(KNOWN_USERS_CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        Self { store, cache }
    }

    /// Whether `user` exists: from the cache when it was found within the TTL, otherwise from the database.
    pub async fn exists(&self, user: UserId) -> Result<bool, ApiError> {
        let id = user.into_uuid();
        if let Some(cache) = &self.cache
            && cache.contains_key(&id)
        {
            return Ok(true);
        }
        // On a task of its own: actix drops this future when another extractor of the request fails first, and a
        // SQLite query (diesel-async's blocking wrapper) must not be dropped half-way on actix's current-thread
        // runtime. A dropped `JoinHandle` leaves the lookup to finish on its own (and still fills the cache).
        let store = self.store.clone();
        let cache = self.cache.clone();
        actix_web::rt::spawn(async move {
            let exists = store.user_exists(user).await?;
            if exists && let Some(cache) = cache {
                cache.insert(id, ());
            }
            Ok::<_, StoreError>(exists)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
    }
}

/// The bcrypt cost of the original service, of our bcrypt hashes and of the bcrypt dummy.
pub const BCRYPT_COST: u32 = 12;

/// A fixed Argon2id hash (default parameters: m = 19456 KiB, t = 2, p = 1) verified in place of a real one, so an
/// unknown email costs what a known one does.
pub(crate) const DUMMY_ARGON2_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$hqnXnyUzZnGFK8PsDy2NTNS9BmfMngNyG/EnwnmQFGI";

/// A fixed bcrypt cost-12 hash (of a random password nobody knows), the bcrypt counterpart of
/// [`DUMMY_ARGON2_HASH`].
pub(crate) const DUMMY_BCRYPT_HASH: &str =
    "$2b$12$2/keGblYuut.Mr5NxV/hmu3NZzPam8tyJjHo8TX1GCzRkKOFlKQSa";

/// The format of a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    Argon2,
    Bcrypt,
}

fn hash_kind(stored: &str) -> Option<HashKind> {
    if stored.starts_with("$2") {
        Some(HashKind::Bcrypt)
    } else if stored.starts_with("$argon2") {
        Some(HashKind::Argon2)
    } else {
        None
    }
}

fn kind_of(algorithm: PasswordHashAlgorithm) -> HashKind {
    match algorithm {
        PasswordHashAlgorithm::Argon2id => HashKind::Argon2,
        PasswordHashAlgorithm::Bcrypt => HashKind::Bcrypt,
    }
}

/// Hashes a new password with `algorithm` (blocking: Argon2id takes about 20-50 ms and 19 MiB, bcrypt-12 about
/// 250 ms).
pub fn hash_password_with(
    algorithm: PasswordHashAlgorithm,
    password: &str,
) -> Result<String, ApiError> {
    match algorithm {
        PasswordHashAlgorithm::Argon2id => Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(ApiError::internal),
        PasswordHashAlgorithm::Bcrypt => {
            bcrypt::hash(password, BCRYPT_COST).map_err(ApiError::internal)
        }
    }
}

/// Hashes a new password with Argon2id (blocking).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    hash_password_with(PasswordHashAlgorithm::Argon2id, password)
}

/// Checks `password` against a stored Argon2 or bcrypt (`$2a$`/`$2b$`/`$2y$`) hash (blocking).
pub fn verify_password(password: &str, stored: &str) -> bool {
    match hash_kind(stored) {
        Some(HashKind::Bcrypt) => bcrypt::verify(password, stored).unwrap_or(false),
        Some(HashKind::Argon2) => match PasswordHash::new(stored) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
        None => false,
    }
}

/// Whether a hash that just verified should be replaced by one of `algorithm`: another algorithm, a bcrypt cost
/// other than 12, or Argon2 parameters other than the defaults.
pub fn needs_rehash(algorithm: PasswordHashAlgorithm, stored: &str) -> bool {
    match (kind_of(algorithm), hash_kind(stored)) {
        (HashKind::Bcrypt, Some(HashKind::Bcrypt)) => {
            // `$2b$12$…`: the cost is the second field.
            stored.split('$').nth(2) != Some(&format!("{BCRYPT_COST:02}"))
        }
        (HashKind::Argon2, Some(HashKind::Argon2)) => match PasswordHash::new(stored) {
            Ok(parsed) => {
                let current = argon2::Params::default();
                parsed.algorithm != argon2::Algorithm::Argon2id.ident()
                    || argon2::Params::try_from(&parsed).map_or(true, |params| {
                        (params.m_cost(), params.t_cost(), params.p_cost())
                            != (current.m_cost(), current.t_cost(), current.p_cost())
                    })
            }
            Err(_) => true,
        },
        _ => true,
    }
}

/// The result of [`Passwords::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password, or no such user.
    Invalid,
    /// The password matches; the stored hash is current.
    Valid,
    /// The password matches and this new hash (of the configured algorithm) should replace the stored one.
    ValidRehashed(String),
}

/// A hash computation handed to the hashing threads.
type HashJob = Box<dyn FnOnce() + Send + 'static>;

/// Starts `count` threads that run hash computations, and returns their queue. The threads end when every
/// sender is dropped.
///
/// Why threads of their own rather than tokio's blocking pool: unless the process pins glibc's mmap threshold
/// (the `task-api` binary does), glibc keeps a freed 19 MiB Argon2 block in the malloc arena of the thread that
/// freed it, and the blocking pool has hundreds of threads (the SQLite queries run there too): hashing spread
/// over them grew the resident memory far past `concurrency` × 19 MiB (40 concurrent logins with 4 slots, debug
/// build: 579 MB). On `count` dedicated threads at most `count` arenas hold such blocks.
fn spawn_hash_threads(count: usize) -> std::sync::mpsc::Sender<HashJob> {
    let (sender, receiver) = std::sync::mpsc::channel::<HashJob>();
    let receiver = Arc::new(std::sync::Mutex::new(receiver));
    for index in 0..count {
        let receiver = Arc::clone(&receiver);
        // A thread that cannot be spawned leaves the others; with none, the receiver is dropped here and every
        // hash fails with an internal error instead of waiting forever.
        let _ = std::thread::Builder::new()
            .name(format!("password-hash-{index}"))
            .spawn(move || {
                loop {
                    let job = receiver
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    match job {
                        // A panicking computation answers 500 (its result sender is dropped); the thread stays.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            });
    }
    sender
}

/// Password hashing with bounded concurrency and equal timing (issue 15).
///
/// * At most `concurrency` hash computations run at once (each Argon2id one holds 19 MiB); a caller that waits
///   longer than `queue_wait` for a slot gets 503 `SERVICE_UNAVAILABLE` with `Retry-After`. A slot is held by the
///   blocking computation itself, so a client that disconnects does not free it early.
/// * Every verification costs the same whatever the account: it runs one verification of each hash format in
///   use (the configured one plus those found in the database at start), the real hash for the account's
///   format and a dummy of the same cost for the others. An unknown email verifies only dummies. So an unknown
///   email, a wrong password on an Argon2id account and one on a legacy bcrypt-12 account take the same time.
#[derive(Debug, Clone)]
pub struct Passwords {
    algorithm: PasswordHashAlgorithm,
    slots: Arc<Semaphore>,
    /// The queue of the dedicated hashing threads (as many as slots).
    threads: std::sync::mpsc::Sender<HashJob>,
    queue_wait: Duration,
    /// Whether bcrypt / Argon2 hashes were found in the database (the configured format is always paid for).
    stored_bcrypt: Arc<AtomicBool>,
    stored_argon2: Arc<AtomicBool>,
}

impl Passwords {
    /// Hashing per `config`, equal-timed for the configured format until [`Passwords::note_stored_formats`] or
    /// [`Passwords::detect_stored_formats`] adds the formats found in the database.
    pub fn new(config: &PasswordConfig) -> Self {
        let concurrency = config.concurrency.max(1);
        Self {
            algorithm: config.algorithm,
            slots: Arc::new(Semaphore::new(concurrency)),
            threads: spawn_hash_threads(concurrency),
            queue_wait: config.queue_wait,
            stored_bcrypt: Arc::new(AtomicBool::new(false)),
            stored_argon2: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Also pays for these stored formats from now on (never forgets one).
    pub fn note_stored_formats(&self, bcrypt: bool, argon2: bool) {
        if bcrypt {
            self.stored_bcrypt.store(true, Ordering::Relaxed);
        }
        if argon2 {
            self.stored_argon2.store(true, Ordering::Relaxed);
        }
    }

    /// Looks at the database once (two `LIKE` scans of `users`, at start) for bcrypt and Argon2 hashes, and
    /// pays for what it finds. Returns `(bcrypt, argon2)`.
    pub async fn detect_stored_formats(&self, store: &Store) -> Result<(bool, bool), StoreError> {
        let bcrypt = store.has_password_hash_with_prefix("$2").await?;
        let argon2 = store.has_password_hash_with_prefix("$argon2").await?;
        self.note_stored_formats(bcrypt, argon2);
        Ok((bcrypt, argon2))
    }

    fn kinds(&self) -> Vec<HashKind> {
        let mut kinds = vec![kind_of(self.algorithm)];
        for (flag, kind) in [
            (&self.stored_argon2, HashKind::Argon2),
            (&self.stored_bcrypt, HashKind::Bcrypt),
        ] {
            if flag.load(Ordering::Relaxed) && !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }

    /// The algorithm of new and upgraded hashes.
    pub fn algorithm(&self) -> PasswordHashAlgorithm {
        self.algorithm
    }

    /// Whether every verification also pays for a bcrypt-12 check (legacy hashes are present or bcrypt is the
    /// configured algorithm).
    pub fn pays_for_bcrypt(&self) -> bool {
        self.kinds().contains(&HashKind::Bcrypt)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.queue_wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| ApiError::Unavailable("password hashing is at capacity".into()))?
            .map_err(ApiError::internal)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let out = work();
            // The slot is freed when the computation ends, even if the request was dropped meanwhile.
            drop(permit);
            let _ = done.send(out);
        });
        self.threads
            .send(job)
            .map_err(|_| ApiError::internal("the password hashing threads are gone"))?;
        result
            .await
            .map_err(|_| ApiError::internal("a password hashing thread died"))
    }

    /// Hashes a new password with the configured algorithm.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let algorithm = self.algorithm;
        self.run(move || hash_password_with(algorithm, &password))
            .await?
    }

    /// Verifies `password` against `stored` (`None`: the email is unknown) at the same cost either way, and
    /// computes the upgraded hash when the stored one is outdated.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, ApiError> {
        let algorithm = self.algorithm;
        let kinds = self.kinds();
        self.run(move || {
            let stored_kind = stored.as_deref().and_then(hash_kind);
            let mut valid = false;
            for kind in kinds {
                if Some(kind) != stored_kind {
                    let dummy = match kind {
                        HashKind::Argon2 => DUMMY_ARGON2_HASH,
                        HashKind::Bcrypt => DUMMY_BCRYPT_HASH,
                    };
                    let _ = verify_password(&password, dummy);
                }
            }
            if let Some(stored) = stored.as_deref() {
                valid = verify_password(&password, stored);
            }
            if !valid {
                return Ok(Verified::Invalid);
            }
            match stored.as_deref() {
                Some(stored) if needs_rehash(algorithm, stored) => {
                    hash_password_with(algorithm, &password).map(Verified::ValidRehashed)
                }
                _ => Ok(Verified::Valid),
            }
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(secret: &str) -> Authenticator {
        Authenticator::new(&AuthConfig {
            user_cache_ttl: Duration::ZERO,
            ..AuthConfig::defaults_for_tests(secret)
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

    /// The per-user rate limit and the extractor both need the claims: the token's signature is checked once per
    /// request, the second caller gets the first's result (here: an authenticator with another secret, which
    /// would refuse the token, is not asked to verify it again).
    #[test]
    fn a_requests_token_is_verified_once() {
        let auth = authenticator("secret-one-secret-one-secret-one");
        let id = Uuid::new_v4();
        let token = auth.issue(id, "a@b.c").unwrap();
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_http_request();
        assert_eq!(auth.token_subject(&req), Some(id));
        let other = authenticator("secret-two-secret-two-secret-two");
        assert_eq!(other.request_claims(&req).unwrap().sub, id);
        let fresh = actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_http_request();
        assert_eq!(
            other.request_claims(&fresh).unwrap_err().code(),
            "AUTHENTICATION_ERROR"
        );
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
        assert!(!verify_password("anything", DUMMY_ARGON2_HASH));
        assert!(!verify_password("anything", DUMMY_BCRYPT_HASH));
    }

    #[test]
    fn the_dummy_hashes_cost_what_real_ones_do() {
        // A dummy that fails to parse would be rejected at once and give unknown emails away.
        assert!(bcrypt::verify("x", DUMMY_BCRYPT_HASH).is_ok());
        assert!(DUMMY_BCRYPT_HASH.starts_with("$2b$12$"));
        assert!(!needs_rehash(
            PasswordHashAlgorithm::Argon2id,
            DUMMY_ARGON2_HASH
        ));
        assert!(!needs_rehash(
            PasswordHashAlgorithm::Bcrypt,
            DUMMY_BCRYPT_HASH
        ));
    }

    #[test]
    fn outdated_hashes_need_a_rehash() {
        let argon = hash_password("pw-pw-pw-pw").unwrap();
        let bcrypt12 = bcrypt::hash("pw-pw-pw-pw", 12).unwrap();
        let bcrypt4 = bcrypt::hash("pw-pw-pw-pw", 4).unwrap();
        assert!(!needs_rehash(PasswordHashAlgorithm::Argon2id, &argon));
        assert!(needs_rehash(PasswordHashAlgorithm::Argon2id, &bcrypt12));
        assert!(needs_rehash(PasswordHashAlgorithm::Bcrypt, &argon));
        assert!(!needs_rehash(PasswordHashAlgorithm::Bcrypt, &bcrypt12));
        assert!(needs_rehash(PasswordHashAlgorithm::Bcrypt, &bcrypt4));
        let weak_argon = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$hqnXnyUzZnGFK8PsDy2NTNS9BmfMngNyG/EnwnmQFGI";
        assert!(needs_rehash(PasswordHashAlgorithm::Argon2id, weak_argon));
    }

    fn sign(claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn float_and_integer_numeric_dates_are_read() {
        let secret = "a-secret-of-enough-length-0123456789";
        let auth = authenticator(secret);
        let id = Uuid::new_v4();
        let now = now_secs() as f64;
        for (iat, exp) in [
            (
                serde_json::json!(now + 0.123456),
                serde_json::json!(now + 86_400.123456),
            ),
            (
                serde_json::json!(now as u64),
                serde_json::json!(now as u64 + 60),
            ),
        ] {
            let token = sign(
                &serde_json::json!({"sub": id.to_string(), "email": "a@b.c", "iat": iat, "exp": exp}),
                secret,
            );
            let claims = auth.verify(&token).unwrap();
            assert_eq!(claims.sub, id);
        }
        for bad in [
            serde_json::json!(-1.5),
            serde_json::json!("soon"),
            serde_json::json!(1e300),
        ] {
            let token = sign(
                &serde_json::json!({"sub": id.to_string(), "email": "a@b.c", "iat": now, "exp": bad}),
                secret,
            );
            assert_eq!(
                auth.verify(&token).unwrap_err().code(),
                "AUTHENTICATION_ERROR"
            );
        }
    }
}
