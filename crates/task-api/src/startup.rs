//! Starting the service: its configuration (`ServiceConfig`), opening the database, starting event delivery (the
//! dispatcher or the outbox relay: `BackgroundWork`) and building the handlers' `AppState` (`BuiltService`). Below
//! the HTTP server (`crate::Application`) and the MCP stdio server, which both start from here.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use dapr_pubsub_client::{Dispatcher, PubSubClient};
use slog::{Logger, info, warn};
use task_store::{DbConfig, OpenError, Store};

use crate::auth::{Authenticator, KnownUsers, Passwords};
use crate::config::{AuthConfig, EventDelivery, EventsConfig, HttpConfig};
use crate::error::ErrorChain;
use crate::events::EventFactory;
use crate::metrics::Metrics;
use crate::outbox::{OutboxRelay, RelayHandle};
use crate::publisher::{DaprPublisher, EventPublisher, LogPublisher};
use crate::rate_limit::KeyedLimiter;
use crate::service::{Delivery, TaskService};
use crate::state::AppState;

/// Everything the service needs to run, composed by the binary.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The database.
    pub database: DbConfig,
    /// HTTP front settings.
    pub http: HttpConfig,
    /// Token and cookie settings.
    pub auth: AuthConfig,
    /// Event publishing settings.
    pub events: EventsConfig,
    /// How long graceful shutdown may take in total: the HTTP drain and the event drain share it.
    pub shutdown_timeout: Duration,
}

