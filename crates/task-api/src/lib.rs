//! The pakaura task service: actix-web routes, auth, event mapping and dispatch.
#![doc = include_str!("../README.md")]

pub mod auth;
pub mod config;
pub mod context;
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
pub mod startup;
pub mod state;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::{App, HttpServer, web};
use slog::{Logger, info, o};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::HttpConfig;
use crate::state::AppState;

pub use crate::context::RequestContext;
pub use crate::error::ApiError;
pub use crate::service::TaskService;
pub use crate::startup::{
    BackgroundWork, BuiltService, ServiceConfig, StartupError, build, build_delivery, build_state,
    migrate,
};

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
    let routes_state = state.clone();
    let mcp_state = state.clone();
    App::new()
        // What the extractors and middleware read, each on its own; the handlers read `AppState`.
        .app_data(web::Data::new(state.log.clone()))
        .app_data(web::Data::new(state.metrics.clone()))
        .app_data(web::Data::new(state.auth.clone()))
        .app_data(web::Data::new(state.users.clone()))
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
        .configure(|cfg| routes::configure(cfg, &routes_state))
        .configure(|cfg| mcp::configure(cfg, &mcp_state))
        .default_service(web::to(routes::not_found))
}

/// A running HTTP server with its state (zero2prod's `Application`).
pub struct Application {
    port: u16,
    server: Server,
    built_state: web::Data<AppState>,
    background: BackgroundWork,
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
        let BuiltService { state, background } = build(&config, &log).await?;
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
        BuiltService {
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
