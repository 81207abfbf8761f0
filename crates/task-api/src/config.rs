//! Configuration types of the service. The binary composes them from files and the environment; this crate
//! never reads either.
//!
//! The binary also owns every default value (`Settings` in `bins/task-server/src/config.rs`): none of these types
//! implements `Default`, so no production value can come from here unnoticed. Tests that need a whole configuration
//! take the binary's defaults from the `defaults_for_tests` constructors (this crate's `test-util` feature), which a
//! test in the binary keeps equal to its own.
//!
//! The enums read their setting's values with `FromStr` (case-insensitive, surrounding blanks ignored) and print
//! them with `Display`, so the binary parses each value once, when it loads its settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The sidecar client's and the dispatcher's settings, which [`EventsConfig`] contains; re-exported for the binary.
pub use dapr_pubsub_client::{ClientConfig, DispatcherConfig};
use secrecy::SecretString;

use crate::rate_limit::TrustedProxies;

/// A value that is not one of a setting's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct UnknownValue {
    /// The accepted names, for the message.
    expected: &'static str,
}

/// Finds `input` (trimmed, any case) among `names`, each an accepted spelling and its value.
fn parse_name<T: Copy>(
    input: &str,
    names: &[(&str, T)],
    expected: &'static str,
) -> Result<T, UnknownValue> {
    let input = input.trim();
    names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(input))
        .map(|(_, value)| *value)
        .ok_or(UnknownValue { expected })
}

/// The `SameSite` attribute of the auth cookie (`COOKIE_SAMESITE`: `lax`, `strict` or `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSameSite {
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

impl FromStr for CookieSameSite {
    type Err = UnknownValue;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_name(
            input,
            &[
                ("lax", Self::Lax),
                ("strict", Self::Strict),
                ("none", Self::None),
            ],
            "lax, strict or none",
        )
    }
}

impl fmt::Display for CookieSameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lax => "lax",
            Self::Strict => "strict",
            Self::None => "none",
        })
    }
}

/// Token signing and cookie settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 secret (`JWT_SECRET`).
    pub jwt_secret: SecretString,
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

/// The algorithm of new and upgraded password hashes (`PASSWORD_HASH`: `argon2id`, also spelt `argon2`, or
/// `bcrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordHashAlgorithm {
    /// Argon2id with the OWASP minimum parameters (m = 19 MiB, t = 2, p = 1).
    Argon2id,
    /// bcrypt cost 12, the original service's format: keep it while a rollback to the original is possible,
    /// since the original verifies bcrypt only.
    Bcrypt,
}

impl FromStr for PasswordHashAlgorithm {
    type Err = UnknownValue;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_name(
            input,
            &[
                ("argon2id", Self::Argon2id),
                ("argon2", Self::Argon2id),
                ("bcrypt", Self::Bcrypt),
            ],
            "argon2id or bcrypt",
        )
    }
}

impl fmt::Display for PasswordHashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Argon2id => "argon2id",
            Self::Bcrypt => "bcrypt",
        })
    }
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

/// HTTP front settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The allowed CORS origin (`FRONTEND_URL`), if any.
    pub frontend_url: Option<String>,
    /// Requests per minute per client address on the auth routes; 0 disables the limit.
    pub rate_limit_auth_per_minute: u32,
    /// The proxies whose `X-Forwarded-For` gives the client address of that limit (`TRUSTED_PROXIES`); when
    /// empty, the address is always the connection's peer.
    pub trusted_proxies: TrustedProxies,
    /// Requests per minute per user on the task routes; 0 disables the limit.
    pub rate_limit_tasks_per_minute: u32,
    /// The largest accepted JSON body, in bytes.
    pub json_body_limit: usize,
}

/// How events reach the sidecar (`EVENT_DELIVERY`: `fire-and-forget`, also spelt `fire_and_forget`, or
/// `outbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventDelivery {
    /// A bounded in-memory queue published in the background; drops are counted.
    FireAndForget,
    /// Rows in `event_outbox` written in the mutation's transaction, published by a relay.
    Outbox,
}

impl FromStr for EventDelivery {
    type Err = UnknownValue;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_name(
            input,
            &[
                ("fire-and-forget", Self::FireAndForget),
                ("fire_and_forget", Self::FireAndForget),
                ("outbox", Self::Outbox),
            ],
            "fire-and-forget or outbox",
        )
    }
}

