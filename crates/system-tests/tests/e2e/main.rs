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
mod replicas;

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use system_tests::KafkaReader;

use api::Api;
use events::{PARTITIONS, Received, TOPICS};
use harness::{Database, Env, TaskApi};

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
    let database = Database::empty(admin_url).await?;
    harness::migrate(bin, database.url())?;
    let server = TaskApi::start(bin, &service_env(database.url(), dapr, delivery))?;
    Ok((database, server))
}

/// The frame of the happy-path tests: Kafka offsets recorded first, then a fresh fire-and-forget `task-api` beside
/// the stack's `daprd`, and `users` registered users driven concurrently.
struct SessionsRun {
    kafka: KafkaReader,
    _database: Database,
    server: TaskApi,
    api: Api,
    /// `(user id, token)` of each user.
    users: Vec<(String, String)>,
}

impl SessionsRun {
    async fn start(env: &Env, users: usize) -> anyhow::Result<Self> {
        let mut kafka = KafkaReader::connect(&env.kafka, &TOPICS, PARTITIONS).await?;
        kafka.mark().await?;
        let (database, server) = start_service(
            &env.task_api,
            &env.database_url,
            &env.dapr,
            "fire-and-forget",
        )
        .await?;
        let api = Api::new(&server.base());
        let mut registered = Vec::with_capacity(users);
        for _ in 0..users {
            registered.push(api.register().await?);
        }
        Ok(Self {
            kafka,
            _database: database,
            server,
            api,
            users: registered,
        })
    }

    /// Runs `session(api, user id, token)` for every user at once; the results in the order they finish.
    async fn run_sessions<T, F, Fut>(&self, session: F) -> anyhow::Result<Vec<T>>
    where
        F: Fn(Api, String, String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut sessions = tokio::task::JoinSet::new();
        for (user, token) in self.users.clone() {
            sessions.spawn(session(self.api.clone(), user, token));
        }
        let mut results = Vec::with_capacity(self.users.len());
        while let Some(joined) = sessions.join_next().await {
            results.push(
                joined
                    .context("a session panicked")?
                    .with_context(|| self.server.log_tail(30))?,
            );
        }
        Ok(results)
    }

    /// The records of this run's users, once `expected` of them arrived (or after a minute).
    async fn received(&self, expected: usize) -> anyhow::Result<Vec<Received>> {
        let ids: HashSet<String> = self.users.iter().map(|(id, _)| id.clone()).collect();
        events::collect(&self.kafka, &ids, Duration::from_secs(60), |records| {
            records.len() >= expected
        })
        .await
    }
}
