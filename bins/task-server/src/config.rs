//! Configuration composition: defaults < optional TOML file (`--config`) < environment.
//!
//! The environment names are the original service's, honoured exactly (SPEC §5), plus ours. Every name the binary
//! reads is listed in [`ENV_NAMES`] and in `.env.sample` at the repository root (a test keeps them equal):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `sqlite://pakaura.db` | `postgres://…`/`postgresql://…` selects PostgreSQL, `sqlite://PATH` the embedded database; the original service's SQLAlchemy forms (`postgresql+asyncpg://…`, `postgresql+psycopg://…`, `sqlite+aiosqlite:///…`) are mapped and the mapping logged |
//! | `DATABASE_POOL_SIZE` | `10` | connections in the pool (at least 2) |
//! | `JWT_SECRET` | random per process (warned) | HS256 signing secret |
//! | `DAPR_ENABLED` | `false` | send events to the sidecar; otherwise log them at DEBUG |
//! | `DAPR_HTTP_PORT` | `3500` | sidecar port on 127.0.0.1 (when `DAPR_HTTP_ENDPOINT` is unset) |
//! | `DAPR_HTTP_ENDPOINT` | unset | sidecar base URL (`http://host[:port]`, checked at start), wins over `DAPR_HTTP_PORT` |
//! | `DAPR_API_TOKEN` | unset | sent as `dapr-api-token`; must be a valid header value |
//! | `DAPR_PUBSUB_NAME` | `pubsub-kafka` | pubsub component |
//! | `DAPR_PUBLISH_TIMEOUT` | `2.0` | per-publish deadline in seconds (float); also the sidecar connect timeout, at most 1 s |
//! | `COOKIE_SECURE` | `false` | `Secure` attribute of the auth cookie |
//! | `COOKIE_SAMESITE` | `lax` | `lax`, `strict` or `none` |
//! | `FRONTEND_URL` | `http://localhost:3000` | allowed CORS origin: `http(s)://host[:port]`, never `*`; empty: no cross-origin access |
//! | `RATE_LIMIT_AUTH_PER_MINUTE` | `10` | auth requests per client address per minute (0: off) |
//! | `RATE_LIMIT_TASKS_PER_MINUTE` | `100` | task requests per user per minute (0: off) |
//! | `TRUSTED_PROXIES` | empty | comma-separated IPs and CIDR ranges of the proxies whose `X-Forwarded-For` names the client address of the auth limit; empty: the connection's peer is the client |
//! | `HOST` / `PORT` | `0.0.0.0` / `8000` | listen address |
//! | `EVENT_DELIVERY` | `fire-and-forget` | or `outbox` |
//! | `EVENT_QUEUE_CAPACITY` | `1000` | in-memory queue size of fire-and-forget |
//! | `EVENT_BATCH_MAX` | `32` | fire-and-forget: most queued events of one topic, user and trace per bulk request (1: none) |
//! | `EVENT_BATCH_LINGER_MS` | `1` | fire-and-forget: how long an otherwise idle publishing lane waits for a batch to fill |
//! | `EVENT_BATCH_SAME_KEY` | `false` | fire-and-forget: a bulk request may carry several consecutive events of one user and topic; keeps order only where the pub/sub component publishes a bulk request in order and all-or-nothing per key (docs/EVENTS.md) |
//! | `EVENT_SOURCE` | `pakaura/api` | CloudEvents `source`, a URI-reference |
//! | `TOPIC_TASK_EVENTS` / `TOPIC_TASK_UPDATES` / `TOPIC_REMINDERS` | `task-events` / `task-updates` / `reminders` | topics |
//! | `OUTBOX_MAX_ATTEMPTS` | `20` | rejections (4xx) of one event before its outbox row is moved aside; outages are retried without limit |
//! | `OUTBOX_BATCH_SIZE` | `100` | rows the relay claims per round |
//! | `OUTBOX_POLL_INTERVAL_MS` | `500` | relay polling interval |
//! | `LOG_FORMAT` | `pretty` | `json` or `pretty` |
//! | `LOG_LEVEL` | `info` | `trace`, `debug`, `info`, `warn` (`warning`), `error`, `critical`: slog's names, any case |
//! | `SHUTDOWN_TIMEOUT_SECONDS` | `25` | graceful shutdown deadline, one for both the request and the event drain |
//! | `TASK_CONFIG` | unset | TOML file, same as `--config` |
//! | `PASSWORD_HASH` | `argon2id` | algorithm of new and upgraded password hashes: `argon2id`, or `bcrypt` (cost 12, what the original service verifies: keep it while a rollback is possible) |
//! | `PASSWORD_HASH_CONCURRENCY` | `4` | hash computations at once (Argon2id: 19 MiB each) |
//! | `PASSWORD_HASH_QUEUE_WAIT_MS` | `1000` | how long a login or register waits for a hashing slot before 503 with `Retry-After` |
//! | `MIGRATE_ON_START` | `false` | `serve` applies pending PostgreSQL migrations under an advisory lock instead of refusing to start |
//! | `AUTH_USER_CACHE_TTL_MS` | `5000` | how long a token's user, once found, is taken to exist without a query (a deleted user's token is refused at most this long after the deletion); `0` looks up every request |
//!
//! The TOML file uses the same names in lowercase (`port = 8080`).
//!
//! This module owns every default of the running service: the table above ([`Settings::default`]) and the
//! constants below for what is not a setting. The library config types have no defaults of their own; the
//! `defaults_for_tests` constructors of `task_api::config` give tests these same values, and a test here keeps
//! them equal.
//!
//! Values with a fixed set of names (`EVENT_DELIVERY`, `COOKIE_SAMESITE`, `PASSWORD_HASH`, `LOG_FORMAT`,
//! `LOG_LEVEL`) and `TRUSTED_PROXIES` are parsed once, when the settings load: [`Settings`] holds the parsed
//! values.

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use task_api::config::{
    AuthConfig, ClientConfig, CookieSameSite, DispatcherConfig, EventDelivery, EventsConfig,
    HttpConfig, OutboxConfig, PasswordConfig, PasswordHashAlgorithm, Topics,
};
use task_api::rate_limit::TrustedProxies;