impl fmt::Display for EventDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FireAndForget => "fire-and-forget",
            Self::Outbox => "outbox",
        })
    }
}

/// The topic of each event family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `task.*` events (`TOPIC_TASK_EVENTS`).
    pub task_events: String,
    /// `sync.task` events (`TOPIC_TASK_UPDATES`).
    pub task_updates: String,
    /// `reminder.*` events (`TOPIC_REMINDERS`).
    pub reminders: String,
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

/// Event building and publishing settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Whether events are sent to the sidecar (`DAPR_ENABLED`); otherwise they are logged at DEBUG.
    pub dapr_enabled: bool,
    /// The sidecar client, used by both delivery modes: its base URL (`DAPR_HTTP_ENDPOINT`, or
    /// `http://127.0.0.1:{DAPR_HTTP_PORT}`), API token (`DAPR_API_TOKEN`), timeouts and connection pool. Its request
    /// timeout is the per-publish deadline (`DAPR_PUBLISH_TIMEOUT`), see [`EventsConfig::publish_timeout`].
    pub client: ClientConfig,
    /// The pubsub component (`DAPR_PUBSUB_NAME`).
    pub pubsub_name: String,
    /// The delivery mode (`EVENT_DELIVERY`).
    pub delivery: EventDelivery,
    /// Fire-and-forget: the dispatcher's queue capacity (`EVENT_QUEUE_CAPACITY`), batching (`EVENT_BATCH_MAX`,
    /// `EVENT_BATCH_LINGER_MS`; one event per user in a request unless `EVENT_BATCH_SAME_KEY`), lanes, attempts and
    /// backoff. An event
    /// given up after its attempts is counted in `events_failed_total`.
    pub dispatcher: DispatcherConfig,
    /// The CloudEvents `source` (`EVENT_SOURCE`).
    pub source: String,
    /// Topic names.
    pub topics: Topics,
    /// Outbox relay settings.
    pub outbox: OutboxConfig,
}

