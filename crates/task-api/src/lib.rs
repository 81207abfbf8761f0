//! The pakaura task service: actix-web routes, auth, event mapping and dispatch.
#![doc = include_str!("../README.md")]

pub mod auth;
pub mod config;
pub mod dto;
pub mod error;
pub mod events;
pub mod mcp;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod outbox;
pub mod publisher;
pub mod rate_limit;
pub mod routes;
pub mod service;
pub mod state;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::{App, HttpServer, web};
use dapr_pubsub_client::{ClientConfig, Dispatcher, DispatcherConfig, PubSubClient};
use slog::{Logger, info, o, warn};
use task_store::{DbConfig, OpenError, Store};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{Authenticator, Passwords};
use crate::config::{AuthConfig, EventDelivery, EventsConfig, HttpConfig};
use crate::error::ErrorChain;
use crate::events::EventFactory;
use crate::metrics::Metrics;
use crate::outbox::{OutboxRelay, RelayHandle};
use crate::publisher::{DaprPublisher, EventPublisher, LogPublisher};
use crate::rate_limit::KeyedLimiter;
use crate::service::{Delivery, TaskService};
use crate::state::AppState;

pub use crate::error::ApiError;
pub use crate::middleware::RequestContext;
pub use crate::service::TaskService as Service;

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

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database")]
    Database(#[source] Box<OpenError>),
    /// The sidecar client configuration is invalid.
    #[error("invalid dapr sidecar configuration")]
    Dapr(#[source] Box<dapr_pubsub_client::ConfigError>),
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
pub struct Background {
    relay: Option<RelayHandle>,
}

/// The state of a service, and its background work.
#[derive(Debug)]
pub struct Built {
    /// The shared state.
    pub state: web::Data<AppState>,
    /// The background tasks, to stop at shutdown.
    pub background: Background,
}

impl Background {
    /// Stops the background work at once, as a crash would: the relay drops its round wherever it is and
    /// leaves its leases to expire. For tests of what other replicas do then.
    #[cfg(feature = "test-util")]
    pub fn abort(self) {
        if let Some(relay) = self.relay {
            relay.abort();
        }
    }
}

impl Built {
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
) -> Result<(Arc<dyn EventPublisher>, Delivery, Background), StartupError> {
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
            Background::default(),
        ));
    }
    let mut client_config = ClientConfig::new(&events.dapr_endpoint)
        .map_err(|err| StartupError::Dapr(Box::new(err)))?
        .with_request_timeout(events.publish_timeout)
        .with_connect_timeout(events.publish_timeout.min(Duration::from_secs(1)));
    if let Some(token) = &events.dapr_api_token {
        client_config = client_config.with_api_token(token.expose().to_owned());
    }
    let client = PubSubClient::new(client_config, log.clone());
    match events.delivery {
        EventDelivery::FireAndForget => {
            let dispatcher = Dispatcher::spawn(
                client,
                DispatcherConfig::new()
                    .with_queue_capacity(events.queue_capacity)
                    .with_max_batch(events.batch_max)
                    .with_linger(events.batch_linger)
                    .with_same_key_batches(events.batch_same_key)
                    .with_max_attempts(events.max_attempts),
                log.clone(),
            );
            let publisher: Arc<dyn EventPublisher> =
                Arc::new(DaprPublisher::new(dispatcher, &events.pubsub_name, log));
            Ok((
                Arc::clone(&publisher),
                Delivery::Publish(publisher),
                Background::default(),
            ))
        }
        EventDelivery::Outbox => {
            let relay = OutboxRelay::new(
                store.clone(),
                client,
                &events.pubsub_name,
                events.outbox.clone(),
                events.publish_timeout,
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
                Background {
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
        passwords: Passwords::new(&config.auth.passwords),
        store: store.clone(),
        tasks: TaskService::new(store, factory, delivery),
        publisher,
        metrics: Metrics::new(),
        auth_limiter: KeyedLimiter::new(config.http.rate_limit_auth_per_minute),
        task_limiter: KeyedLimiter::new(config.http.rate_limit_tasks_per_minute),
        http: config.http.clone(),
    })
}

/// Opens the database (migrating the embedded SQLite one), starts event delivery, and builds the state.
pub async fn build(config: &ServiceConfig, log: &Logger) -> Result<Built, StartupError> {
    let store = Store::open(&config.database, log).await?;
    if let Err(err) = store.ping().await {
        warn!(log, "the database is not reachable yet; /readyz answers 503 until it is"; "error" => %ErrorChain(&err));
    }
    let (publisher, delivery, background) = build_delivery(&config.events, &store, log)?;
    info!(log, "event delivery configured"; "dapr_enabled" => config.events.dapr_enabled,
        "delivery" => ?config.events.delivery, "pubsub" => &config.events.pubsub_name,
        "endpoint" => &config.events.dapr_endpoint);
    let state = build_state(config, store.clone(), publisher, delivery, log);
    match state.passwords.detect_stored_formats(&store).await {
        Ok((bcrypt, argon2)) => info!(log, "password hashing configured";
            "algorithm" => ?state.passwords.algorithm(), "stored_bcrypt" => bcrypt, "stored_argon2" => argon2,
            "concurrency" => config.auth.passwords.concurrency),
        Err(err) => {
            // Unknown: pay for both formats, so login timing cannot tell accounts apart.
            state.passwords.note_stored_formats(true, true);
            warn!(log, "cannot tell which password hash formats are stored; logins verify both";
                "error" => %ErrorChain(&err));
        }
    }
    Ok(Built { state, background })
}

fn cors(http: &HttpConfig) -> Cors {
    let cors = Cors::default()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("traceparent"),
            header::HeaderName::from_static("x-correlation-id"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-correlation-id"),
            header::RETRY_AFTER,
        ])
        .supports_credentials()
        .max_age(600);
    match &http.frontend_url {
        Some(origin) => cors.allowed_origin(origin),
        None => cors,
    }
}