use crate::logging::LogFormat;

/// Every environment variable the binary reads.
pub(crate) const ENV_NAMES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "JWT_SECRET",
    "DAPR_ENABLED",
    "DAPR_HTTP_PORT",
    "DAPR_HTTP_ENDPOINT",
    "DAPR_API_TOKEN",
    "DAPR_PUBSUB_NAME",
    "DAPR_PUBLISH_TIMEOUT",
    "COOKIE_SECURE",
    "COOKIE_SAMESITE",
    "FRONTEND_URL",
    "RATE_LIMIT_AUTH_PER_MINUTE",
    "RATE_LIMIT_TASKS_PER_MINUTE",
    "TRUSTED_PROXIES",
    "HOST",
    "PORT",
    "EVENT_DELIVERY",
    "EVENT_QUEUE_CAPACITY",
    "EVENT_BATCH_MAX",
    "EVENT_BATCH_LINGER_MS",
    "EVENT_BATCH_SAME_KEY",
    "EVENT_SOURCE",
    "TOPIC_TASK_EVENTS",
    "TOPIC_TASK_UPDATES",
    "TOPIC_REMINDERS",
    "OUTBOX_MAX_ATTEMPTS",
    "OUTBOX_BATCH_SIZE",
    "OUTBOX_POLL_INTERVAL_MS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "SHUTDOWN_TIMEOUT_SECONDS",
    // Cutover from the original service (issue 16) and bounded hashing (issue 15).
    "PASSWORD_HASH",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_QUEUE_WAIT_MS",
    "MIGRATE_ON_START",
    // The per-request user check (issue 17).
    "AUTH_USER_CACHE_TTL_MS",
    CONFIG_FILE_ENV,
];

