//! The outbox relay (`EVENT_DELIVERY=outbox`): claims due `event_outbox` rows, publishes them with their stored
//! event id, deletes them on success, backs off on failure, and moves a row aside after too many attempts.
//!
//! Rows are claimed with a lease longer than a whole round of publishes, so a second replica never takes a row
//! this one is still sending; the store hands out the rows of one partition key (user) in order and never past
//! a failed one, so a user's events keep their order. Partition keys are published concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dapr_pubsub_client::{PubSubClient, PublishError, PublishOptions};
use futures_util::future::join_all;
use slog::{Logger, debug, error, info, o, warn};
use task_store::{FailureOutcome, OutboxMessage, Store};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::OutboxConfig;
use crate::error::ErrorChain;
use crate::metrics::ExtraMetric;

/// What the relay did, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    published: AtomicU64,
    failed_attempts: AtomicU64,
    moved_aside: AtomicU64,
}

impl RelayCounters {
    /// The counters as metrics.
    pub fn metrics(&self) -> Vec<ExtraMetric> {
        vec![
            ExtraMetric {
                name: "outbox_events_published_total",
                help: "Outbox events the Dapr sidecar accepted",
                kind: "counter",
                value: self.published.load(Ordering::Relaxed) as f64,
            },
            ExtraMetric {
                name: "outbox_publish_failures_total",
                help: "Failed outbox publish attempts",
                kind: "counter",
                value: self.failed_attempts.load(Ordering::Relaxed) as f64,
            },
            ExtraMetric {
                name: "outbox_events_moved_aside_total",
                help: "Outbox events moved aside after too many attempts",
                kind: "counter",
                value: self.moved_aside.load(Ordering::Relaxed) as f64,
            },
        ]
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

/// The relay's dependencies and settings.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    store: Store,
    client: PubSubClient,
    pubsub: String,
    config: OutboxConfig,
    publish_timeout: Duration,
    wake: Arc<Notify>,
    counters: Arc<RelayCounters>,
    log: Logger,
}

/// A running relay: stop it with [`RelayHandle::shutdown`].
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Asks the relay to stop after its current round and waits up to `deadline` for it.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl OutboxRelay {
    /// A relay publishing to `pubsub` through `client`, woken by `wake` after commits.
    pub fn new(
        store: Store,
        client: PubSubClient,
        pubsub: impl Into<String>,
        config: OutboxConfig,
        publish_timeout: Duration,
        log: &Logger,
    ) -> Self {
        Self {
            store,
            client,
            pubsub: pubsub.into(),
            config,
            publish_timeout,
            wake: Arc::new(Notify::new()),
            counters: Arc::new(RelayCounters::default()),
            log: log.new(o!("component" => "outbox-relay")),
        }
    }

    /// The notifier that wakes the relay.
    pub fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The relay's counters.
    pub fn counters(&self) -> Arc<RelayCounters> {
        Arc::clone(&self.counters)
    }

    /// The lease of claimed rows: longer than every publish of one round can take.
    pub fn lease(&self) -> Duration {
        self.publish_timeout * 4 + Duration::from_secs(10)
    }

    /// Starts the relay on the current runtime.
    pub fn spawn(self) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            info!(self.log, "outbox relay started"; "batch_size" => self.config.batch_size,
                "max_attempts" => self.config.max_attempts, "lease_ms" => self.lease().as_millis() as u64);
            loop {
                let handled = self.run_once().await;
                if *stopped.borrow() {
                    break;
                }
                if handled > 0 {
                    // Rows were there: look again at once (more may be due).
                    continue;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = stopped.changed() => break,
                }
            }
            info!(self.log, "outbox relay stopped");
        });
        RelayHandle { stop, task }
    }

    /// One round: claim, publish, settle. Returns the number of rows handled.
    pub async fn run_once(&self) -> usize {
        let now = OffsetDateTime::now_utc();
        let rows = match self
            .store
            .claim_outbox(self.config.batch_size as usize, self.lease(), now)
            .await
        {
            Ok(rows) => rows,
            Err(err) => {
                warn!(self.log, "could not claim outbox rows"; "error" => %ErrorChain(&err));
                return 0;
            }
        };
        if rows.is_empty() {
            return 0;
        }
        let count = rows.len();
        let mut by_key: BTreeMap<String, Vec<OutboxMessage>> = BTreeMap::new();
        for row in rows {
            by_key
                .entry(row.partition_key.clone())
                .or_default()
                .push(row);
        }
        let results = join_all(by_key.into_values().map(|rows| self.publish_in_order(rows))).await;
        let delivered: Vec<Uuid> = results.into_iter().flatten().collect();
        if !delivered.is_empty()
            && let Err(err) = self.store.mark_outbox_delivered(&delivered).await
        {
            // The rows will be published again after their lease: at-least-once, same event ids.
            warn!(self.log, "could not delete delivered outbox rows"; "count" => delivered.len(),
                "error" => %ErrorChain(&err));
        }
        count
    }

    /// Publishes the rows of one partition key in order; stops at the first failure (recording it and giving
    /// the rest back). Returns the ids delivered.
    async fn publish_in_order(&self, rows: Vec<OutboxMessage>) -> Vec<Uuid> {
        let mut delivered = Vec::with_capacity(rows.len());
        let mut rest = rows.into_iter();
        while let Some(row) = rest.next() {
            let mut options = PublishOptions::new()
                .with_partition_key(row.partition_key.clone())
                .with_timeout(self.publish_timeout);
            if let Some(traceparent) = &row.traceparent {
                options = options.with_traceparent(traceparent.clone());
            }
            let res = self
                .client
                .publish_bytes(
                    &self.pubsub,
                    &row.topic,
                    cloudevents_model::CONTENT_TYPE,
                    row.payload.clone(),
                    &options,
                )
                .await;
            match res {
                Ok(()) => {
                    self.counters.published.fetch_add(1, Ordering::Relaxed);
                    debug!(self.log, "published outbox event {}", row.id; "event_id" => %row.id,
                        "topic" => &row.topic, "attempts" => row.attempts);
                    delivered.push(row.id);
                }
                Err(err) => {
                    self.counters
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    self.record_failure(&row, &err).await;
                    let skipped: Vec<Uuid> = rest.map(|row| row.id).collect();
                    if !skipped.is_empty()
                        && let Err(err) = self.store.release_outbox(&skipped).await
                    {
                        warn!(self.log, "could not release outbox rows"; "error" => %ErrorChain(&err));
                    }
                    break;
                }
            }
        }
        delivered
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(16));
        self.config
            .base_backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff)
    }

    async fn record_failure(&self, row: &OutboxMessage, err: &PublishError) {
        let now = OffsetDateTime::now_utc();
        let retry_at = now + self.backoff(row.attempts);
        let message = ErrorChain(err).to_string();
        let outcome = self
            .store
            .record_outbox_failure(row.id, &message, retry_at, self.config.max_attempts, now)
            .await;
        let attempts = row.attempts + 1;
        match outcome {
            Ok(FailureOutcome::MovedAside { attempts }) => {
                self.counters.moved_aside.fetch_add(1, Ordering::Relaxed);
                error!(self.log, "outbox event {} moved aside after {} attempts", row.id, attempts;
                    "event_id" => %row.id, "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Ok(_) if err.is_connect() || err.is_timeout() => {
                warn!(self.log, "outbox publish of {} failed, will retry", row.id; "event_id" => %row.id,
                    "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Ok(_) => {
                error!(self.log, "outbox publish of {} rejected, will retry", row.id; "event_id" => %row.id,
                    "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Err(store_err) => {
                warn!(self.log, "could not record an outbox failure"; "event_id" => %row.id,
                    "error" => %ErrorChain(&store_err));
            }
        }
    }
}
