//! `AppState`: what handlers share, built once and handed to every worker.

use std::net::IpAddr;
use std::sync::Arc;

use slog::Logger;
use task_store::Store;

use crate::auth::{Authenticator, Passwords};
use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::publisher::EventPublisher;
use crate::rate_limit::KeyedLimiter;
use crate::service::TaskService;

/// The state shared by all handlers (through one `web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    /// The root logger of the service (requests log through their own child logger).
    pub log: Logger,
    /// Token and cookie handling.
    pub auth: Authenticator,
    /// Password hashing (bounded, equal-timed).
    pub passwords: Passwords,
    /// Persistence (users; tasks go through `tasks`).
    pub store: Store,
    /// The task operations.
    pub tasks: TaskService,
    /// The publisher (for its metrics and shutdown; the service holds the same one).
    pub publisher: Arc<dyn EventPublisher>,
    /// HTTP metrics.
    pub metrics: Metrics,
    /// The per-client-address limit of the auth routes (IPv6 grouped by /64, `rate_limit::client_key`).
    pub auth_limiter: KeyedLimiter<IpAddr>,
    /// The per-user limit of the task routes (keyed by the user id).
    pub task_limiter: KeyedLimiter<String>,
    /// HTTP settings.
    pub http: HttpConfig,
}