/// Attempts of a fire-and-forget event before it is given up (about 1.5 s of backoff, or 5 publish deadlines
/// against a hanging sidecar): the queue is memory, and an outage longer than that is the outbox's job.
const FIRE_AND_FORGET_MAX_ATTEMPTS: u32 = 5;
/// Fire-and-forget: ordered publishing lanes, each with one request to the sidecar in flight.
const FIRE_AND_FORGET_LANES: usize = 8;
/// Fire-and-forget: the wait before the first retry, doubled per retry up to [`FIRE_AND_FORGET_MAX_BACKOFF`]; each
/// wait is randomised between half and all of it.
const FIRE_AND_FORGET_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Fire-and-forget: the longest wait between two attempts.
const FIRE_AND_FORGET_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Outbox relay: the first retry delay of an event, doubled per attempt up to [`OUTBOX_MAX_BACKOFF`].
const OUTBOX_FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Outbox relay: the longest retry delay.
const OUTBOX_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Outbox relay: how long it waits after being woken before claiming, so rows committed meanwhile share the round.
const OUTBOX_LINGER: Duration = Duration::from_millis(5);

/// The longest TCP connect to the sidecar. The sidecar is local (loopback, or the pod's own network), so a
/// connection that has not come within a second is not coming: it fails as a connect error, which both delivery
/// modes treat as an outage (retried), instead of using up the whole publish deadline. See
/// [`dapr_connect_timeout`].
const DAPR_CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(1);
/// How long an idle connection to the sidecar is kept in the pool.
const DAPR_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most idle connections to the sidecar kept in the pool (at least the lanes, so each keeps its connection).
const DAPR_POOL_MAX_IDLE: usize = 32;

/// The largest accepted JSON body in bytes (16 KiB; larger requests are answered 413, docs/SECURITY.md).
const JSON_BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The sidecar connect timeout for a publish deadline (`DAPR_PUBLISH_TIMEOUT`): the deadline itself, at most
/// [`DAPR_CONNECT_TIMEOUT_CAP`]. The deadline covers the connect too, so a longer connect timeout could never
/// apply.
fn dapr_connect_timeout(publish_timeout: Duration) -> Duration {
    publish_timeout.min(DAPR_CONNECT_TIMEOUT_CAP)
}
/// The most `PASSWORD_HASH_CONCURRENCY`: 64 Argon2id computations hold 1.2 GiB.
const MAX_PASSWORD_HASH_CONCURRENCY: usize = 64;

/// The largest `EVENT_BATCH_MAX`: a bulk request of 1000 events of about 1 KB stays far below daprd's 4 MiB
/// body limit (and the dispatcher splits anything larger anyway).
const MAX_EVENT_BATCH: usize = 1000;

/// The longest `EVENT_BATCH_LINGER_MS`: a lane that waits longer delays every event by as much.
const MAX_EVENT_BATCH_LINGER_MS: u64 = 1000;

/// The environment variable naming the TOML file (read by the CLI, like `--config`).
pub(crate) const CONFIG_FILE_ENV: &str = "TASK_CONFIG";

/// Why the configuration cannot be used; every message names the key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// A value is missing, of the wrong type, or not acceptable.
    #[error("invalid value for {key}: {reason}")]
    Invalid {
        /// The environment variable (the TOML key is the same in lowercase).
        key: String,
        /// Why.
        reason: String,
    },
}

