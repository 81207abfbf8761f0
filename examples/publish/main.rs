//! The `publish` example: a minimal Rust service publishing its own CloudEvents through
//! `dapr-pubsub-client`: one publish with a partition key, one bulk publish with per-entry results, and
//! the background dispatcher with a graceful shutdown (`cargo run -p examples --example publish`; see
//! `examples/publish/README.md`).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use dapr_pubsub_client::{
    BulkEntry, ClientConfig, Dispatcher, DispatcherConfig, ErrorChain, PubSubClient, PublishOptions,
};
use examples::events::{PUBSUB_NAME, TOPIC_TASK_EVENTS, TaskEventFactory, Topical};
use examples::logging;
use slog::{Logger, error, info, warn};
use uuid::Uuid;

/// Publishes task events through the Dapr sidecar named by DAPR_HTTP_ENDPOINT or DAPR_HTTP_PORT.
#[derive(Parser, Debug)]
#[command(name = "publish")]
struct Args {
    /// The pub/sub component.
    #[arg(long, env = "DAPR_PUBSUB_NAME", default_value = PUBSUB_NAME)]
    pubsub: String,
    /// The `source` attribute of the events.
    #[arg(long, default_value = "pakaura/examples-publish")]
    source: String,
    /// How many users (partition keys) the dispatcher part publishes for.
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// How many task lifecycles (8 events each) per user the dispatcher part publishes.
    #[arg(long, default_value_t = 2)]
    tasks: usize,
    /// Keep submitting one lifecycle per user every `--interval-ms` until Ctrl-C or SIGTERM.
    #[arg(long)]
    until_stopped: bool,
    /// Pause between rounds with `--until-stopped`.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// How long the dispatcher may take to drain on shutdown.
    #[arg(long, default_value_t = 5000)]
    drain_ms: u64,
}

/// Runs the program; on failure prints the whole error chain on one line and exits with status 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "publish: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (log, _guard) = logging::terminal("publish", logging::level_from_env());

    // Dapr's standard variables: DAPR_HTTP_ENDPOINT, else DAPR_HTTP_PORT on 127.0.0.1 (default 3500),
    // and DAPR_API_TOKEN when set.
    let config = ClientConfig::from_env().context("reading DAPR_HTTP_ENDPOINT / DAPR_HTTP_PORT")?;
    let client = PubSubClient::new(config, log.clone());
    info!(log, "waiting for the Dapr sidecar at {}", client.base_url());
    client
        .wait_until_ready(Duration::from_secs(10))
        .await
        .with_context(|| format!("the Dapr sidecar at {} is not ready", client.base_url()))?;

    // One correlation id for this run, as a request of a real service would have.
    let factory = TaskEventFactory::new(args.source.as_str(), Uuid::new_v4());
    info!(log, "sidecar ready; publishing"; "correlation_id" => %factory.correlation_id());

    single(&client, &args.pubsub, &factory, &log).await?;
    bulk(&client, &args.pubsub, &factory, &log).await?;
    dispatch(client, &args, &factory, &log).await
}

/// One event, published and awaited, with an explicit partition key.
async fn single(
    client: &PubSubClient,
    pubsub: &str,
    factory: &TaskEventFactory,
    log: &Logger,
) -> anyhow::Result<()> {
    let user = Uuid::new_v4();
    let [created, _sync] = factory.created(user, Uuid::new_v4(), "publish one event")?;
    let options = PublishOptions::new()
        .with_partition_key(user.to_string())
        .with_timeout(Duration::from_secs(2));
    let started = Instant::now();
    match client
        .publish_with(pubsub, created.topic, &created.event, &options)
        .await
    {
        Ok(()) => {
            info!(log, "single: published {} {} to {}", created.event.ty(), created.event.id(), created.topic;
                "partition_key" => %user, "duration_ms" => started.elapsed().as_millis() as u64);
            Ok(())
        }
        Err(err) => {
            // The error says what happened: sidecar absent, timeout, 403/404 rejection, ...
            error!(log, "single: publish failed"; "retryable" => err.is_retryable(), "error" => %ErrorChain(&err));
            Err(err.into())
        }
    }
}

