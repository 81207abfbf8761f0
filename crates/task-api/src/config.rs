//! Configuration types of the service. The binary composes them from files and the environment; this crate
//! never reads either.

use std::fmt;
use std::time::Duration;

use crate::rate_limit::TrustedProxies;

/// A secret string whose `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `SameSite` attribute of the auth cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSameSite {
    /// `SameSite=Lax` (the default).
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// Token signing and cookie settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 secret (`JWT_SECRET`).
    pub jwt_secret: Secret,
    /// Whether the cookie is `Secure` (`COOKIE_SECURE`).
    pub cookie_secure: bool,
    /// The cookie's `SameSite` (`COOKIE_SAMESITE`).
    pub cookie_samesite: CookieSameSite,
    /// Password hashing settings.
    pub passwords: PasswordConfig,
    /// How long a token's user, once found in the database, is taken to exist without asking again
    /// (`AUTH_USER_CACHE_TTL_MS`): a deleted user's token is refused at most this long after the deletion. Zero
    /// looks the user up on every request.
    pub user_cache_ttl: Duration,
}

/// The algorithm of new and upgraded password hashes (`PASSWORD_HASH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordHashAlgorithm {
    /// Argon2id with the OWASP minimum parameters (m = 19 MiB, t = 2, p = 1), the default.
    #[default]
    Argon2id,
    /// bcrypt cost 12, the original service's format: keep it while a rollback to the original is possible,
    /// since the original verifies bcrypt only.
    Bcrypt,
}

/// How passwords are hashed and how much hashing may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordConfig {
    /// The algorithm of new and upgraded hashes (`PASSWORD_HASH`).
    pub algorithm: PasswordHashAlgorithm,
    /// How many hash computations (register, login) may run at once (`PASSWORD_HASH_CONCURRENCY`). Each Argon2id
    /// computation holds 19 MiB, so this bounds the memory that logins can take.
    pub concurrency: usize,
    /// How long a login or register waits for a hashing slot before it is answered 503 with `Retry-After`
    /// (`PASSWORD_HASH_QUEUE_WAIT_MS`).
    pub queue_wait: Duration,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            algorithm: PasswordHashAlgorithm::Argon2id,
            concurrency: 4,
            queue_wait: Duration::from_millis(1_000),
        }
    }
}

/// HTTP front settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The allowed CORS origin (`FRONTEND_URL`), if any.
    pub frontend_url: Option<String>,
    /// Requests per minute per client address on the auth routes; 0 disables the limit.
    pub rate_limit_auth_per_minute: u32,
    /// The proxies whose `X-Forwarded-For` gives the client address of that limit (`TRUSTED_PROXIES`); empty by
    /// default, when the address is always the connection's peer.
    pub trusted_proxies: TrustedProxies,
    /// Requests per minute per user on the task routes; 0 disables the limit.
    pub rate_limit_tasks_per_minute: u32,
    /// The largest accepted JSON body, in bytes.
    pub json_body_limit: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            frontend_url: None,
            rate_limit_auth_per_minute: 10,
            trusted_proxies: TrustedProxies::default(),
            rate_limit_tasks_per_minute: 100,
            json_body_limit: 16 * 1024,
        }
    }
}

/// How events reach the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDelivery {
    /// A bounded in-memory queue published in the background; drops are counted (the default).
    FireAndForget,
    /// Rows in `event_outbox` written in the mutation's transaction, published by a relay.
    Outbox,
}

/// The topic of each event family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `task.*` events (`TOPIC_TASK_EVENTS`, default `task-events`).
    pub task_events: String,
    /// `sync.task` events (`TOPIC_TASK_UPDATES`, default `task-updates`).
    pub task_updates: String,
    /// `reminder.*` events (`TOPIC_REMINDERS`, default `reminders`).
    pub reminders: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            task_events: "task-events".to_owned(),
            task_updates: "task-updates".to_owned(),
            reminders: "reminders".to_owned(),
        }
    }
}

