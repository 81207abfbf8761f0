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
            source: "pakaura/api".to_owned(),
            topics: Topics::default(),
            outbox: OutboxConfig::default(),
        }
    }
}
