//! `/api/v1/health`, `/healthz` (liveness), `/readyz` (database reachable) and `/metrics` (Prometheus text).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::dto::HealthResponse;
use crate::error::ApiError;
use crate::state::AppState;

/// The `phase` of `/api/v1/health`. The original service reports the project phase it implements there (its last
/// release says 3); this service implements phase V, the event-publishing plan.
pub const HEALTH_PHASE: u32 = 5;

/// The service is up.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "The service is up", body = HealthResponse)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthResponse {
        status: "healthy",
        version: env!("CARGO_PKG_VERSION"),
        phase: HEALTH_PHASE,
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers and its schema is the one this code was built for (no pending migration).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "The database is unreachable or its schema lacks migrations",
        body = crate::error::ErrorEnvelope)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.tasks.check_database().await?;
    let pending = state
        .store
        .pending_migrations()
        .await
        .map_err(|err| ApiError::Unavailable(Box::new(err)))?;
    if !pending.is_empty() {
        return Err(ApiError::Unavailable(
            format!(
                "the database schema lacks {} migration(s) ({}): run `task-api migrate`",
                pending.len(),
                pending.join(", ")
            )
            .into(),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// How long a scrape waits for the outbox backlog query.
const BACKLOG_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What `GET /` answers: the original service answered a small JSON message there, and clients or load
/// balancers may probe it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RootResponse {
    /// Where to look next.
    pub message: &'static str,
    /// The service version.
    pub version: &'static str,
}

/// A small JSON greeting (the original service's `GET /`).
#[utoipa::path(get, path = "/", tag = "health",
    responses((status = 200, description = "The service answers", body = RootResponse)))]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(RootResponse {
        message: "pakaura task API - see /docs/ for documentation",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus text: HTTP request counts and latencies, event publishing counters.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut extra = state.publisher.metrics();
    extra.extend(state.tasks.metrics());
    if state.tasks.outbox_mode() {
        // One query per scrape; a slow database leaves the gauges out rather than hanging the scrape.
        let backlog = tokio::time::timeout(
            BACKLOG_QUERY_TIMEOUT,
            crate::outbox::backlog_metrics(&state.store, time::OffsetDateTime::now_utc()),
        )
        .await;
        match backlog {
            Ok(Ok(gauges)) => extra.extend(gauges),
            Ok(Err(err)) => {
                slog::warn!(state.log, "could not read the outbox backlog for /metrics";
                    "error" => %crate::error::ErrorChain(&err));
            }
            Err(_) => {
                slog::warn!(state.log, "reading the outbox backlog for /metrics timed out";
                    "timeout_ms" => BACKLOG_QUERY_TIMEOUT.as_millis() as u64);
            }
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&extra))
}