impl EventsConfig {
    /// The per-publish deadline of both delivery modes (`DAPR_PUBLISH_TIMEOUT`): the client's request timeout.
    pub fn publish_timeout(&self) -> Duration {
        self.client.request_timeout()
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

/// The binary's default configuration, for tests that must run what production runs (issue 18: the tests used to
/// build on library defaults that production never had). Each value is the one `Settings::default()` gives in
/// `bins/task-server/src/config.rs`, which owns them; the test
/// `the_test_constructors_give_the_binary_defaults` there fails when the two differ. Tests change what they need
/// on top (a shorter deadline, no rate limits) and say so.
#[cfg(any(test, feature = "test-util"))]
mod defaults_for_tests {
    use std::time::Duration;

    use dapr_pubsub_client::{ClientConfig, DispatcherConfig};
    use secrecy::SecretString;

    use super::{
        AuthConfig, CookieSameSite, EventDelivery, EventsConfig, HttpConfig, OutboxConfig,
        PasswordConfig, PasswordHashAlgorithm, Topics,
    };
    use crate::rate_limit::TrustedProxies;

    impl HttpConfig {
        /// The binary's defaults.
        pub fn defaults_for_tests() -> Self {
            Self {
                frontend_url: Some("http://localhost:3000".to_owned()),
                rate_limit_auth_per_minute: 10,
                trusted_proxies: TrustedProxies::default(),
                rate_limit_tasks_per_minute: 100,
                json_body_limit: 16 * 1024,
            }
        }
    }

    impl AuthConfig {
        /// The binary's defaults, signing tokens with `jwt_secret`.
        pub fn defaults_for_tests(jwt_secret: &str) -> Self {
            Self {
                jwt_secret: SecretString::from(jwt_secret),
                cookie_secure: false,
                cookie_samesite: CookieSameSite::Lax,
                passwords: PasswordConfig::defaults_for_tests(),
                user_cache_ttl: Duration::from_secs(5),
            }
        }
    }

    impl PasswordConfig {
        /// The binary's defaults.
        pub fn defaults_for_tests() -> Self {
            Self {
                algorithm: PasswordHashAlgorithm::Argon2id,
                concurrency: 4,
                queue_wait: Duration::from_millis(1_000),
            }
        }
    }

    impl EventsConfig {
        /// The binary's defaults: publishing off, fire-and-forget, the sidecar on `127.0.0.1:3500`.
        pub fn defaults_for_tests() -> Self {
            Self {
                dapr_enabled: false,
                client: ClientConfig::localhost(3500)
                    .with_request_timeout(Duration::from_secs(2))
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_pool_idle_timeout(Duration::from_secs(30))
                    .with_pool_max_idle_per_host(32),
                pubsub_name: "pubsub-kafka".to_owned(),
                delivery: EventDelivery::FireAndForget,
                dispatcher: DispatcherConfig::new()
                    .with_queue_capacity(1_000)
                    .with_concurrency(8)
                    .with_max_attempts(5)
                    .with_backoff(Duration::from_millis(100), Duration::from_secs(5))
                    .with_max_batch(32)
                    .with_linger(Duration::from_millis(1)),
                source: "pakaura/api".to_owned(),
                topics: Topics::defaults_for_tests(),
                outbox: OutboxConfig::defaults_for_tests(),
            }
        }
    }

    impl Topics {
        /// The binary's defaults.
        pub fn defaults_for_tests() -> Self {
            Self {
                task_events: "task-events".to_owned(),
                task_updates: "task-updates".to_owned(),
                reminders: "reminders".to_owned(),
            }
        }
    }

    impl OutboxConfig {
        /// The binary's defaults.
        pub fn defaults_for_tests() -> Self {
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
}

#[cfg(test)]
mod checks {
    use super::*;

    // Issue 18: no config type of the libraries has a `Default`, which would let production pick up a value the
    // binary never chose. These stop compiling when one does (`ServiceConfig`'s check is in `startup`).
    static_assertions::assert_not_impl_any!(EventsConfig: Default);
    static_assertions::assert_not_impl_any!(HttpConfig: Default);
    static_assertions::assert_not_impl_any!(AuthConfig: Default);
    static_assertions::assert_not_impl_any!(PasswordConfig: Default);
    static_assertions::assert_not_impl_any!(PasswordHashAlgorithm: Default);
    static_assertions::assert_not_impl_any!(OutboxConfig: Default);
    static_assertions::assert_not_impl_any!(Topics: Default);
    static_assertions::assert_not_impl_any!(EventDelivery: Default);
    static_assertions::assert_not_impl_any!(CookieSameSite: Default);
    static_assertions::assert_not_impl_any!(ClientConfig: Default);
    static_assertions::assert_not_impl_any!(DispatcherConfig: Default);

    #[test]
    fn named_values_parse_in_any_case_and_print_as_they_parse() {
        for (input, value) in [
            ("lax", CookieSameSite::Lax),
            (" Strict ", CookieSameSite::Strict),
            ("NONE", CookieSameSite::None),
        ] {
            assert_eq!(input.parse::<CookieSameSite>(), Ok(value), "{input}");
            assert_eq!(value.to_string().parse::<CookieSameSite>(), Ok(value));
        }
        for (input, value) in [
            ("fire-and-forget", EventDelivery::FireAndForget),
            ("Fire_And_Forget", EventDelivery::FireAndForget),
            ("outbox", EventDelivery::Outbox),
        ] {
            assert_eq!(input.parse::<EventDelivery>(), Ok(value), "{input}");
            assert_eq!(value.to_string().parse::<EventDelivery>(), Ok(value));
        }
        for (input, value) in [
            ("argon2id", PasswordHashAlgorithm::Argon2id),
            ("ARGON2", PasswordHashAlgorithm::Argon2id),
            ("bcrypt", PasswordHashAlgorithm::Bcrypt),
        ] {
            assert_eq!(input.parse::<PasswordHashAlgorithm>(), Ok(value), "{input}");
            assert_eq!(
                value.to_string().parse::<PasswordHashAlgorithm>(),
                Ok(value)
            );
        }
        assert_eq!(
            "sometimes"
                .parse::<CookieSameSite>()
                .unwrap_err()
                .to_string(),
            "expected lax, strict or none"
        );
        assert!("carrier-pigeon".parse::<EventDelivery>().is_err());
        assert!("md5".parse::<PasswordHashAlgorithm>().is_err());
        assert!("".parse::<PasswordHashAlgorithm>().is_err());
    }

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