/// The four `task-events` of one task in one bulk request, with the result of each entry.
async fn bulk(
    client: &PubSubClient,
    pubsub: &str,
    factory: &TaskEventFactory,
    log: &Logger,
) -> anyhow::Result<()> {
    let user = Uuid::new_v4();
    let events: Vec<Topical> = factory
        .lifecycle(user, "publish in bulk")?
        .into_iter()
        .filter(|topical| topical.topic == TOPIC_TASK_EVENTS)
        .collect();
    // entryId = event id; the `partitionkey` extension becomes the entry's partitionKey metadata.
    let entries = events
        .iter()
        .map(|topical| BulkEntry::cloud_event(&topical.event))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = client
        .publish_bulk(pubsub, TOPIC_TASK_EVENTS, &entries, &PublishOptions::new())
        .await
        .context("bulk publish")?;
    for topical in &events {
        let id = topical.event.id();
        match outcome.error_for(id) {
            None => info!(log, "bulk: entry {} ({}) published", id, topical.event.ty()),
            Some(reason) => warn!(
                log,
                "bulk: entry {} ({}) failed: {}",
                id,
                topical.event.ty(),
                reason
            ),
        }
    }
    info!(log, "bulk: {} of {} entries published", outcome.published_count(), entries.len();
        "status" => outcome.status().as_u16(), "partition_key" => %user);
    if !outcome.is_success() {
        bail!("{} bulk entries failed", outcome.failed_entries().len());
    }
    Ok(())
}

/// Events handed to the background dispatcher, which never blocks the caller, keeps per-user order,
/// retries transient failures, and drains on shutdown.
async fn dispatch(
    client: PubSubClient,
    args: &Args,
    factory: &TaskEventFactory,
    log: &Logger,
) -> anyhow::Result<()> {
    let dispatcher = Dispatcher::spawn(
        client,
        DispatcherConfig::new()
            .with_queue_capacity(10_000)
            .with_concurrency(4)
            .with_max_attempts(5)
            .with_backoff(Duration::from_millis(100), Duration::from_secs(2)),
        log.clone(),
    );
    let users: Vec<Uuid> = (0..args.users).map(|_| Uuid::new_v4()).collect();
    let mut submitted = 0_usize;
    let mut submit_round = |dispatcher: &Dispatcher| -> anyhow::Result<()> {
        for user in &users {
            for topical in factory.lifecycle(*user, "dispatched")? {
                // The partition key comes from the event's `partitionkey` extension; a full queue drops
                // the event and counts it (the dispatcher logs it), so the result can be ignored.
                if dispatcher
                    .submit(
                        &args.pubsub,
                        topical.topic,
                        &topical.event,
                        PublishOptions::new(),
                    )
                    .is_ok()
                {
                    submitted += 1;
                }
            }
        }
        Ok(())
    };
    for _ in 0..args.tasks {
        submit_round(&dispatcher)?;
    }
    if args.until_stopped {
        info!(
            log,
            "dispatcher: submitting one lifecycle per user every {} ms; Ctrl-C or SIGTERM to stop",
            args.interval_ms
        );
        let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => submit_round(&dispatcher)?,
            }
        }
    }
    info!(
        log,
        "dispatcher: {} events submitted; shutting down (drain deadline {} ms)",
        submitted,
        args.drain_ms
    );
    let report = dispatcher
        .shutdown(Duration::from_millis(args.drain_ms))
        .await;
    let metrics = &report.metrics;
    let p99_ms = metrics
        .latency
        .quantile_upper_bound(0.99)
        .map_or_else(|| "-".to_owned(), |seconds| format!("{}", seconds * 1000.0));
    info!(log, "dispatcher: shut down in {} ms", report.elapsed.as_millis();
        "published" => metrics.published, "failed" => metrics.failed, "retried" => metrics.retried,
        "dropped" => metrics.dropped, "undelivered" => report.undelivered.len(),
        "latency_p99_upper_bound_ms" => p99_ms);
    for lost in &report.undelivered {
        warn!(log, "dispatcher: not delivered {} {}", lost.event_type, lost.event_id;
            "topic" => &lost.topic, "attempts" => lost.attempts);
    }
    if !report.is_complete() || metrics.failed > 0 || metrics.dropped > 0 {
        bail!(
            "{} events not published ({} failed, {} dropped, {} undelivered)",
            (submitted as u64).saturating_sub(metrics.published),
            metrics.failed,
            metrics.dropped,
            report.undelivered.len()
        );
    }
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what `run-with-daprd`, `dapr run` and Kubernetes send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