/// Settings of the outbox relay.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Rows claimed per round.
    pub batch_size: u32,
    /// How often the relay looks for due rows when nothing wakes it.
    pub poll_interval: Duration,
    /// Rejections of one event (4xx answers other than 408 and 429) after which its row is moved aside; outages
    /// (no connection, timeout, 5xx) never count.
    pub max_attempts: u32,
    /// The first retry delay; doubled per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// How long the relay waits after a commit woke it, or after a round that was not full, before claiming:
    /// rows committed meanwhile share the round (fewer claims and bulk requests per event), at the price of
    /// that much delivery latency.
    pub linger: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(500),
            max_attempts: 20,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            linger: Duration::from_millis(5),
        }
    }
}

/// Event building and publishing settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Whether events are sent to the sidecar (`DAPR_ENABLED`); otherwise they are logged at DEBUG.
    pub dapr_enabled: bool,
    /// The sidecar's base URL (`DAPR_HTTP_ENDPOINT`, or `http://127.0.0.1:{DAPR_HTTP_PORT}`).
    pub dapr_endpoint: String,
    /// The sidecar API token (`DAPR_API_TOKEN`).
    pub dapr_api_token: Option<Secret>,
    /// The pubsub component (`DAPR_PUBSUB_NAME`, default `pubsub-kafka`).
    pub pubsub_name: String,
    /// The per-publish deadline (`DAPR_PUBLISH_TIMEOUT`, default 2 s).
    pub publish_timeout: Duration,
    /// The delivery mode (`EVENT_DELIVERY`).
    pub delivery: EventDelivery,
    /// The in-memory queue capacity (`EVENT_QUEUE_CAPACITY`).
    pub queue_capacity: usize,
    /// Fire-and-forget: the most queued events of one topic and trace, one per user, sent as one bulk publish request
    /// (`EVENT_BATCH_MAX`; 1 sends every event on its own).
    pub batch_max: usize,
    /// Fire-and-forget: how long a publishing lane waits for a batch to fill (`EVENT_BATCH_LINGER_MS`).
    pub batch_linger: Duration,
    /// Fire-and-forget: attempts of one event before it is given up and counted in `events_failed_total`.
    pub max_attempts: u32,
    /// The CloudEvents `source` (`EVENT_SOURCE`, default `pakaura/api`).
    pub source: String,
    /// Topic names.
    pub topics: Topics,
    /// Outbox relay settings.
    pub outbox: OutboxConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            dapr_enabled: false,
            dapr_endpoint: "http://127.0.0.1:3500".to_owned(),
            dapr_api_token: None,
            pubsub_name: "pubsub-kafka".to_owned(),
            publish_timeout: Duration::from_secs(2),
            delivery: EventDelivery::FireAndForget,
            queue_capacity: 10_000,
            batch_max: 32,
            batch_linger: Duration::from_millis(1),
            max_attempts: 5,
            source: "pakaura/api".to_owned(),
            topics: Topics::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

/// Checks a CORS origin (`FRONTEND_URL`) before the server starts, so a bad value fails naming the key instead of
/// actix-cors refusing it when the first worker starts ("Can not start server service 0"): an `http://` or
/// `https://` origin (scheme, host, optional port; a trailing `/` is tolerated), never `*`, which credentialed
/// CORS forbids.
///
/// # Errors
/// Why the value is not a usable origin.
pub fn check_cors_origin(origin: &str) -> Result<(), String> {
    if origin.trim() == "*" {
        return Err(
            "must be the frontend's origin (such as https://app.example.com), not '*': credentialed CORS \
             cannot allow every origin"
                .to_owned(),
        );
    }
    let trimmed = origin.trim_end_matches('/');
    let uri: actix_web::http::Uri = trimmed
        .parse()
        .map_err(|_| "is not a URL origin such as https://app.example.com".to_owned())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri
        .path_and_query()
        .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/");
    if !scheme_ok
        || uri.authority().is_none_or(|a| a.host().is_empty())
        || !bare
        || trimmed.contains('@')
    {
        return Err(
            "must be an origin: http:// or https://, a host and an optional port, no path, query or user \
             (such as https://app.example.com)"
                .to_owned(),
        );
    }
    actix_web::http::header::HeaderValue::from_str(trimmed)
        .map_err(|_| "is not a valid header value".to_owned())?;
    Ok(())
}