/// The flat settings, one field per environment variable (lowercased).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// `DATABASE_URL`.
    pub(crate) database_url: String,
    /// `DATABASE_POOL_SIZE`.
    pub(crate) database_pool_size: u32,
    /// `JWT_SECRET`.
    #[serde(default)]
    pub(crate) jwt_secret: Option<String>,
    /// `DAPR_ENABLED`.
    pub(crate) dapr_enabled: bool,
    /// `DAPR_HTTP_PORT`.
    pub(crate) dapr_http_port: u16,
    /// `DAPR_HTTP_ENDPOINT`.
    #[serde(default)]
    pub(crate) dapr_http_endpoint: Option<String>,
    /// `DAPR_API_TOKEN`.
    #[serde(default)]
    pub(crate) dapr_api_token: Option<String>,
    /// `DAPR_PUBSUB_NAME`.
    pub(crate) dapr_pubsub_name: String,
    /// `DAPR_PUBLISH_TIMEOUT` in seconds.
    pub(crate) dapr_publish_timeout: f64,
    /// `COOKIE_SECURE`.
    pub(crate) cookie_secure: bool,
    /// `COOKIE_SAMESITE`.
    #[serde(with = "parsed")]
    pub(crate) cookie_samesite: CookieSameSite,
    /// `FRONTEND_URL`.
    pub(crate) frontend_url: String,
    /// `RATE_LIMIT_AUTH_PER_MINUTE`.
    pub(crate) rate_limit_auth_per_minute: u32,
    /// `RATE_LIMIT_TASKS_PER_MINUTE`.
    pub(crate) rate_limit_tasks_per_minute: u32,
    /// `TRUSTED_PROXIES`: comma-separated IP addresses and CIDR ranges.
    #[serde(with = "trusted_proxies")]
    pub(crate) trusted_proxies: TrustedProxies,
    /// `HOST`.
    pub(crate) host: String,
    /// `PORT`.
    pub(crate) port: u16,
    /// `EVENT_DELIVERY`.
    #[serde(with = "parsed")]
    pub(crate) event_delivery: EventDelivery,
    /// `EVENT_QUEUE_CAPACITY`.
    pub(crate) event_queue_capacity: usize,
    /// `EVENT_BATCH_MAX`.
    pub(crate) event_batch_max: usize,
    /// `EVENT_BATCH_LINGER_MS`.
    pub(crate) event_batch_linger_ms: u64,
    /// `EVENT_BATCH_SAME_KEY`.
    pub(crate) event_batch_same_key: bool,
    /// `EVENT_SOURCE`.
    pub(crate) event_source: String,
    /// `TOPIC_TASK_EVENTS`.
    pub(crate) topic_task_events: String,
    /// `TOPIC_TASK_UPDATES`.
    pub(crate) topic_task_updates: String,
    /// `TOPIC_REMINDERS`.
    pub(crate) topic_reminders: String,
    /// `OUTBOX_MAX_ATTEMPTS`.
    pub(crate) outbox_max_attempts: u32,
    /// `OUTBOX_BATCH_SIZE`.
    pub(crate) outbox_batch_size: u32,
    /// `OUTBOX_POLL_INTERVAL_MS`.
    pub(crate) outbox_poll_interval_ms: u64,
    /// `LOG_FORMAT`.
    #[serde(with = "parsed")]
    pub(crate) log_format: LogFormat,
    /// `LOG_LEVEL`.
    #[serde(with = "log_level")]
    pub(crate) log_level: slog::Level,
    /// `SHUTDOWN_TIMEOUT_SECONDS`.
    pub(crate) shutdown_timeout_seconds: u64,
    // ---- cutover and password hashing ----
    /// `PASSWORD_HASH`: `argon2id` or `bcrypt`.
    #[serde(with = "parsed")]
    pub(crate) password_hash: PasswordHashAlgorithm,
    /// `PASSWORD_HASH_CONCURRENCY`.
    pub(crate) password_hash_concurrency: usize,
    /// `PASSWORD_HASH_QUEUE_WAIT_MS`.
    pub(crate) password_hash_queue_wait_ms: u64,
    /// `MIGRATE_ON_START`.
    pub(crate) migrate_on_start: bool,
    /// `AUTH_USER_CACHE_TTL_MS`.
    pub(crate) auth_user_cache_ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://pakaura.db".to_owned(),
            database_pool_size: 10,
            jwt_secret: None,
            dapr_enabled: false,
            dapr_http_port: 3500,
            dapr_http_endpoint: None,
            dapr_api_token: None,
            dapr_pubsub_name: "pubsub-kafka".to_owned(),
            dapr_publish_timeout: 2.0,
            cookie_secure: false,
            cookie_samesite: CookieSameSite::Lax,
            frontend_url: "http://localhost:3000".to_owned(),
            rate_limit_auth_per_minute: 10,
            rate_limit_tasks_per_minute: 100,
            trusted_proxies: TrustedProxies::default(),
            host: "0.0.0.0".to_owned(),
            port: 8000,
            event_delivery: EventDelivery::FireAndForget,
            event_queue_capacity: 1_000,
            event_batch_max: 32,
            event_batch_linger_ms: 1,
            event_batch_same_key: false,
            event_source: "pakaura/api".to_owned(),
            topic_task_events: "task-events".to_owned(),
            topic_task_updates: "task-updates".to_owned(),
            topic_reminders: "reminders".to_owned(),
            outbox_max_attempts: 20,
            outbox_batch_size: 100,
            outbox_poll_interval_ms: 500,
            log_format: LogFormat::Pretty,
            log_level: slog::Level::Info,
            shutdown_timeout_seconds: 25,
            password_hash: PasswordHashAlgorithm::Argon2id,
            password_hash_concurrency: 4,
            password_hash_queue_wait_ms: 1_000,
            migrate_on_start: false,
            auth_user_cache_ttl_ms: 5_000,
        }
    }
}

