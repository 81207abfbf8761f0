//! The outbox relay (`EVENT_DELIVERY=outbox`): claims due `event_outbox` rows, publishes them with their stored
//! event id, deletes them on success, backs off on failure, and moves a row aside after `max_attempts`
//! rejections of that event by the sidecar (4xx). An outage (no connection, timeout, 5xx) is retried, with the
//! backoff capped at `max_backoff`, for as long as it lasts: nothing is moved aside because Kafka was down.
//!
//! The store hands out the rows of one partition key (user) in order and never past a failed or leased one, so
//! a user's events keep their order. The claim leases each key's first row for [`LeasePlan::lease`]: enough for
//! the publishes the relay plans per key and claim, plus a margin; the relay starts no publish once less than
//! that margin is left, so every publish ends, and its rows are settled, while the lease still holds. Every
//! claim carries a fencing token: should a relay be paused past its lease anyway (a stalled process, a clock
//! jump), the rows it then deletes, releases or marks failed are only those still carrying its token, so it
//! cannot undo a second replica's claim of the same key; the rows it was fenced off from are counted
//! (`outbox_settles_fenced_total`) and logged. Partition keys are published concurrently.
//!
//! Waking: every commit wakes the relay, which waits `linger` (5 ms) so that the commits right behind it share
//! the round; a round that found rows is followed by another, at once if its batch was full, else after
//! `linger`. When rows
//! wait behind a blocked key (a retry pending, as with a hanging sidecar), the relay claims again no sooner
//! than 100 ms and no later than the key frees up or `poll_interval` passes, so a long outage
//! costs a few cheap claims per second instead of one per commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dapr_pubsub_client::{BulkEntry, PubSubClient, PublishError, PublishOptions};
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
    fenced: AtomicU64,
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
            ExtraMetric {
                name: "outbox_settles_fenced_total",
                help: "Outbox rows this relay could not settle because another relay claimed them after its lease expired",
                kind: "counter",
                value: self.fenced.load(Ordering::Relaxed) as f64,
            },
        ]
    }

    /// Rows this relay was fenced off from so far.
    pub fn fenced(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

/// The outbox backlog gauges for `/metrics`: `events_outbox_backlog` (rows still to deliver) and
/// `events_outbox_oldest_pending_age_seconds` (0 when there are none), read at `now` with one
/// [`Store::outbox_backlog`] query. Called once per scrape, never on a request's path.
pub async fn backlog_metrics(
    store: &Store,
    now: OffsetDateTime,
) -> Result<Vec<ExtraMetric>, task_store::StoreError> {
    let backlog = store.outbox_backlog().await?;
    let age = backlog
        .oldest_pending_at
        .map_or(0.0, |oldest| (now - oldest).as_seconds_f64().max(0.0));
    Ok(vec![
        ExtraMetric {
            name: "events_outbox_backlog",
            help: "Outbox events waiting for delivery (claimed or not; moved-aside rows excluded)",
            kind: "gauge",
            value: backlog.pending as f64,
        },
        ExtraMetric {
            name: "events_outbox_oldest_pending_age_seconds",
            help: "Age of the oldest outbox event waiting for delivery (0 when none waits)",
            kind: "gauge",
            value: age,
        },
    ])
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

/// How long a claim's lease is, and until when the relay may start publishes under it.
///
/// The relay publishes at most [`LeasePlan::publishes_per_key`] requests of one key per claim, one after the
/// other, each bounded by the publish timeout; the lease covers all of them plus [`LeasePlan::margin`] (one more
/// publish timeout and [`SETTLE_MARGIN`]). No publish starts once less than the margin is left, so the last one
/// ends, and the relay deletes or records its rows, with at least [`SETTLE_MARGIN`] of lease to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePlan {
    /// The longest one publish request takes.
    pub publish_timeout: Duration,
    /// The most publish requests of one key in one claim.
    pub publishes_per_key: u32,
}

/// The time a lease keeps after the last publish's timeout, for the relay to settle the rows (delete, record).
pub const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// The most publish requests of one partition key the relay sends under one claim (more rows wait for the next).
pub const PUBLISHES_PER_KEY: u32 = 4;

impl LeasePlan {
    /// The lease of a claim: `publishes_per_key × publish timeout + margin`.
    pub fn lease(&self) -> Duration {
        self.publish_timeout.saturating_mul(self.publishes_per_key) + self.margin()
    }

    /// What must be left of the lease to start a publish: one publish timeout and [`SETTLE_MARGIN`].
    pub fn margin(&self) -> Duration {
        self.publish_timeout + SETTLE_MARGIN
    }

    /// Whether a publish may start with `remaining` left on the lease.
    pub fn may_publish(&self, remaining: Duration) -> bool {
        remaining >= self.margin()
    }
}

/// Whether a failed publish says something about the event itself, so that it counts towards moving the row
/// aside after `max_attempts`. Everything else is an outage, retried for as long as it lasts:
/// - no answer (no connection, timeout, broken transport), 5xx (Dapr answers 500 when the broker is down),
///   408 and 429;
/// - a 4xx that describes the deployment, the same for every event: 401 (bad `DAPR_API_TOKEN`), 403 (topic not
///   allowed for this app), 404 (unknown pub/sub component), and Dapr's deployment error codes
///   (`ERR_PUBSUB_NOT_CONFIGURED` answered with 400, `ERR_PUBSUB_NOT_FOUND`, `ERR_PUBSUB_FORBIDDEN`, …).
///
/// What is left (400 about the payload, 413, 415, …) is a rejection of the event.
pub fn counts_as_rejection(err: &PublishError) -> bool {
    const DEPLOYMENT_CODES: [&str; 5] = [
        "ERR_PUBSUB_NOT_CONFIGURED",
        "ERR_PUBSUB_NOT_FOUND",
        "ERR_PUBSUB_FORBIDDEN",
        "ERR_PUBSUB_EMPTY",
        "ERR_TOPIC_NAME_EMPTY",
    ];
    let Some(status) = err.status() else {
        return false;
    };
    if err
        .error_code()
        .is_some_and(|code| DEPLOYMENT_CODES.contains(&code))
    {
        return false;
    }
    matches!(status.as_u16(), 400..=499) && !matches!(status.as_u16(), 401 | 403 | 404 | 408 | 429)
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
    /// Stops the relay at once, wherever it is (its leases stay until they expire).
    #[cfg(feature = "test-util")]
    pub fn abort(self) {
        self.task.abort();
    }

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

    /// How long claims are leased, and until when publishes may start under them.
    pub fn lease_plan(&self) -> LeasePlan {
        LeasePlan {
            publish_timeout: self.publish_timeout,
            publishes_per_key: PUBLISHES_PER_KEY,
        }
    }

    /// The lease of claimed rows (see [`LeasePlan::lease`]).
    pub fn lease(&self) -> Duration {
        self.lease_plan().lease()
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
                    // Rows were there: look again (more may be due), at once when the batch was full (a
                    // backlog), else after a short wait that lets the next commits' rows share a round.
                    if round.claimed < self.config.batch_size as usize
                        && !self.config.linger.is_zero()
                    {
                        tokio::select! {
                            _ = tokio::time::sleep(self.config.linger) => {}
                            _ = stopped.changed() => break,
                        }
                    }
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
                    _ = self.wake.notified() => {
                        // A commit: give the commits right behind it the same round.
                        tokio::select! {
                            _ = tokio::time::sleep(self.config.linger) => {}
                            _ = stopped.changed() => break,
                        }
                    }
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
        let plan = self.lease_plan();
        let lease = plan.lease();
        // Stop starting publishes once less than the margin is left: the last one must end, and be settled,
        // before another replica may take the rows. Measured from before the claim, so it errs on the safe side.
        let lease_end = Instant::now() + lease;
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
        let lease_id = claim.lease;
        let results = join_all(
            by_key
                .into_values()
                .map(|rows| self.publish_in_order(lease_id, rows, lease_end)),
        )
        .await;
        let delivered: Vec<Uuid> = results.into_iter().flatten().collect();
        if !delivered.is_empty() {
            match self.store.mark_outbox_delivered(lease_id, &delivered).await {
                Ok(settled) if settled.fenced > 0 => self.fenced_off(settled.fenced, "delete"),
                Ok(_) => {}
                Err(err) => {
                    // The rows will be published again after their lease: at-least-once, same event ids.
                    warn!(self.log, "could not delete delivered outbox rows"; "count" => delivered.len(),
                        "error" => %ErrorChain(&err));
                }
            }
        }
        round
    }

    /// Publishes the rows of one partition key in order, a [`bulk_groups`] group at a time (one bulk request
    /// per group of two or more, a single publish otherwise); stops at the first failure (recording it: the
    /// failed row's retry time then holds the key, so the rows after it wait untouched), after the claim's
    /// planned publishes, or once less than the lease margin is left before `lease_end`. Returns the ids
    /// delivered.
    async fn publish_in_order(
        &self,
        lease_id: Uuid,
        rows: Vec<OutboxMessage>,
        lease_end: Instant,
    ) -> Vec<Uuid> {
        let mut delivered = Vec::with_capacity(rows.len());
        let plan = self.lease_plan();
        // The lease covers this many publishes of the key: the rows after them wait for the next claim.
        let planned = usize::try_from(plan.publishes_per_key).unwrap_or(usize::MAX);
        for group in bulk_groups(rows).into_iter().take(planned) {
            if !plan.may_publish(lease_end.saturating_duration_since(Instant::now())) {
                // Only the key's first row is leased: the rest simply stay pending for the next claim.
                break;
            }
            let (accepted, failure) = match group.as_slice() {
                [row] => self.publish_one(row).await,
                _ => self.publish_bulk(&group).await,
            };
            self.counters
                .published
                .fetch_add(accepted.len() as u64, Ordering::Relaxed);
            delivered.extend(accepted);
            if let Some((row, failure)) = failure {
                self.counters
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                self.record_failure(lease_id, row, failure).await;
                break;
            }
        }
        delivered
    }

    fn publish_options(&self, row: &OutboxMessage) -> PublishOptions {
        let mut options = PublishOptions::new()
            .with_partition_key(row.partition_key.clone())
            .with_timeout(self.publish_timeout);
        if let Some(traceparent) = &row.traceparent {
            options = options.with_traceparent(traceparent.clone());
        }
        options
    }

    async fn publish_one<'r>(
        &self,
        row: &'r OutboxMessage,
    ) -> (Vec<Uuid>, Option<(&'r OutboxMessage, Failure)>) {
        let res = self
            .client
            .publish_bytes(
                &self.pubsub,
                &row.topic,
                cloudevents_model::CONTENT_TYPE,
                row.payload.clone(),
                &self.publish_options(row),
            )
            .await;
        match res {
            Ok(()) => {
                debug!(self.log, "published outbox event {}", row.id; "event_id" => %row.id,
                    "topic" => &row.topic, "attempts" => row.attempts);
                (vec![row.id], None)
            }
            Err(err) => (Vec::new(), Some((row, Failure::from_error(&err)))),
        }
    }

    /// One bulk request for `group` (one topic, one partition key, one traceparent). Delivered are the rows
    /// before the first entry the sidecar reports as failed: the rows after it are sent again later, even if
    /// they were published, so that a retried event never lands behind its successors for good.
    async fn publish_bulk<'r>(
        &self,
        group: &'r [OutboxMessage],
    ) -> (Vec<Uuid>, Option<(&'r OutboxMessage, Failure)>) {
        let first = &group[0];
        let entries: Result<Vec<BulkEntry>, PublishError> = group
            .iter()
            .map(|row| {
                BulkEntry::cloud_event_json(row.id.to_string(), row.payload.clone())
                    .map(|entry| entry.with_partition_key(row.partition_key.clone()))
            })
            .collect();
        let outcome = match entries {
            Ok(entries) => {
                self.client
                    .bulk_publish(
                        &self.pubsub,
                        &first.topic,
                        &entries,
                        &self.publish_options(first),
                    )
                    .await
            }
            Err(err) => Err(err),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => return (Vec::new(), Some((first, Failure::from_error(&err)))),
        };
        let all_failed = outcome.failed_entries().len() >= group.len();
        let mut delivered = Vec::with_capacity(group.len());
        for row in group {
            if let Some(error) = outcome.error_for(&row.id.to_string()) {
                // Every entry failing is the broker failing (an outage); only some failing is about them.
                let failure = Failure {
                    message: format!("bulk publish entry failed ({}): {error}", outcome.status()),
                    rejection: !all_failed,
                    outage_io: false,
                };
                return (delivered, Some((row, failure)));
            }
            delivered.push(row.id);
        }
        debug!(self.log, "published {} outbox events in one bulk request", group.len();
            "topic" => &first.topic, "first_event_id" => %first.id);
        (delivered, None)
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(16));
        self.config
            .base_backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff)
    }

    /// Counts and logs rows this relay could not settle because another relay claimed them after its lease
    /// expired (a stalled process or sidecar); that relay now delivers them.
    fn fenced_off(&self, rows: usize, what: &str) {
        self.counters
            .fenced
            .fetch_add(rows as u64, Ordering::Relaxed);
        warn!(self.log, "{} outbox rows were claimed by another relay after this one's lease expired; not settled", rows;
            "rows" => rows, "operation" => what, "lease_ms" => self.lease().as_millis() as u64);
    }

    async fn record_failure(&self, lease_id: Uuid, row: &OutboxMessage, failure: Failure) {
        let now = OffsetDateTime::now_utc();
        let retry_at = now + self.backoff(row.attempts);
        let message = failure.message;
        // Only an answer about the event itself counts towards moving it aside (see `counts_as_rejection`): a
        // sidecar, broker or deployment that is broken is retried for as long as the outage lasts, so an outage
        // of any length loses nothing.
        let max_attempts = if failure.rejection {
            self.config.max_attempts
        } else {
            u32::MAX
        };
        let outcome = self
            .store
            .record_outbox_failure(lease_id, row.id, &message, retry_at, max_attempts, now)
            .await;
        let attempts = row.attempts + 1;
        match outcome {
            Ok(FailureOutcome::Fenced) => self.fenced_off(1, "record failure"),
            Ok(FailureOutcome::MovedAside { attempts }) => {
                self.counters.moved_aside.fetch_add(1, Ordering::Relaxed);
                error!(self.log, "outbox event {} moved aside after {} attempts", row.id, attempts;
                    "event_id" => %row.id, "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Ok(_) if failure.outage_io => {
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

/// Why a publish of an outbox row failed, as the relay settles it.
#[derive(Debug)]
struct Failure {
    /// The error chain, stored as the row's `last_error`.
    message: String,
    /// The sidecar refused the event itself ([`counts_as_rejection`]): counts towards moving it aside.
    rejection: bool,
    /// No connection or no answer in time: logged as a warning, not an error.
    outage_io: bool,
}

impl Failure {
    fn from_error(err: &PublishError) -> Self {
        Self {
            message: ErrorChain(err).to_string(),
            rejection: counts_as_rejection(err),
            outage_io: err.is_connect() || err.is_timeout(),
        }
    }
}

/// Splits one partition key's rows (in `seq` order) into the groups the relay publishes, in the order of
/// their first row: rows of the same topic and `traceparent` (a bulk request carries one, and the SPEC wants
/// each event sent with its request's), at most [`MAX_BULK_ENTRIES`] rows and about [`MAX_BULK_BYTES`] of
/// payload each. Kafka keeps order per topic and partition, and each group keeps its rows' order.
fn bulk_groups(rows: Vec<OutboxMessage>) -> Vec<Vec<OutboxMessage>> {
    let mut groups: Vec<Vec<OutboxMessage>> = Vec::new();
    // For each open group: its topic, traceparent and payload bytes so far.
    let mut open: Vec<(String, Option<String>, usize)> = Vec::new();
    for row in rows {
        let fits = |(topic, traceparent, bytes): &(String, Option<String>, usize), len: usize| {
            *topic == row.topic
                && *traceparent == row.traceparent
                && bytes + row.payload.len() <= MAX_BULK_BYTES
                && len < MAX_BULK_ENTRIES
        };
        // Only the newest group of a topic may grow: an older one is full, and joining it would overtake.
        let index = open
            .iter()
            .rposition(|(topic, _, _)| *topic == row.topic)
            .filter(|&index| fits(&open[index], groups[index].len()));
        match index {
            Some(index) => {
                open[index].2 += row.payload.len();
                groups[index].push(row);
            }
            None => {
                open.push((
                    row.topic.clone(),
                    row.traceparent.clone(),
                    row.payload.len(),
                ));
                groups.push(vec![row]);
            }
        }
    }
    groups
}

/// The most rows in one bulk request.
const MAX_BULK_ENTRIES: usize = 100;

/// The most payload bytes in one bulk request (daprd refuses request bodies over 4 MiB by default).
const MAX_BULK_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, topic: &str, traceparent: Option<&str>, payload_len: usize) -> OutboxMessage {
        let now = OffsetDateTime::now_utc();
        OutboxMessage {
            id: Uuid::new_v4(),
            seq,
            topic: topic.to_owned(),
            partition_key: "user".to_owned(),
            payload: "x".repeat(payload_len),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            failed_at: None,
            created_at: now,
            traceparent: traceparent.map(str::to_owned),
            lease_id: None,
        }
    }

    fn seqs(groups: &[Vec<OutboxMessage>]) -> Vec<Vec<i64>> {
        groups
            .iter()
            .map(|group| group.iter().map(|row| row.seq).collect())
            .collect()
    }

    fn rejected(status: u16, error_code: Option<&str>) -> PublishError {
        PublishError::Rejected {
            status: status.try_into().expect("a valid status"),
            error_code: error_code.map(str::to_owned),
            body: String::new(),
        }
    }

    #[test]
    fn deployment_errors_and_outages_never_count_as_rejections() {
        for status in [401, 403, 404, 408, 429, 500, 502, 503] {
            assert!(
                !counts_as_rejection(&rejected(status, None)),
                "{status} is about the deployment or an outage"
            );
        }
        for code in [
            "ERR_PUBSUB_NOT_CONFIGURED",
            "ERR_PUBSUB_NOT_FOUND",
            "ERR_PUBSUB_FORBIDDEN",
        ] {
            assert!(
                !counts_as_rejection(&rejected(400, Some(code))),
                "400 {code} describes the deployment"
            );
        }
        assert!(!counts_as_rejection(&PublishError::Timeout {
            timeout: Duration::from_secs(1)
        }));
        assert!(!counts_as_rejection(&PublishError::InvalidRequest {
            reason: "x".to_owned()
        }));
    }

    #[test]
    fn an_answer_about_the_event_counts_as_a_rejection() {
        assert!(counts_as_rejection(&rejected(400, None)));
        assert!(counts_as_rejection(&rejected(
            400,
            Some("ERR_PUBSUB_CLOUD_EVENTS_SER")
        )));
        assert!(counts_as_rejection(&rejected(413, None)));
        assert!(counts_as_rejection(&rejected(415, None)));
    }

    #[test]
    fn a_lease_covers_the_planned_publishes_and_a_settle_margin() {
        let plan = LeasePlan {
            publish_timeout: Duration::from_secs(5),
            publishes_per_key: 4,
        };
        assert_eq!(plan.margin(), Duration::from_secs(5) + SETTLE_MARGIN);
        assert_eq!(plan.lease(), Duration::from_secs(4 * 5) + plan.margin());
        // Each planned publish may start and still end before the margin is reached.
        let mut remaining = plan.lease();
        for publish in 0..plan.publishes_per_key {
            assert!(plan.may_publish(remaining), "publish {publish}");
            remaining -= plan.publish_timeout;
        }
        assert!(remaining >= plan.margin());
        // With less than a publish timeout and the settle margin left, none starts.
        assert!(plan.may_publish(plan.margin()));
        assert!(!plan.may_publish(plan.margin() - Duration::from_millis(1)));
        assert!(!plan.may_publish(SETTLE_MARGIN));
    }

    #[test]
    fn rows_group_by_topic_in_order_of_their_first_row() {
        let rows = vec![
            row(1, "a", None, 10),
            row(2, "b", None, 10),
            row(3, "a", None, 10),
            row(4, "c", None, 10),
            row(5, "b", None, 10),
        ];
        assert_eq!(seqs(&bulk_groups(rows)), [vec![1, 3], vec![2, 5], vec![4]]);
    }

    #[test]
    fn a_different_traceparent_starts_a_group_that_later_rows_cannot_skip() {
        let rows = vec![
            row(1, "a", Some("t1"), 10),
            row(2, "a", Some("t2"), 10),
            row(3, "a", Some("t1"), 10),
            row(4, "a", Some("t1"), 10),
        ];
        assert_eq!(
            seqs(&bulk_groups(rows)),
            [vec![1], vec![2], vec![3, 4]],
            "3 may not join 1's group: it would overtake 2"
        );
    }

    #[test]
    fn groups_are_capped_by_entries_and_bytes() {
        let many: Vec<OutboxMessage> = (0..(MAX_BULK_ENTRIES as i64 + 5))
            .map(|seq| row(seq, "a", None, 10))
            .collect();
        let sizes: Vec<usize> = bulk_groups(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BULK_ENTRIES, 5]);

        let big = MAX_BULK_BYTES / 2 + 1;
        let large = vec![
            row(1, "a", None, big),
            row(2, "a", None, big),
            row(3, "a", None, 10),
        ];
        assert_eq!(seqs(&bulk_groups(large)), [vec![1], vec![2, 3]]);
    }
}
