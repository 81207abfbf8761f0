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
//! (`outbox_settles_fenced_total`) and logged. Partition keys are published concurrently; the claimed rows of
//! one key go out one request after another, as many as fit the lease.
//!
//! Settling: the spawned relay deletes a round's delivered rows in the transaction of its next claim
//! ([`Store::settle_and_claim_outbox`]), which comes at once through a backlog and after `linger` under load, so
//! a round costs one transaction, not a claim and a delete; at shutdown the last round's rows are deleted on
//! their own, within the shutdown deadline. Until that delete, the key's leased head row holds the key, so no
//! later row of it is claimed while an earlier one is unsettled.
//!
//! Waking: every commit wakes the relay, which waits `linger` (5 ms) so that the commits right behind it share
//! the round; a round that found rows is followed by another, at once if its batch was full, else after
//! `linger`. When rows
//! wait behind a blocked key (a retry pending, as with a hanging sidecar), the relay claims again no sooner
//! than 100 ms and no later than the key frees up or `poll_interval` passes, so a long outage
//! costs a few cheap claims per second instead of one per commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dapr_pubsub_client::delivery::{
    self, BatchLimits, Destination, FailureClass, PlanEntry, RetryMode, RetryPolicy,
};
use dapr_pubsub_client::{BulkEntry, PubSubClient, PublishError, PublishOptions};
use futures_util::future::join_all;
use slog::{Logger, debug, error, info, o, warn};
use task_store::{Delivered, FailureOutcome, OutboxMessage, Store};
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
/// The relay publishes the requests of one key one after the other, each bounded by the publish timeout; the
/// lease covers [`LeasePlan::publishes_per_key`] of them taking their whole timeout, plus [`LeasePlan::margin`]
/// (one more publish timeout and [`SETTLE_MARGIN`]). No publish starts once less than the margin is left, so the
/// last one ends, and the relay deletes or records its rows, with at least [`SETTLE_MARGIN`] of lease to spare,
/// however many publishes fit before (a sidecar answering in a millisecond fits thousands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePlan {
    /// The longest one publish request takes.
    pub publish_timeout: Duration,
    /// The publish requests of one key that the lease covers even if each takes the whole timeout.
    pub publishes_per_key: u32,
}