/// Serde for a setting read with `FromStr` and written with `Display`: parsed once, as the settings load. A bad
/// value fails there, and figment's error names its key.
mod parsed {
    use super::*;

    pub(super) fn serialize<T: Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for `LOG_LEVEL`: slog's own names (`slog::Level: FromStr`, any case: `trace`, `debug`, `info`,
/// `warn`/`warning`, `error`, `critical`, and their prefixes), written as lowercase full names.
mod log_level {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        level: &slog::Level,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&level.as_str().to_ascii_lowercase())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<slog::Level, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim().parse().map_err(|()| {
            serde::de::Error::custom("expected trace, debug, info, warn, error or critical")
        })
    }
}

/// Serde for `TRUSTED_PROXIES`: a comma-separated list of IP addresses and CIDR ranges.
mod trusted_proxies {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        proxies: &TrustedProxies,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<String> = proxies.networks().iter().map(ToString::to_string).collect();
        serializer.serialize_str(&list.join(","))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<TrustedProxies, D::Error> {
        let text = String::deserialize(deserializer)?;
        TrustedProxies::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl FromStr for LogFormat {
    type Err = &'static str;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" | "terminal" | "text" => Ok(LogFormat::Pretty),
            _ => Err("expected json or pretty"),
        }
    }
}

impl Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        })
    }
}

/// The environment variables of [`ENV_NAMES`], each as an exact string (empty means unset). Numbers and booleans
/// are interpreted at extraction (`extract_lossy`: `1`/`0`, `yes`/`no`, `on`/`off`, `true`/`false`), so a secret
/// such as `00123` keeps its leading zeros.
struct RawEnv;

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for name in ENV_NAMES
            .iter()
            .copied()
            .filter(|name| *name != CONFIG_FILE_ENV)
        {
            match std::env::var(name) {
                Ok(value) if value.is_empty() => {}
                Ok(value) => {
                    dict.insert(name.to_ascii_lowercase(), Value::from(value));
                }
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(figment::Error::from(format!("{name} is not valid UTF-8")));
                }
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// The figment of defaults, the optional file and the environment.
pub(crate) fn figment(config_file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = config_file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(RawEnv)
}

/// Loads and checks the settings.
pub(crate) fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let settings: Settings = figment(config_file)
        .extract_lossy()
        .map_err(extract_error)?;
    settings.validate()?;
    Ok(settings)
}

