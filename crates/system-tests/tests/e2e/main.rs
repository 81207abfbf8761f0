//! End-to-end tests of the `task-api` binary on the real stack (PostgreSQL, `daprd`, Kafka) over REST and MCP, and
//! fault injection: a killed sidecar, a stopped broker, a killed service, a hanging sidecar. See docs/E2E.md.
//!
//! The tests run one at a time (they share Kafka, and one of them stops it), each with a fresh database.

mod api;
mod events;
mod faults;
mod happy_path;
mod harness;
mod mcp;

use std::path::Path;

use harness::{Database, TaskApi};

/// Serialises the tests of this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The environment of a `task-api` publishing through the sidecar at `dapr` in `delivery` mode
/// (`fire-and-forget` or `outbox`), on `database_url`, with the rate limits out of the way.
fn service_env(database_url: &str, dapr: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_owned()),
        (
            "JWT_SECRET",
            "e2e-secret-0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("DAPR_ENABLED", "true".to_owned()),
        ("DAPR_HTTP_ENDPOINT", dapr.to_owned()),
        ("DAPR_PUBLISH_TIMEOUT", "2.0".to_owned()),
        ("EVENT_DELIVERY", delivery.to_owned()),
        ("OUTBOX_POLL_INTERVAL_MS", "200".to_owned()),
        // The fault tests keep the relay failing for a minute or more: never move a row aside.
        ("OUTBOX_MAX_ATTEMPTS", "100000".to_owned()),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "100000".to_owned()),
        ("RATE_LIMIT_TASKS_PER_MINUTE", "100000".to_owned()),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5".to_owned()),
    ]
}

/// A fresh, migrated database and a `task-api` serving it.
async fn start_service(
    bin: &Path,
    admin_url: &str,
    dapr: &str,
    delivery: &str,
) -> anyhow::Result<(Database, TaskApi)> {
    let database = Database::create(admin_url)?;
    harness::migrate(bin, &database.url)?;
    let server = TaskApi::start(bin, &service_env(&database.url, dapr, delivery))?;
    Ok((database, server))
}