#[cfg(any(test, feature = "test-util"))]
impl ServiceConfig {
    /// The binary's defaults on `database`, signing tokens with `jwt_secret` (see
    /// `crate::config`'s `defaults_for_tests` constructors, which this composes).
    pub fn defaults_for_tests(database: DbConfig, jwt_secret: &str) -> Self {
        Self {
            database,
            http: HttpConfig::defaults_for_tests(),
            auth: AuthConfig::defaults_for_tests(jwt_secret),
            events: EventsConfig::defaults_for_tests(),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database")]
    Database(#[source] Box<OpenError>),
    /// The HTTP server could not start.
    #[error("cannot start the http server")]
    Http(#[source] std::io::Error),
}

impl From<OpenError> for StartupError {
    fn from(err: OpenError) -> Self {
        StartupError::Database(Box::new(err))
    }
}

/// Applies pending migrations (`task-api migrate`).
pub async fn migrate(database: &DbConfig, log: &Logger) -> Result<Vec<String>, StartupError> {
    let applied = task_store::run_pending(database, log).await?;
    info!(log, "migrations checked"; "applied" => applied.len(), "versions" => applied.join(","));
    Ok(applied)
}

/// Background work started with the state: the dispatcher lanes or the outbox relay.
#[derive(Debug, Default)]
pub struct BackgroundWork {
    relay: Option<RelayHandle>,
}

/// The state of a service, and its background work.
#[derive(Debug)]
pub struct BuiltService {
    /// The shared state.
    pub state: web::Data<AppState>,
    /// The background tasks, to stop at shutdown.
    pub background: BackgroundWork,
}

impl BackgroundWork {
    /// Stops the background work at once, as a crash would: the relay drops its round wherever it is and
    /// leaves its leases to expire. For tests of what other replicas do then.
    #[cfg(feature = "test-util")]
    pub fn abort(self) {
        if let Some(relay) = self.relay {
            relay.abort();
        }
    }
}

impl BuiltService {
    /// Stops taking events and delivers what is queued within `deadline` (what is left then is abandoned:
    /// counted in `events_dropped_total` and logged with its ids).
    pub async fn shutdown(self, deadline: Duration) {
        let started = std::time::Instant::now();
        if let Some(relay) = self.background.relay {
            relay.shutdown(deadline).await;
        }
        let left = deadline.saturating_sub(started.elapsed());
        self.state.publisher.shutdown(left).await;
    }
}

/// Builds the publisher and the delivery mode of `events`; spawns the dispatcher or relay on this runtime.
pub fn build_delivery(
    events: &EventsConfig,
    store: &Store,
    log: &Logger,
) -> Result<(Arc<dyn EventPublisher>, Delivery, BackgroundWork), StartupError> {
    if !events.dapr_enabled {
        if events.delivery == EventDelivery::Outbox {
            warn!(
                log,
                "EVENT_DELIVERY=outbox is ignored while DAPR_ENABLED=false: events are only logged"
            );
        }
        let publisher: Arc<dyn EventPublisher> = Arc::new(LogPublisher);
        return Ok((
            Arc::clone(&publisher),
            Delivery::Publish(publisher),
            BackgroundWork::default(),
        ));
    }
    let client = PubSubClient::new(events.client.clone(), log.clone());
    match events.delivery {
        EventDelivery::FireAndForget => {
            let dispatcher = Dispatcher::spawn(client, events.dispatcher.clone(), log.clone());
            let publisher: Arc<dyn EventPublisher> =
                Arc::new(DaprPublisher::new(dispatcher, &events.pubsub_name, log));
            Ok((
                Arc::clone(&publisher),
                Delivery::Publish(publisher),
                BackgroundWork::default(),
            ))
        }
        EventDelivery::Outbox => {
            let relay = OutboxRelay::new(
                store.clone(),
                client,
                &events.pubsub_name,
                events.outbox.clone(),
                events.publish_timeout(),
                log,
            );
            let delivery = Delivery::Outbox {
                wake: relay.wake(),
                counters: relay.counters(),
            };
            let handle = relay.spawn();
            Ok((
                Arc::new(LogPublisher),
                delivery,
                BackgroundWork {
                    relay: Some(handle),
                },
            ))
        }
    }
}

/// Builds the state around an open store and a publisher/delivery pair (tests pass fakes here).
pub fn build_state(
    config: &ServiceConfig,
    store: Store,
    publisher: Arc<dyn EventPublisher>,
    delivery: Delivery,
    log: &Logger,
) -> web::Data<AppState> {
    let factory = EventFactory::new(config.events.source.clone(), config.events.topics.clone());
    web::Data::new(AppState {
        log: log.clone(),
        auth: Authenticator::new(&config.auth),
        users: KnownUsers::new(store.clone(), config.auth.user_cache_ttl),
        passwords: Passwords::new(&config.auth.passwords),
        store: store.clone(),
        tasks: TaskService::new(store, factory, delivery),
        publisher,
        metrics: Metrics::new(),
        auth_limiter: Arc::new(KeyedLimiter::new(config.http.rate_limit_auth_per_minute)),
        task_limiter: Arc::new(KeyedLimiter::new(config.http.rate_limit_tasks_per_minute)),
        http: config.http.clone(),
    })
}

/// Opens the database (migrating the embedded SQLite one), starts event delivery, and builds the state.
pub async fn build(config: &ServiceConfig, log: &Logger) -> Result<BuiltService, StartupError> {
    let store = Store::open(&config.database, log).await?;
    if let Err(err) = store.ping().await {
        warn!(log, "the database is not reachable yet; /readyz answers 503 until it is"; "error" => %ErrorChain(&err));
    }
    let (publisher, delivery, background) = build_delivery(&config.events, &store, log)?;
    info!(log, "event delivery configured"; "dapr_enabled" => config.events.dapr_enabled,
        "delivery" => %config.events.delivery, "pubsub" => &config.events.pubsub_name,
        "endpoint" => config.events.client.base_url());
    let state = build_state(config, store.clone(), publisher, delivery, log);
    match state.passwords.detect_stored_formats(&store).await {
        Ok((bcrypt, argon2)) => info!(log, "password hashing configured";
            "algorithm" => %state.passwords.algorithm(), "stored_bcrypt" => bcrypt, "stored_argon2" => argon2,
            "concurrency" => config.auth.passwords.concurrency),
        Err(err) => {
            // Unknown: pay for both formats, so login timing cannot tell accounts apart.
            state.passwords.note_stored_formats(true, true);
            warn!(log, "cannot tell which password hash formats are stored; logins verify both";
                "error" => %ErrorChain(&err));
        }
    }
    Ok(BuiltService { state, background })
}

// Issue 18: like the library config types (`config`), `ServiceConfig` has no `Default` to hide production values.
#[cfg(test)]
static_assertions::assert_not_impl_any!(ServiceConfig: Default);