/// Names the key of the first extraction error the way operators write it (`PORT`), with its source.
fn extract_error(err: figment::Error) -> ConfigError {
    let first = err.into_iter().next();
    match first {
        Some(error) if !error.path.is_empty() => {
            let key = error
                .path
                .last()
                .map(|k| k.to_ascii_uppercase())
                .unwrap_or_default();
            let source = error
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut reason = error.kind.to_string();
            if !source.is_empty() {
                reason.push_str(&format!(" (from {source})"));
            }
            ConfigError::Invalid { key, reason }
        }
        Some(error) => ConfigError::Invalid {
            key: "configuration".to_owned(),
            reason: error.to_string(),
        },
        None => ConfigError::Invalid {
            key: "configuration".to_owned(),
            reason: "unknown error".to_owned(),
        },
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Settings {
    /// Checks what types alone cannot.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        let known = ["postgres://", "postgresql://", "sqlite://"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) || known.contains(&url.as_str()) {
            return Err(invalid(
                "DATABASE_URL",
                "expected postgres://…, postgresql://…, sqlite://PATH or a SQLAlchemy form such as \
                postgresql+asyncpg://…",
            ));
        }
        if !(1..=MAX_PASSWORD_HASH_CONCURRENCY).contains(&self.password_hash_concurrency) {
            return Err(invalid(
                "PASSWORD_HASH_CONCURRENCY",
                format!("must be between 1 and {MAX_PASSWORD_HASH_CONCURRENCY}"),
            ));
        }
        if self.database_pool_size < 2 {
            return Err(invalid("DATABASE_POOL_SIZE", "must be at least 2"));
        }
        if !(self.dapr_publish_timeout.is_finite() && self.dapr_publish_timeout > 0.0) {
            return Err(invalid(
                "DAPR_PUBLISH_TIMEOUT",
                "must be a positive number of seconds",
            ));
        }
        if self.dapr_publish_timeout > 3600.0 {
            return Err(invalid(
                "DAPR_PUBLISH_TIMEOUT",
                "must be at most 3600 seconds",
            ));
        }
        if let Some(endpoint) = non_empty(&self.dapr_http_endpoint) {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "DAPR_HTTP_ENDPOINT",
                    "expected an http:// or https:// URL",
                ));
            }
            // Checked even with DAPR_ENABLED=false, so turning publishing on later cannot reveal it.
            task_api::config::check_dapr_endpoint(endpoint.trim_end_matches('/'))
                .map_err(|reason| invalid("DAPR_HTTP_ENDPOINT", reason))?;
        }
        if self.dapr_pubsub_name.trim().is_empty() {
            return Err(invalid("DAPR_PUBSUB_NAME", "must not be empty"));
        }
        if self.event_source.trim().is_empty() {
            return Err(invalid("EVENT_SOURCE", "must not be empty"));
        }
        task_api::config::check_event_source(self.event_source.trim())
            .map_err(|reason| invalid("EVENT_SOURCE", reason))?;
        if !self.frontend_url.trim().is_empty() {
            task_api::config::check_cors_origin(self.frontend_url.trim())
                .map_err(|reason| invalid("FRONTEND_URL", reason))?;
        }
        if let Some(token) = non_empty(&self.dapr_api_token) {
            task_api::config::check_header_value(token)
                .map_err(|reason| invalid("DAPR_API_TOKEN", reason))?;
        }
        for (key, topic) in [
            ("TOPIC_TASK_EVENTS", &self.topic_task_events),
            ("TOPIC_TASK_UPDATES", &self.topic_task_updates),
            ("TOPIC_REMINDERS", &self.topic_reminders),
        ] {
            if topic.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.event_queue_capacity == 0 {
            return Err(invalid("EVENT_QUEUE_CAPACITY", "must be at least 1"));
        }
        if !(1..=MAX_EVENT_BATCH).contains(&self.event_batch_max) {
            return Err(invalid(
                "EVENT_BATCH_MAX",
                format!("must be between 1 and {MAX_EVENT_BATCH}"),
            ));
        }
        if self.event_batch_linger_ms > MAX_EVENT_BATCH_LINGER_MS {
            return Err(invalid(
                "EVENT_BATCH_LINGER_MS",
                format!("must be at most {MAX_EVENT_BATCH_LINGER_MS}"),
            ));
        }
        if self.outbox_max_attempts == 0 {
            return Err(invalid("OUTBOX_MAX_ATTEMPTS", "must be at least 1"));
        }
        if self.outbox_batch_size == 0 {
            return Err(invalid("OUTBOX_BATCH_SIZE", "must be at least 1"));
        }
        if self.outbox_poll_interval_ms == 0 {
            return Err(invalid("OUTBOX_POLL_INTERVAL_MS", "must be at least 1"));
        }
        Ok(())
    }

    /// `DATABASE_URL` in our form: a SQLAlchemy form (the original service's) mapped, any other as it is.
    pub(crate) fn database_url(&self) -> String {
        let url = self.database_url.trim();
        task_store::map_sqlalchemy_url(url).map_or_else(|| url.to_owned(), |mapped| mapped.url)
    }

    /// The SQLAlchemy form `DATABASE_URL` was written in (`postgresql+asyncpg`), when it was.
    pub(crate) fn database_url_sqlalchemy_form(&self) -> Option<String> {
        task_store::map_sqlalchemy_url(self.database_url.trim()).map(|m| m.sqlalchemy_form)
    }

    /// Whether `JWT_SECRET` is set (otherwise a random secret is used).
    pub(crate) fn has_jwt_secret(&self) -> bool {
        non_empty(&self.jwt_secret).is_some()
    }

    /// The sidecar base URL: `DAPR_HTTP_ENDPOINT`, else `http://127.0.0.1:{DAPR_HTTP_PORT}`.
    pub(crate) fn dapr_endpoint(&self) -> String {
        match non_empty(&self.dapr_http_endpoint) {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{}", self.dapr_http_port),
        }
    }

    /// The graceful shutdown deadline.
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }

    /// The service configuration; `random_secret` is used when `JWT_SECRET` is unset. Every value is set here,
    /// from a setting or a constant of this module: none comes from a library default.
    pub(crate) fn service_config(
        &self,
        random_secret: impl FnOnce() -> String,
    ) -> Result<task_api::ServiceConfig, ConfigError> {
        let jwt_secret = match non_empty(&self.jwt_secret) {
            Some(secret) => secret.to_owned(),
            None => random_secret(),
        };
        let frontend_url = self.frontend_url.trim();
        Ok(task_api::ServiceConfig {
            database: task_store::DbConfig {
                pool_size: self.database_pool_size as usize,
                ..task_store::DbConfig::with_url(self.database_url())
            },
            http: HttpConfig {
                frontend_url: (!frontend_url.is_empty())
                    .then(|| frontend_url.trim_end_matches('/').to_owned()),
                rate_limit_auth_per_minute: self.rate_limit_auth_per_minute,
                rate_limit_tasks_per_minute: self.rate_limit_tasks_per_minute,
                trusted_proxies: self.trusted_proxies.clone(),
                json_body_limit: JSON_BODY_LIMIT_BYTES,
            },
            auth: AuthConfig {
                jwt_secret: SecretString::from(jwt_secret),
                cookie_secure: self.cookie_secure,
                cookie_samesite: self.cookie_samesite,
                passwords: PasswordConfig {
                    algorithm: self.password_hash,
                    concurrency: self.password_hash_concurrency,
                    queue_wait: Duration::from_millis(self.password_hash_queue_wait_ms),
                },
                user_cache_ttl: Duration::from_millis(self.auth_user_cache_ttl_ms),
            },
            events: EventsConfig {
                dapr_enabled: self.dapr_enabled,
                client: self.dapr_client()?,
                pubsub_name: self.dapr_pubsub_name.trim().to_owned(),
                delivery: self.event_delivery,
                dispatcher: DispatcherConfig::new()
                    .with_queue_capacity(self.event_queue_capacity)
                    .with_concurrency(FIRE_AND_FORGET_LANES)
                    .with_max_attempts(FIRE_AND_FORGET_MAX_ATTEMPTS)
                    .with_backoff(FIRE_AND_FORGET_FIRST_BACKOFF, FIRE_AND_FORGET_MAX_BACKOFF)
                    .with_max_batch(self.event_batch_max)
                    .with_linger(Duration::from_millis(self.event_batch_linger_ms))
                    .with_same_key_batches(self.event_batch_same_key),
                source: self.event_source.trim().to_owned(),
                topics: Topics {
                    task_events: self.topic_task_events.trim().to_owned(),
                    task_updates: self.topic_task_updates.trim().to_owned(),
                    reminders: self.topic_reminders.trim().to_owned(),
                },
                outbox: OutboxConfig {
                    batch_size: self.outbox_batch_size,
                    poll_interval: Duration::from_millis(self.outbox_poll_interval_ms),
                    max_attempts: self.outbox_max_attempts,
                    base_backoff: OUTBOX_FIRST_BACKOFF,
                    max_backoff: OUTBOX_MAX_BACKOFF,
                    linger: OUTBOX_LINGER,
                },
            },
            shutdown_timeout: self.shutdown_timeout(),
        })
    }

    /// The sidecar client: endpoint, token, the publish deadline (`DAPR_PUBLISH_TIMEOUT`) as its request timeout,
    /// the connect timeout of [`dapr_connect_timeout`], and the pool constants.
    fn dapr_client(&self) -> Result<ClientConfig, ConfigError> {
        let key = if non_empty(&self.dapr_http_endpoint).is_some() {
            "DAPR_HTTP_ENDPOINT"
        } else {
            "DAPR_HTTP_PORT"
        };
        let publish_timeout = Duration::from_secs_f64(self.dapr_publish_timeout);
        let client = ClientConfig::new(&self.dapr_endpoint())
            .map_err(|err| invalid(key, err.to_string()))?
            .with_request_timeout(publish_timeout)
            .with_connect_timeout(dapr_connect_timeout(publish_timeout))
            .with_pool_idle_timeout(DAPR_POOL_IDLE_TIMEOUT)
            .with_pool_max_idle_per_host(DAPR_POOL_MAX_IDLE);
        Ok(match non_empty(&self.dapr_api_token) {
            Some(token) => client.with_api_token(token),
            None => client,
        })
    }

    /// The settings as JSON for the startup log line, secrets and database credentials redacted.
    pub(crate) fn redacted(&self) -> serde_json::Value {
        let mut copy = self.clone();
        copy.jwt_secret = copy.jwt_secret.map(|_| "[redacted]".to_owned());
        copy.dapr_api_token = copy.dapr_api_token.map(|_| "[redacted]".to_owned());
        copy.database_url = redact_url_password(&copy.database_url);
        copy.dapr_http_endpoint = copy.dapr_http_endpoint.map(|url| redact_url_password(&url));
        serde_json::to_value(copy).unwrap_or(serde_json::Value::Null)
    }
}

/// `url` with its secrets replaced by `[redacted]`: the password of `scheme://user:password@host/db`, and the
/// value of every `password` query parameter (`?password=…`, which libpq and the original's SQLAlchemy URLs
/// accept). Anything not a URL is returned as is.
pub(crate) fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..scheme_end + 3].to_owned();
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            out.push_str(&authority[..colon]);
            out.push_str(":[redacted]");
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    let Some(query_start) = tail.find('?') else {
        out.push_str(tail);
        return out;
    };
    out.push_str(&tail[..=query_start]);
    let query_and_fragment = &tail[query_start + 1..];
    let (query, fragment) = match query_and_fragment.find('#') {
        Some(hash) => query_and_fragment.split_at(hash),
        None => (query_and_fragment, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=[redacted]"),
            _ => param.to_owned(),
        })
        .collect();
    out.push_str(&params.join("&"));
    out.push_str(fragment);
    out
}

/// Query parameters that carry a secret (compared case-insensitively, percent-encoded names included).
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "sslpassword",
        "token",
        "api_token",
        "secret",
    ]
    .iter()
    .any(|secret| name == *secret)
}

#[cfg(test)]
mod tests;