/// The time a lease keeps after the last publish's timeout, for the relay to settle the rows (delete, record).
pub const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// The publish requests of one partition key a lease covers at the full publish timeout each (more are sent
/// under one claim while the lease keeps its margin: the claim's rows of a key go out one wave after another).
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
            // Rows the last round delivered: the next claim deletes them in its transaction.
            let mut carried: Option<Unsettled> = None;
            loop {
                let (round, delivered) = self.claim_and_publish(carried.take()).await;
                carried = delivered;
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
            // Within the shutdown deadline, like the round before: what was delivered is not published again.
            if let Some(carried) = carried.take() {
                self.settle(carried).await;
            }
            info!(self.log, "outbox relay stopped");
        });
        RelayHandle { stop, task }
    }

    /// The shortest pause between claims while some key is blocked (see [`Round::blocked_until`]).
    fn blocked_recheck(&self) -> Duration {
        self.config.poll_interval.min(BLOCKED_RECHECK)
    }

    /// One round: claim, publish, settle (the delete of the delivered rows in a statement of its own).
    pub async fn run_once(&self) -> Round {
        let (round, delivered) = self.claim_and_publish(None).await;
        if let Some(delivered) = delivered {
            self.settle(delivered).await;
        }
        round
    }

    /// Claims and publishes, and returns the rows delivered, still to settle. `carried` (the previous round's
    /// delivered rows) is deleted in the claim's transaction ([`Store::settle_and_claim_outbox`]): a relay that
    /// goes on to the next round at once (a backlog, or the next commits after `linger`) spends one transaction
    /// per round, not two. The carried rows' keys stay leased until that delete, so nothing of theirs is claimed
    /// before it; should the claim fail, they are deleted on their own.
    async fn claim_and_publish(&self, carried: Option<Unsettled>) -> (Round, Option<Unsettled>) {
        let now = OffsetDateTime::now_utc();
        let plan = self.lease_plan();
        let lease = plan.lease();
        // Stop starting publishes once less than the margin is left: the last one must end, and be settled,
        // before another replica may take the rows. Measured from before the claim, so it errs on the safe side.
        let lease_end = Instant::now() + lease;
        let settling = carried.as_ref().map(|carried| Delivered {
            lease: carried.lease,
            ids: &carried.ids,
        });
        let claim = match self
            .store
            .settle_and_claim_outbox(settling, self.config.batch_size as usize, lease, now)
            .await
        {
            Ok((settled, claim)) => {
                if settled.fenced > 0 {
                    self.fenced_off(settled.fenced, "delete");
                }
                claim
            }
            Err(err) => {
                warn!(self.log, "could not claim outbox rows"; "error" => %ErrorChain(&err));
                if let Some(carried) = carried {
                    self.settle(carried).await;
                }
                return (Round::default(), None);
            }
        };
        let round = Round {
            claimed: claim.messages.len(),
            blocked_until: claim.blocked_until,
        };
        if claim.messages.is_empty() {
            return (round, None);
        }
        let lease_id = claim.lease;
        let delivered = self
            .publish_claimed(lease_id, claim.messages, lease_end)
            .await;
        let unsettled = (!delivered.is_empty()).then_some(Unsettled {
            lease: lease_id,
            ids: delivered,
        });
        (round, unsettled)
    }

    /// Deletes delivered rows on their own (fenced by their claim's token).
    async fn settle(&self, delivered: Unsettled) {
        match self
            .store
            .mark_outbox_delivered(delivered.lease, &delivered.ids)
            .await
        {
            Ok(settled) if settled.fenced > 0 => self.fenced_off(settled.fenced, "delete"),
            Ok(_) => {}
            Err(err) => {
                // The rows will be published again after their lease: at-least-once, same event ids.
                warn!(self.log, "could not delete delivered outbox rows"; "rows" => delivered.ids.len(),
                    "error" => %ErrorChain(&err));
            }
        }
    }

    /// Publishes the claimed rows (in `seq` order) in waves planned by [`delivery::plan`]: each wave sends, at
    /// the same time, the oldest row of every (topic, partition key) that is not held back, batched across keys
    /// into bulk requests (one topic and `traceparent` each: a request carries one, and the SPEC wants each event
    /// sent with its request's), so a request never carries two rows of one key and a failed row is never
    /// overtaken by a later row of its key. A failed row is recorded (its retry time then holds the key in the
    /// store) and holds back the rest of its partition key for this round; other keys go on. Each wave is one
    /// publish per key; waves go on until every claimed row is delivered or held back, and none starts once less
    /// than the lease margin is left before `lease_end` (the rows not reached stay pending for the next claim:
    /// only the key's first row is leased). The lease is sized for [`PUBLISHES_PER_KEY`] publishes that each take
    /// the whole timeout; publishes that answer at once make many more waves fit. Records failures under
    /// `lease_id`. Returns the ids delivered.
    async fn publish_claimed(
        &self,
        lease_id: Uuid,
        rows: Vec<OutboxMessage>,
        lease_end: Instant,
    ) -> Vec<Uuid> {
        let plan = self.lease_plan();
        let mut delivered = Vec::with_capacity(rows.len());
        // Rows not settled yet; a failed row stays as a placeholder that holds back its partition key.
        let mut waiting: Vec<(OutboxMessage, bool)> =
            rows.into_iter().map(|row| (row, false)).collect();
        // Wave after wave until the claimed rows are settled: each wave starts only while the lease has its margin
        // left, which bounds every publish, not the number of waves.
        loop {
            if !plan.may_publish(lease_end.saturating_duration_since(Instant::now())) {
                break;
            }
            let requests = plan_wave(&self.pubsub, &waiting);
            if requests.is_empty() {
                break;
            }
            let results =
                join_all(requests.iter().map(|request| self.send(&waiting, request))).await;
            let mut settled = Vec::new();
            for (request, results) in requests.iter().zip(results) {
                for (&index, result) in request.iter().zip(results) {
                    let row = &waiting[index].0;
                    match result {
                        Ok(()) => {
                            self.counters.published.fetch_add(1, Ordering::Relaxed);
                            debug!(self.log, "published outbox event {}", row.id; "event_id" => %row.id,
                                "topic" => &row.topic, "attempts" => row.attempts, "bulk_entries" => request.len(),
                                EventFields::of(row));
                            delivered.push(row.id);
                            settled.push(index);
                        }
                        Err(failure) => {
                            self.counters
                                .failed_attempts
                                .fetch_add(1, Ordering::Relaxed);
                            self.record_failure(lease_id, row, failure).await;
                            waiting[index].1 = true;
                        }
                    }
                }
            }
            settled.sort_unstable();
            for index in settled.into_iter().rev() {
                waiting.remove(index);
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

    /// Sends one planned request (a single publish, or a bulk request with one row per key and each row's
    /// partition key as entry metadata); one result per row.
    async fn send(
        &self,
        waiting: &[(OutboxMessage, bool)],
        request: &[usize],
    ) -> Vec<Result<(), Failure>> {
        let first = &waiting[request[0]].0;
        if let [_] = request {
            let res = self
                .client
                .publish_bytes(
                    &self.pubsub,
                    &first.topic,
                    cloudevents_model::CONTENT_TYPE,
                    first.payload.clone(),
                    &self.publish_options(first),
                )
                .await;
            return vec![res.map_err(|err| Failure::from_error(&err, None))];
        }
        let rows: Vec<&OutboxMessage> = request.iter().map(|&index| &waiting[index].0).collect();
        let entries: Result<Vec<BulkEntry>, PublishError> = rows
            .iter()
            .map(|row| {
                BulkEntry::cloud_event_json(row.id.to_string(), row.payload.clone())
                    .map(|entry| entry.with_partition_key(row.partition_key.clone()))
            })
            .collect();
        // The request options: the shared deadline and trace context; each entry carries its own key.
        let mut options = PublishOptions::new().with_timeout(self.publish_timeout);
        if let Some(traceparent) = &first.traceparent {
            options = options.with_traceparent(traceparent.clone());
        }
        let outcome = match entries {
            Ok(entries) => {
                self.client
                    .publish_bulk(&self.pubsub, &first.topic, &entries, &options)
                    .await
            }
            Err(err) => Err(err),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => {
                let err = Arc::new(err);
                return rows
                    .iter()
                    .map(|_| Err(Failure::from_error(&err, None)))
                    .collect();
            }
        };
        // Every entry failing is the broker failing (an outage); only some failing is about them.
        let all_failed = outcome.failed_entries().len() >= rows.len();
        rows.iter()
            .map(|row| match outcome.error_for(&row.id.to_string()) {
                None => Ok(()),
                Some(error) => {
                    let err = PublishError::Rejected {
                        status: outcome.status(),
                        error_code: outcome.error_code().map(str::to_owned),
                        body: error.to_owned(),
                    };
                    let class = (!all_failed).then_some(FailureClass::EventRejected);
                    Err(Failure::from_error(&err, class))
                }
            })
            .collect()
    }

    /// The retry policy of outbox rows: outages are retried for as long as they last, rejections of the event up
    /// to `max_attempts`, with exponential backoff and jitter up to `max_backoff`.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(
            self.config.base_backoff,
            self.config.max_backoff,
            self.config.max_attempts,
        )
        .with_mode(RetryMode::Durable)
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
        let retry_at = now + self.policy().delay(row.attempts + 1);
        let message = failure.message;
        // Only an answer about the event itself counts towards moving it aside ([`FailureClass`]): a
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
        // Level by outcome: an answer with an error status needs someone to act (ERROR, with the status and the
        // start of the body); no answer (refused, timed out) is an outage being waited out (WARN).
        let log = self.log.new(
            o!("status" => failure.status, "body" => failure.body.clone(),
            EventFields::of(row)),
        );
        match outcome {
            Ok(FailureOutcome::Fenced) => self.fenced_off(1, "record failure"),
            Ok(FailureOutcome::MovedAside { attempts }) => {
                self.counters.moved_aside.fetch_add(1, Ordering::Relaxed);
                error!(log, "outbox event {} moved aside after {} attempts", row.id, attempts;
                    "event_id" => %row.id, "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Ok(_) if failure.outage_io => {
                warn!(log, "outbox publish of {} failed, will retry", row.id; "event_id" => %row.id,
                    "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Ok(_) => {
                error!(log, "outbox publish of {} rejected, will retry", row.id; "event_id" => %row.id,
                    "topic" => &row.topic, "attempts" => attempts, "error" => &message);
            }
            Err(store_err) => {
                warn!(self.log, "could not record an outbox failure"; "event_id" => %row.id,
                    "error" => %ErrorChain(&store_err));
            }
        }
    }
}

/// Rows one claim delivered and nobody deleted yet.
#[derive(Debug)]
struct Unsettled {
    /// The claim's fencing token.
    lease: Uuid,
    /// The delivered rows' ids.
    ids: Vec<Uuid>,
}

/// Why a publish of an outbox row failed, as the relay settles it.
#[derive(Debug)]
struct Failure {
    /// The error chain, stored as the row's `last_error`.
    message: String,
    /// The sidecar refused the event itself ([`FailureClass::EventRejected`]): counts towards moving it aside.
    /// An outage (unreachable, slow, failing, or refusing because of its deployment: 401, 403, 404,
    /// `ERR_PUBSUB_NOT_CONFIGURED`) never does.
    rejection: bool,
    /// No connection or no answer in time: logged as a warning, not an error.
    outage_io: bool,
    /// The sidecar's status, when it answered.
    status: Option<u16>,
    /// The start of its answer (capped by the client).
    body: String,
}

impl Failure {
    /// Settles `err` by its [`FailureClass`], or by `class` when the caller knows better (the entries of a bulk
    /// request that failed while others were taken are about those events).
    fn from_error(err: &PublishError, class: Option<FailureClass>) -> Self {
        let class = class.unwrap_or_else(|| err.class());
        Self {
            message: ErrorChain(err).to_string(),
            rejection: class == FailureClass::EventRejected,
            outage_io: err.status().is_none() && err.is_retryable(),
            status: err.status().map(|status| status.as_u16()),
            body: err.body().unwrap_or_default().to_owned(),
        }
    }
}

/// The event attributes logged with an outbox row's delivery: type, task id (`subject`) and correlation id, read
/// from the stored payload.
struct EventFields {
    ty: String,
    task_id: String,
    correlation_id: String,
}

impl EventFields {
    fn of(row: &OutboxMessage) -> Self {
        #[derive(serde::Deserialize)]
        struct Attributes {
            #[serde(rename = "type", default)]
            ty: String,
            #[serde(default)]
            subject: String,
            #[serde(default)]
            correlationid: String,
        }
        let attributes = serde_json::from_str::<Attributes>(&row.payload).unwrap_or(Attributes {
            ty: String::new(),
            subject: String::new(),
            correlationid: String::new(),
        });
        Self {
            ty: attributes.ty,
            task_id: attributes.subject,
            correlation_id: attributes.correlationid,
        }
    }
}

impl slog::KV for EventFields {
    fn serialize(
        &self,
        _record: &slog::Record<'_>,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        serializer.emit_str("event_type", &self.ty)?;
        serializer.emit_str("task_id", &self.task_id)?;
        serializer.emit_str("correlation_id", &self.correlation_id)
    }
}

/// The requests of the next wave (see [`OutboxRelay::publish_claimed`]): indices into `waiting` (rows in `seq`
/// order, each with whether it failed this round) as planned by [`delivery::plan`].
fn plan_wave(pubsub: &str, waiting: &[(OutboxMessage, bool)]) -> Vec<Vec<usize>> {
    let entries: Vec<PlanEntry<'_, Option<&str>>> = waiting
        .iter()
        .map(|(row, failed)| PlanEntry {
            // A failed row holds back every later row of its partition key, as the store does.
            destination: (!failed).then_some(Destination {
                pubsub,
                topic: &row.topic,
            }),
            partition_key: Some(&row.partition_key),
            size: row.payload.len(),
            ready: !failed,
            bulk: true,
            group: row.traceparent.as_deref(),
        })
        .collect();
    delivery::plan(
        entries,
        BatchLimits::new(MAX_BULK_ENTRIES).with_max_bytes(MAX_BULK_BYTES),
    )
}

/// The most rows in one bulk request.
const MAX_BULK_ENTRIES: usize = 100;

/// The most payload bytes in one bulk request (daprd refuses request bodies over 4 MiB by default).
const MAX_BULK_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        seq: i64,
        key: &str,
        topic: &str,
        traceparent: Option<&str>,
        payload_len: usize,
    ) -> (OutboxMessage, bool) {
        let now = OffsetDateTime::now_utc();
        let row = OutboxMessage {
            id: Uuid::new_v4(),
            seq,
            topic: topic.to_owned(),
            partition_key: key.to_owned(),
            payload: "x".repeat(payload_len),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            failed_at: None,
            created_at: now,
            traceparent: traceparent.map(str::to_owned),
            lease_id: None,
        };
        (row, false)
    }

    fn failed((row, _): (OutboxMessage, bool)) -> (OutboxMessage, bool) {
        (row, true)
    }

    fn wave(rows: &[(OutboxMessage, bool)]) -> Vec<Vec<i64>> {
        plan_wave("pubsub", rows)
            .iter()
            .map(|request| request.iter().map(|&index| rows[index].0.seq).collect())
            .collect()
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
    fn a_wave_carries_the_oldest_row_of_each_topic_and_key_batched_across_keys() {
        let rows = [
            row(1, "u", "a", None, 10),
            row(2, "v", "a", None, 10),
            row(3, "u", "a", None, 10),
            row(4, "u", "b", None, 10),
            row(5, "w", "a", None, 10),
        ];
        assert_eq!(
            wave(&rows),
            [vec![1, 2, 5], vec![4]],
            "3 waits for 1, its key's older row"
        );
    }

    #[test]
    fn a_different_traceparent_is_another_request_and_a_failed_row_holds_back_its_key() {
        let rows = [
            row(1, "u", "a", Some("t1"), 10),
            row(2, "v", "a", Some("t2"), 10),
            row(3, "w", "a", Some("t1"), 10),
        ];
        assert_eq!(wave(&rows), [vec![1, 3], vec![2]]);

        let rows = [
            failed(row(1, "u", "a", None, 10)),
            row(2, "u", "b", None, 10),
            row(3, "v", "a", None, 10),
            row(4, "u", "a", None, 10),
        ];
        assert_eq!(
            wave(&rows),
            [vec![3]],
            "u waits for its failed row on every topic"
        );
    }

    #[test]
    fn requests_are_capped_by_entries_and_bytes() {
        let many: Vec<_> = (0..(MAX_BULK_ENTRIES as i64 + 5))
            .map(|seq| row(seq, &format!("user-{seq}"), "a", None, 10))
            .collect();
        let sizes: Vec<usize> = wave(&many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BULK_ENTRIES, 5]);

        let big = MAX_BULK_BYTES / 2 + 1;
        let large = [
            row(1, "u", "a", None, big),
            row(2, "v", "a", None, big),
            row(3, "w", "a", None, 10),
        ];
        assert_eq!(wave(&large), [vec![1, 3], vec![2]]);
    }
}
