//! `AppState`: what handlers share, built once and handed to every worker. The extractors and middleware below
//! the handlers do not read it: the app registers the parts they need (the root `Logger`, `Metrics`, the
//! `Authenticator`, `KnownUsers`) as app data of their own, and builds each scope's rate limit from it here.

use std::net::IpAddr;
use std::sync::Arc;

use slog::Logger;
use task_store::Store;
use uuid::Uuid;

use crate::auth::{Authenticator, KnownUsers, Passwords};
use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::publisher::EventPublisher;
use crate::rate_limit::{KeyedLimiter, RateLimit};
use crate::service::TaskService;

/// The state shared by all handlers (through one `web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    /// The root logger of the service (requests log through their own child logger).
    pub log: Logger,
    /// Token and cookie handling.
    pub auth: Authenticator,
    /// Whether a token's user still exists (cached for `AUTH_USER_CACHE_TTL_MS`).
    pub users: KnownUsers,
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
    pub auth_limiter: Arc<KeyedLimiter<IpAddr>>,
    /// The per-user limit of the task routes and `/mcp` (keyed by the token's user id).
    pub task_limiter: Arc<KeyedLimiter<Uuid>>,
    /// HTTP settings.
    pub http: HttpConfig,
}

impl AppState {
    /// The middleware of the rate-limited auth routes: one limit per client address (`RATE_LIMIT_AUTH_PER_MINUTE`,
    /// the address from `X-Forwarded-For` only behind `TRUSTED_PROXIES`).
    pub fn limit_per_client_address(&self) -> RateLimit<IpAddr> {
        RateLimit::per_client_address(
            Arc::clone(&self.auth_limiter),
            self.http.trusted_proxies.clone(),
        )
    }

    /// The middleware of the task scopes (`/api/v1/tasks`, `/mcp`): one limit per signed-in user
    /// (`RATE_LIMIT_TASKS_PER_MINUTE`), keyed by the `sub` of a validly signed token. No database lookup here (the
    /// extractor checks the user exists); a request without a valid token passes to its handler, which answers 401.
    pub fn limit_per_user(&self) -> RateLimit<Uuid> {
        let tokens = self.auth.clone();
        RateLimit::new(Arc::clone(&self.task_limiter), move |req| {
            tokens.token_subject(req.request())
        })
    }
}
