//! The outbox relay (`EVENT_DELIVERY=outbox`): claims due `event_outbox` rows, publishes them with their stored
//! event id, deletes them on success, backs off on failure, and moves a row aside after `max_attempts`
//! rejections of that event by the sidecar (4xx). An outage (no connection, timeout, 5xx) is retried, with the
//! backoff capped at `max_backoff`, for as long as it lasts: nothing is moved aside because Kafka was down.
//!
//! The store hands out the rows of one partition key (user) in order and never past a failed or leased one, so
//! a user's events keep their order; the claim leases each key's first row for longer than a round of
//! publishes (and the relay starts no publish that could outlive it), so a second replica never takes a key
//! this one is still sending. Partition keys are published concurrently.
//!
//! Waking: every commit wakes the relay, and a round that found rows is followed by another at once. When rows
//! wait behind a blocked key (a retry pending, as with a hanging sidecar), the relay claims again no sooner
//! than 100 ms and no later than the key frees up or `poll_interval` passes, so a long outage
//! costs a few cheap claims per second instead of one per commit.

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
use tokio::time::Instant;
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

/// What one relay round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows claimed (then published, failed, or left for the next round).
    pub claimed: usize,
    /// Set when some partition key had rows it could not claim because it waits for a retry or is leased by
    /// another replica: the earliest instant one of those keys frees up.
    pub blocked_until: Option<OffsetDateTime>,
}

/// The shortest pause between claims while a key is blocked: bounds the claims a hanging sidecar causes (each
/// commit wakes the relay) and the delay of other keys' rows meanwhile.
const BLOCKED_RECHECK: Duration = Duration::from_millis(100);

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
                let round = self.run_once().await;
                if *stopped.borrow() {
                    break;
                }
                if round.claimed > 0 {
                    // Rows were there: look again at once (more may be due).
                    continue;
                }
                let idle = match round.blocked_until {
                    None => self.config.poll_interval,
                    Some(free_at) => {
                        // Rows wait behind a key that is retrying (or leased by another replica). Commits keep
                        // waking the relay, mostly with more rows for that same key, so do not look again for
                        // each one: other keys' rows wait at most this long, the blocked key until it frees up.
                        tokio::select! {
                            _ = tokio::time::sleep(self.blocked_recheck()) => {}
                            _ = stopped.changed() => break,
                        }
                        let until_free = free_at - OffsetDateTime::now_utc();
                        Duration::try_from(until_free)
                            .unwrap_or(Duration::ZERO)
                            .min(self.config.poll_interval)
                    }
                };
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = stopped.changed() => break,
                }
            }
            info!(self.log, "outbox relay stopped");
        });
        RelayHandle { stop, task }
    }

    /// The shortest pause between claims while some key is blocked (see [`Round::blocked_until`]).
    fn blocked_recheck(&self) -> Duration {
        self.config.poll_interval.min(BLOCKED_RECHECK)
    }

    /// One round: claim, publish, settle.
    pub async fn run_once(&self) -> Round {
        let now = OffsetDateTime::now_utc();
        let lease = self.lease();
        // Stop starting publishes once one might outlive the lease: another replica may then take the rows.
        let publish_until = Instant::now() + lease.saturating_sub(self.publish_timeout);
        let claim = match self
            .store
            .claim_outbox(self.config.batch_size as usize, lease, now)
            .await
        {
            Ok(claim) => claim,
            Err(err) => {
                warn!(self.log, "could not claim outbox rows"; "error" => %ErrorChain(&err));
                return Round::default();
            }
        };
        let round = Round {
            claimed: claim.messages.len(),
            blocked_until: claim.blocked_until,
        };
        if claim.messages.is_empty() {
            return round;
        }
        let mut by_key: BTreeMap<String, Vec<OutboxMessage>> = BTreeMap::new();
        for row in claim.messages {
            by_key
                .entry(row.partition_key.clone())
                .or_default()
                .push(row);
        }
        let results = join_all(
            by_key
                .into_values()
                .map(|rows| self.publish_in_order(rows, publish_until)),
        )
        .await;
        let delivered: Vec<Uuid> = results.into_iter().flatten().collect();
        if !delivered.is_empty()
            && let Err(err) = self.store.mark_outbox_delivered(&delivered).await
        {
            // The rows will be published again after their lease: at-least-once, same event ids.
            warn!(self.log, "could not delete delivered outbox rows"; "count" => delivered.len(),
                "error" => %ErrorChain(&err));
        }
        round
    }

    /// Publishes the rows of one partition key in order; stops at the first failure (recording it: the
    /// failed row's retry time then holds the key, so the rows after it wait without being touched) or when
    /// `publish_until` has passed. Returns the ids delivered.
    async fn publish_in_order(
        &self,
        rows: Vec<OutboxMessage>,
        publish_until: Instant,
    ) -> Vec<Uuid> {
        let mut delivered = Vec::with_capacity(rows.len());
        for row in rows {
            if Instant::now() >= publish_until {
                // Only the key's first row is leased: the rest simply stay pending for the next claim.
                break;
            }
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
        // Only an answer about the event itself counts towards moving it aside: a sidecar or broker that is
        // down (no connection, timeout, 5xx: Dapr answers 500 when Kafka is unreachable) is retried for as
        // long as the outage lasts, so an outage of any length loses nothing.
        let max_attempts = if is_rejection(err) {
            self.config.max_attempts
        } else {
            u32::MAX
        };
        let outcome = self
            .store
            .record_outbox_failure(row.id, &message, retry_at, max_attempts, now)
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

/// Whether the sidecar refused the event itself (a 4xx answer other than 408 Request Timeout and 429 Too Many
/// Requests), as opposed to being unreachable, slow or failing on its side.
fn is_rejection(err: &PublishError) -> bool {
    err.status()
        .is_some_and(|status| matches!(status.as_u16(), 400..=499 if !matches!(status.as_u16(), 408 | 429)))
}