/// The actix application: routes, extractor error handlers, middleware, OpenAPI and Swagger UI.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // A JSON body must say so (`application/json`, or a `+json` type): anything else is 415, so a page elsewhere
    // cannot send a "simple" cross-site request (`text/plain`, a form) that skips the CORS preflight.
    let json = web::JsonConfig::default()
        .limit(state.http.json_body_limit)
        .content_type_required(true)
        .error_handler(error::json_error_handler);
    let cors = cors(&state.http);
    App::new()
        .app_data(state)
        .app_data(json)
        .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
        .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
        // Innermost first: a panic becomes a 500 before the access log and metrics see the request end.
        .wrap(actix_web::middleware::from_fn(middleware::catch_panic))
        .wrap(actix_web::middleware::from_fn(
            middleware::request_middleware,
        ))
        .wrap(cors)
        // Before the routes: the `/api/v1` scope would otherwise take `/api/v1/openapi.json` and answer 404.
        .service(
            SwaggerUi::new("/docs/{_:.*}").url(openapi::OPENAPI_PATH, openapi::ApiDoc::openapi()),
        )
        .configure(routes::configure)
        .configure(mcp::configure)
        .default_service(web::to(routes::not_found))
}

/// A running HTTP server with its state (zero2prod's `Application`).
pub struct Application {
    port: u16,
    server: Server,
    built_state: web::Data<AppState>,
    background: Background,
    shutdown_timeout: Duration,
    log: Logger,
}

impl Application {
    /// Builds the state and binds the server to `listener` (port 0 picks a free port).
    pub async fn build(
        config: ServiceConfig,
        listener: TcpListener,
        log: Logger,
    ) -> Result<Self, StartupError> {
        let Built { state, background } = build(&config, &log).await?;
        let port = listener.local_addr().map_err(StartupError::Http)?.port();
        let server_state = state.clone();
        let server = HttpServer::new(move || app(server_state.clone()))
            .listen(listener)
            .map_err(StartupError::Http)?
            // `run_until_stopped` handles SIGTERM/SIGINT itself, to know when the one deadline started.
            .disable_signals()
            .shutdown_timeout(config.shutdown_timeout.as_secs())
            .run();
        Ok(Self {
            port,
            server,
            built_state: state,
            background,
            shutdown_timeout: config.shutdown_timeout,
            log: log.new(o!("component" => "application")),
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a handle's stop), then drains queued events. The whole shutdown spends
    /// one `shutdown_timeout`, counted from the signal: the HTTP drain (in-flight requests finish) takes what
    /// it needs of it, the event drain gets the rest. Events still queued at the deadline are abandoned
    /// (counted in `events_dropped_total`, logged with their ids). After a [`Application::handle`] stop the
    /// deadline counts from when the server stopped.
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let stop_requested: Arc<std::sync::OnceLock<std::time::Instant>> = Arc::default();
        let signals = tokio::spawn(stop_on_signal(
            self.server.handle(),
            Arc::clone(&stop_requested),
            self.log.clone(),
        ));
        let res = self.server.await;
        signals.abort();
        let started = *stop_requested.get_or_init(std::time::Instant::now);
        let left = self.shutdown_timeout.saturating_sub(started.elapsed());
        info!(self.log, "http server stopped; draining events";
            "deadline_ms" => self.shutdown_timeout.as_millis() as u64,
            "http_drain_ms" => started.elapsed().as_millis() as u64, "left_ms" => left.as_millis() as u64);
        Built {
            state: self.built_state,
            background: self.background,
        }
        .shutdown(left)
        .await;
        info!(self.log, "shutdown complete"; "elapsed_ms" => started.elapsed().as_millis() as u64);
        res
    }
}

/// Waits for SIGTERM or SIGINT, notes when it came, and stops `server` gracefully (in-flight requests get up to
/// the server's shutdown timeout).
async fn stop_on_signal(
    server: actix_web::dev::ServerHandle,
    stop_requested: Arc<std::sync::OnceLock<std::time::Instant>>,
    log: Logger,
) {
    let signal = wait_for_signal().await;
    let _ = stop_requested.set(std::time::Instant::now());
    info!(log, "{} received; stopping", signal; "signal" => signal);
    server.stop(true).await;
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => ctrl_c().await,
    }
}

/// Ctrl-C; never, if it cannot be listened for (the server then stops only through its handle).
async fn ctrl_c() -> &'static str {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    "SIGINT"
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    ctrl_c().await
}