/// Checks a CloudEvents `source` (`EVENT_SOURCE`): a non-empty URI-reference, as every event built with it must
/// carry, so a bad value fails at start instead of every mutation failing with a 500.
///
/// # Errors
/// Why the value is not a valid `source`.
pub fn check_event_source(source: &str) -> Result<(), String> {
    cloudevents_model::check_source(source).map_err(|rule| {
        format!("must be a URI-reference such as pakaura/api or https://example.com/api: {rule}")
    })
}

/// Checks the sidecar base URL (`DAPR_HTTP_ENDPOINT`) the way the sidecar client will read it (absolute
/// `http://host[:port][/path]`, no credentials, no query), so a bad value fails at start naming the key instead of
/// only when publishing is turned on.
///
/// # Errors
/// Why the client refuses the URL.
pub fn check_dapr_endpoint(url: &str) -> Result<(), String> {
    dapr_pubsub_client::ClientConfig::new(url)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// Checks a value sent as an HTTP header (`DAPR_API_TOKEN`): visible ASCII and spaces/tabs only, so a bad value
/// fails at start instead of every publish failing.
///
/// # Errors
/// When the value cannot be a header value.
pub fn check_header_value(value: &str) -> Result<(), String> {
    actix_web::http::header::HeaderValue::from_str(value)
        .map(drop)
        .map_err(|_| {
            "must be a valid HTTP header value (visible ASCII, no control characters)".to_owned()
        })
}

#[cfg(test)]
mod checks {
    use super::*;

    #[test]
    fn cors_origins_are_checked_like_actix_cors_uses_them() {
        for good in [
            "http://localhost:3000",
            "https://app.example.com",
            "https://app.example.com/",
            "http://[::1]:8080",
        ] {
            assert_eq!(check_cors_origin(good), Ok(()), "{good}");
        }
        for bad in [
            "*",
            " * ",
            "app.example.com",
            "ftp://example.com",
            "https://example.com/app",
            "https://example.com?x=1",
            "https://user:pw@example.com",
            "https://exa mple.com",
            "",
        ] {
            assert!(check_cors_origin(bad).is_err(), "{bad:?}");
        }
    }

    /// Whether actix-cors starts with `origin` allowed (it records an error for values it refuses and fails when
    /// the service starts).
    async fn actix_cors_takes(origin: &str) -> bool {
        let app = actix_web::App::new()
            .wrap(actix_cors::Cors::default().allowed_origin(origin))
            .route("/", actix_web::web::get().to(actix_web::HttpResponse::Ok));
        // `init_service` panics when a middleware factory fails; the panic is the answer here.
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            actix_web::test::init_service(app),
        ))
        .await
        .is_ok()
    }

    #[actix_web::test]
    async fn what_the_check_accepts_actix_cors_accepts() {
        assert!(
            !actix_cors_takes("*").await,
            "the case the check exists for"
        );
        for good in [
            "http://localhost:3000",
            "https://app.example.com",
            "http://[::1]:8080",
        ] {
            assert_eq!(check_cors_origin(good), Ok(()), "{good}");
            assert!(actix_cors_takes(good).await, "{good}");
        }
    }

    #[test]
    fn event_sources_must_be_uri_references() {
        assert_eq!(check_event_source("pakaura/api"), Ok(()));
        assert_eq!(check_event_source("https://example.com/api"), Ok(()));
        for bad in ["", "has space", "%zz", "a\u{1}b"] {
            assert!(check_event_source(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dapr_endpoints_are_checked_like_the_client_reads_them() {
        assert_eq!(check_dapr_endpoint("http://127.0.0.1:3500"), Ok(()));
        for bad in [
            "https://sidecar:3500",
            "http://u:pw@sidecar:3500",
            "http://sidecar:3500?x=1",
        ] {
            let message = check_dapr_endpoint(bad).unwrap_err();
            assert!(!message.contains("pw"), "{message}");
        }
    }

    #[test]
    fn header_values_refuse_control_characters() {
        assert_eq!(check_header_value("abc-DEF.123_~"), Ok(()));
        for bad in ["line\nbreak", "nul\0", "del\u{7f}"] {
            assert!(check_header_value(bad).is_err(), "{bad:?}");
        }
    }
}
