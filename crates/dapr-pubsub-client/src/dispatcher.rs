//! Background delivery: a bounded queue in front of N ordered lanes that publish with retries,
//! so that callers never wait for (or fail because of) the sidecar.
//!
//! - `submit` serializes the event once and never blocks; when the queue is full the event is
//!   dropped, counted and logged, and an error value is returned that the caller may ignore.
//! - Events are spread over `concurrency` lanes by a hash of their partition key; each lane
//!   has one request in flight at a time, so events with the same key are published in submit
//!   order.
//!   Events without a key are spread round-robin.
//! - Retryable failures (connect, timeout, transport, 408, 429, 5xx) are retried with exponential
//!   backoff and jitter, with the very same bytes (so the same CloudEvent id), up to
//!   `max_attempts` attempts.
//! - `shutdown` stops intake, drains the queue within a deadline and reports what it could not
//!   deliver.
//! - Opt-in batching (`max_batch` > 1): a lane sends the events of one (pub/sub, topic, partition
//!   key, metadata) that are waiting in its queue as one bulk publish request; a batch of one is
//!   still a single publish. See [`DispatcherConfig::with_max_batch`].

use std::collections::HashSet;
use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloudevents_model::CloudEvent;
use http::HeaderValue;
use serde::Serialize;
use slog::{Logger, debug, error, info, o, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{PubSubClient, options_for_event};
use crate::error::{ErrorChain, PublishError};
use crate::metrics::{Counters, MetricsSnapshot};
use crate::options::PublishOptions;

/// Settings of a [`Dispatcher`]. Build with [`DispatcherConfig::new`] and the `with_*` setters.
///
/// | setting | default |
/// |---|---|
/// | queue capacity (events waiting, all lanes together) | 10 000 |
/// | concurrency (ordered lanes, one request in flight each) | 8 |
/// | attempts per event (first try included) | 5 |
/// | first backoff / backoff cap | 100 ms / 5 s |
/// | events per request (`max_batch`; 1 = no batching) | 1 |
/// | linger (wait for more events to fill a batch) | 0 |
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    queue_capacity: usize,
    concurrency: usize,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_batch: usize,
    linger: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DispatcherConfig {
    /// The defaults listed above.
    pub fn new() -> Self {
        Self {
            queue_capacity: 10_000,
            concurrency: 8,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_batch: 1,
            linger: Duration::ZERO,
        }
    }

    /// Sets how many events may wait in the queue (at least 1).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sets the number of ordered lanes, i.e. concurrent requests (at least 1).
    pub fn with_concurrency(mut self, lanes: usize) -> Self {
        self.concurrency = lanes.max(1);
        self
    }

    /// Sets the attempts per event, the first one included (at least 1; 1 disables retries).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff before the first retry; it doubles per retry up to `max`. Each wait is
    /// randomised between half and all of that value.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the most events one request may carry (at least 1; 1, the default, disables
    /// batching).
    ///
    /// With `events` > 1, when a lane takes an event off its queue it also takes the events
    /// queued behind it (among the next `4 × events` of that lane) that share its pub/sub
    /// component, topic, metadata (so its partition key) and deadline, in queue order, and sends
    /// them together as one bulk publish request
    /// (`POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`, [`MAX_BULK_BODY_BYTES`] at most).
    /// A batch stops early at an event of the same topic and key that cannot join it (other
    /// metadata, or a payload the bulk API cannot carry), so the order per (topic, key) is kept.
    /// Nothing waits for a batch to fill unless [`with_linger`](Self::with_linger) says so:
    /// batches form only when events queue up behind a request in flight, so light traffic is
    /// published exactly as without batching. A batch of one is sent as a single publish.
    ///
    /// In a bulk request:
    /// - the partition key and the other metadata are request metadata
    ///   (`?metadata.partitionKey=…`); each entry has its own content type
    ///   (`application/cloudevents+json` for [`Dispatcher::submit`]) and its event id as entry
    ///   id, and carries the very bytes a single publish would send;
    /// - events join a batch only when they have the same `traceparent`/`tracestate` (or none),
    ///   which the request then carries exactly as a single publish would: no event loses its
    ///   trace context. Events of different traces (one per incoming request, typically) are
    ///   therefore not batched together; an event of the same topic and key with another trace
    ///   ends the batch, like other metadata does;
    /// - events sent through [`Dispatcher::submit_bytes`] join a batch only when their content
    ///   type is `application/json` or `application/cloudevents+json` (and the body is JSON), or
    ///   `text/*` / `application/xml` (and the body is UTF-8); others are always published alone.
    ///
    /// Dapr answers with the entries it could not publish: only those are retried (same bytes,
    /// same event ids, same backoff and attempt limit as single publishes), so a retried event
    /// can land after later events of its own batch, but never after events queued behind the
    /// batch. A failure of the whole request (no connection, timeout, 5xx without an entry
    /// list) retries the whole batch. Metrics count events, plus
    /// [`MetricsSnapshot::bulk_requests`] and [`MetricsSnapshot::bulk_entries`].
    ///
    /// Dapr's HTTP bulk endpoint re-encodes each JSON entry: in `data`, integers beyond
    /// ±2<sup>53</sup> lose precision. Keep such numbers as strings when batching.
    pub fn with_max_batch(mut self, events: usize) -> Self {
        self.max_batch = events.max(1);
        self
    }

    /// Sets how long a lane waits for more events to fill a batch it has started (default
    /// zero: send what is queued at once). Only used when `max_batch` > 1, the events already
    /// queued do not fill the batch and nothing else is queued on the lane (so the wait delays
    /// no other event, and a lane with work waiting never idles: events that cannot share a
    /// request, such as those of different traces, keep the lane's full throughput). The lane
    /// then sleeps `linger` once (events arriving meanwhile wake nothing) and takes what has
    /// arrived. Every event of such a batch is published up to `linger` later.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The most events per request (1: no batching).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// How long a lane waits for a batch to fill.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// The queue capacity.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// The number of lanes.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The attempts per event.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

/// Why [`Dispatcher::submit`] did not take an event. Already counted and logged by the
/// dispatcher: ignoring it is fine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue was full; the event was dropped.
    #[error("the publish queue is full ({capacity} events); the event was dropped")]
    QueueFull {
        /// The queue capacity.
        capacity: usize,
    },
    /// The dispatcher was shut down; the event was dropped.
    #[error("the dispatcher is shut down; the event was dropped")]
    Closed,
    /// The event could not be serialized.
    #[error("could not serialize the event to json")]
    Serialize {
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The content type is not a valid header value.
    #[error("invalid content type for a publish request")]
    InvalidContentType,
}

/// An event the dispatcher could not deliver before its shutdown deadline.
#[derive(Debug)]
#[non_exhaustive]
pub struct UndeliveredEvent {
    /// The pub/sub component name.
    pub pubsub: String,
    /// The topic.
    pub topic: String,
    /// The CloudEvent id (empty for raw payloads).
    pub event_id: String,
    /// The CloudEvent type (empty for raw payloads).
    pub event_type: String,
    /// The `Content-Type` it was to be sent with.
    pub content_type: String,
    /// The serialized payload, exactly as it would have been sent.
    pub body: Bytes,
    /// The options (metadata, trace context) it was to be sent with.
    pub options: PublishOptions,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure, if an attempt was made.
    pub last_error: Option<PublishError>,
}

/// What [`Dispatcher::shutdown`] achieved.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Events still queued or in flight when the deadline passed.
    pub undelivered: Vec<UndeliveredEvent>,
    /// Whether the deadline passed before the queue was drained.
    pub timed_out: bool,
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// The metrics after the shutdown.
    pub metrics: MetricsSnapshot,
}

impl ShutdownReport {
    /// Whether everything submitted was handled (published or given up on) before the deadline.
    pub fn is_complete(&self) -> bool {
        self.undelivered.is_empty()
    }
}

/// The largest body of a bulk publish request the dispatcher builds (daprd's default request
/// body limit is 4 MiB). A single event larger than this is published alone.
pub const MAX_BULK_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How an event can travel in a bulk publish request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BulkForm {
    /// Its body is JSON: embedded as is.
    Json,
    /// Its body is text: embedded as a JSON string.
    Text,
    /// Only as a single publish.
    Alone,
}

impl BulkForm {
    /// What Dapr's bulk endpoint accepts for `content_type` (its JSON, CloudEvents and string
    /// content types), given the body.
    fn of(content_type: &str, body: &[u8]) -> Self {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if essence == cloudevents_model::CONTENT_TYPE || essence == crate::JSON_CONTENT_TYPE {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                return Self::Json;
            }
        } else if (essence.starts_with("text/") || essence == "application/xml")
            && std::str::from_utf8(body).is_ok()
        {
            return Self::Text;
        }
        Self::Alone
    }
}

/// One queued event.
struct Message {
    pubsub: String,
    topic: String,
    content_type: HeaderValue,
    body: Bytes,
    options: PublishOptions,
    event_id: String,
    event_type: String,
    bulk: BulkForm,
}

impl Message {
    /// Whether `other` goes to the same (pub/sub, topic, partition key): their relative order
    /// must be kept.
    fn same_stream(&self, other: &Self) -> bool {
        self.pubsub == other.pubsub
            && self.topic == other.topic
            && self.options.partition_key() == other.options.partition_key()
    }

    /// Whether `other` can share a bulk request with `self`: same stream, metadata, deadline and
    /// trace context (a request carries one `traceparent`, and no event may lose its own).
    fn same_request(&self, other: &Self) -> bool {
        self.same_stream(other)
            && self.options.metadata().eq(other.options.metadata())
            && self.options.timeout() == other.options.timeout()
            && self.options.traceparent() == other.options.traceparent()
            && self.options.tracestate() == other.options.tracestate()
    }

    fn into_undelivered(self, attempts: u32, last_error: Option<PublishError>) -> UndeliveredEvent {
        UndeliveredEvent {
            pubsub: self.pubsub,
            topic: self.topic,
            event_id: self.event_id,
            event_type: self.event_type,
            content_type: self.content_type.to_str().unwrap_or_default().to_owned(),
            body: self.body,
            options: self.options,
            attempts,
            last_error,
        }
    }
}

struct Shared {
    client: PubSubClient,
    config: DispatcherConfig,
    counters: Counters,
    log: Logger,
    undelivered: Mutex<Vec<UndeliveredEvent>>,
    jitter_seed: AtomicU64,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` once shut down.
    lanes: RwLock<Option<Vec<mpsc::UnboundedSender<Message>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// One stop signal per lane (per-lane, so lanes never contend on a shared waiter list).
    cancel: Mutex<Vec<oneshot::Sender<()>>>,
    round_robin: AtomicUsize,
}

/// A background publisher. Cheap to clone; all clones feed the same queue.
///
/// ```no_run
/// # async fn demo(event: cloudevents_model::CloudEvent) {
/// use std::time::Duration;
/// use dapr_pubsub_client::{ClientConfig, Dispatcher, DispatcherConfig, PubSubClient, PublishOptions};
///
/// let client = PubSubClient::new(ClientConfig::localhost(3500), None);
/// let dispatcher = Dispatcher::spawn(client, DispatcherConfig::new().with_concurrency(4), None);
/// // Never blocks; a full queue drops the event (counted and logged).
/// let _ = dispatcher.submit("pubsub-kafka", "task-events", &event,
///     PublishOptions::new().with_partition_key("user-42"));
/// let report = dispatcher.shutdown(Duration::from_secs(5)).await;
/// assert!(report.is_complete());
/// # }
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.inner.shared.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts the lanes on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub fn spawn(
        client: PubSubClient,
        config: DispatcherConfig,
        log: impl Into<Option<Logger>>,
    ) -> Self {
        let log = log
            .into()
            .unwrap_or_else(|| Logger::root(slog::Discard, o!()))
            .new(o!("component" => "dapr-pubsub-client"));
        let shared = Arc::new(Shared {
            client,
            config: config.clone(),
            counters: Counters::default(),
            log,
            undelivered: Mutex::new(Vec::new()),
            jitter_seed: AtomicU64::new(0),
        });
        let mut senders = Vec::with_capacity(config.concurrency);
        let mut workers = Vec::with_capacity(config.concurrency);
        let mut cancel = Vec::with_capacity(config.concurrency);
        for _ in 0..config.concurrency {
            let (tx, rx) = mpsc::unbounded_channel();
            let (stop, stop_rx) = oneshot::channel();
            senders.push(tx);
            cancel.push(stop);
            workers.push(tokio::spawn(run_lane(
                Arc::clone(&shared),
                rx,
                Some(stop_rx),
            )));
        }
        Self {
            inner: Arc::new(Inner {
                shared,
                lanes: RwLock::new(Some(senders)),
                workers: Mutex::new(workers),
                cancel: Mutex::new(cancel),
                round_robin: AtomicUsize::new(0),
            }),
        }
    }

    /// Queues a CloudEvent for publishing in structured mode. Never blocks.
    ///
    /// The event is serialized now; every attempt sends these bytes. The partition key comes
    /// from `options`, else from the event's `partitionkey` extension.
    pub fn submit<D: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: PublishOptions,
    ) -> Result<(), SubmitError> {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(source) => {
                self.inner
                    .shared
                    .counters
                    .failed
                    .fetch_add(1, Ordering::Relaxed);
                error!(self.inner.shared.log, "could not serialize {} for {}", event.ty(), topic;
                    "event_type" => event.ty(), "event_id" => event.id(), "topic" => topic,
                    "error" => %ErrorChain(&source));
                return Err(SubmitError::Serialize { source });
            }
        };
        let options = match options_for_event(event, &options) {
            std::borrow::Cow::Borrowed(_) => options,
            std::borrow::Cow::Owned(with_key) => with_key,
        };
        self.enqueue(Message {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            content_type: HeaderValue::from_static(cloudevents_model::CONTENT_TYPE),
            body: Bytes::from(body),
            options,
            event_id: event.id().to_owned(),
            event_type: event.ty().to_owned(),
            bulk: BulkForm::Json,
        })
    }

    /// Queues pre-serialized bytes with any content type. Never blocks.
    pub fn submit_bytes(
        &self,
        pubsub: &str,
        topic: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<(), SubmitError> {
        let header =
            HeaderValue::from_str(content_type).map_err(|_| SubmitError::InvalidContentType)?;
        let body = body.into();
        let bulk = if self.inner.shared.config.max_batch > 1 {
            BulkForm::of(content_type, &body)
        } else {
            BulkForm::Alone
        };
        self.enqueue(Message {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            content_type: header,
            body,
            options,
            event_id: String::new(),
            event_type: String::new(),
            bulk,
        })
    }

    /// A copy of the current metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.counters.snapshot()
    }

    /// The configuration in use.
    pub fn config(&self) -> &DispatcherConfig {
        &self.inner.shared.config
    }

    /// Stops taking events, delivers what is queued (retries included) until `deadline`, then
    /// abandons what is left and reports it. Later `submit` calls return
    /// [`SubmitError::Closed`]; a second `shutdown` returns an empty report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let shared = &self.inner.shared;
        // Dropping the senders lets each lane finish its queue and stop.
        let senders = self
            .inner
            .lanes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let was_open = senders.is_some();
        drop(senders);
        let mut workers = std::mem::take(
            &mut *self
                .inner
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if was_open {
            info!(shared.log, "dispatcher shutting down";
                "queue_depth" => shared.counters.queue_depth.load(Ordering::Relaxed),
                "deadline_ms" => deadline.as_millis() as u64);
        }

        // A finished handle is removed at once: polling a completed JoinHandle again would panic, and the
        // second loop below awaits whatever is left after the deadline.
        let drained = tokio::time::timeout(deadline, async {
            while let Some(worker) = workers.last_mut() {
                let _ = worker.await;
                workers.pop();
            }
        })
        .await
        .is_ok();
        if !drained {
            // Tell the lanes to stop where they are and hand back what they hold.
            let stops = std::mem::take(
                &mut *self
                    .inner
                    .cancel
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            for stop in stops {
                let _ = stop.send(());
            }
            for worker in workers {
                let _ = worker.await;
            }
        }

        let undelivered = std::mem::take(
            &mut *shared
                .undelivered
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let report = ShutdownReport {
            timed_out: !drained,
            elapsed: started.elapsed(),
            metrics: self.metrics(),
            undelivered,
        };
        if was_open {
            if report.undelivered.is_empty() {
                info!(shared.log, "dispatcher stopped; queue drained";
                    "published" => report.metrics.published, "failed" => report.metrics.failed,
                    "dropped" => report.metrics.dropped,
                    "elapsed_ms" => report.elapsed.as_millis() as u64);
            } else {
                error!(shared.log, "dispatcher stopped; {} events not delivered", report.undelivered.len();
                    "undelivered" => report.undelivered.len(),
                    "published" => report.metrics.published, "failed" => report.metrics.failed,
                    "dropped" => report.metrics.dropped,
                    "elapsed_ms" => report.elapsed.as_millis() as u64);
            }
        }
        report
    }

    fn enqueue(&self, message: Message) -> Result<(), SubmitError> {
        let shared = &self.inner.shared;
        let counters = &shared.counters;
        let lanes = self
            .inner
            .lanes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(lanes) = lanes.as_ref() else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            log_drop(&shared.log, &message, "the dispatcher is shut down");
            return Err(SubmitError::Closed);
        };
        let capacity = shared.config.queue_capacity;
        if counters.queue_depth.fetch_add(1, Ordering::AcqRel) >= capacity {
            counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            log_drop(&shared.log, &message, "the publish queue is full");
            return Err(SubmitError::QueueFull { capacity });
        }
        let lane = match message.options.partition_key() {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % lanes.len() as u64) as usize
            }
            None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % lanes.len(),
        };
        match lanes[lane].send(message) {
            Ok(()) => {
                counters.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::SendError(message)) => {
                // The lane's worker is gone (its task panicked or the runtime is shutting down).
                counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                log_drop(&shared.log, &message, "the publish lane is not running");
                Err(SubmitError::Closed)
            }
        }
    }
}

fn log_drop(log: &Logger, message: &Message, why: &str) {
    warn!(log, "dropped {} for {}: {}", message.event_type, message.topic, why;
        "event_type" => &message.event_type, "event_id" => &message.event_id,
        "pubsub" => &message.pubsub, "topic" => &message.topic,
        "partition_key" => message.options.partition_key().unwrap_or(""));
}

/// Resolves when shutdown asks the lanes to stop (or the dispatcher is gone).
async fn cancelled(cancel: &mut Option<oneshot::Receiver<()>>) {
    if let Some(stop) = cancel {
        if stop.await.is_ok() {
            return;
        }
        // The dispatcher was dropped without a shutdown: keep draining, never cancel.
        *cancel = None;
    }
    std::future::pending::<()>().await;
}

/// One event of a batch being delivered.
struct InFlight {
    message: Message,
    /// Its entry id in the bulk request: the event id, unless empty or already used.
    entry_id: String,
    attempts: u32,
    last_error: Option<PublishError>,
    done: bool,
}

async fn run_lane(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Message>,
    mut cancel: Option<oneshot::Receiver<()>>,
) {
    let counters = &shared.counters;
    let max_batch = shared.config.max_batch;
    let linger = shared.config.linger;
    // Events taken off the channel to look for batch mates, still counted as queued.
    let mut pending: VecDeque<Message> = VecDeque::new();
    let window = if max_batch > 1 {
        max_batch.saturating_mul(4)
    } else {
        0
    };
    'lane: loop {
        let head = match pending.pop_front() {
            Some(message) => {
                let stop = tokio::select! {
                    biased;
                    _ = cancelled(&mut cancel) => true,
                    _ = std::future::ready(()) => false,
                };
                if stop {
                    pending.push_front(message);
                    break;
                }
                message
            }
            None => tokio::select! {
                biased;
                _ = cancelled(&mut cancel) => break,
                next = queue.recv() => match next {
                    Some(message) => message,
                    None => return,
                },
            },
        };
        let mut batch = vec![head];
        if max_batch > 1 && batch[0].bulk != BulkForm::Alone {
            fill(&mut pending, &mut queue, window);
            let blocked = extend_batch(&mut batch, &mut pending, max_batch);
            if !blocked && batch.len() < max_batch && !linger.is_zero() && pending.is_empty() {
                // Nothing else waits on this lane, so waiting delays no other event. Wait once,
                // without listening to the queue: arriving events then cost no wake-up each;
                // whatever arrived is looked at after the wait.
                let stop = tokio::select! {
                    biased;
                    _ = cancelled(&mut cancel) => true,
                    _ = tokio::time::sleep(linger) => false,
                };
                if stop {
                    for message in batch.into_iter().rev() {
                        pending.push_front(message);
                    }
                    break 'lane;
                }
                fill(&mut pending, &mut queue, window);
                extend_batch(&mut batch, &mut pending, max_batch);
            }
        }
        let size = batch.len();
        counters.queue_depth.fetch_sub(size, Ordering::AcqRel);
        counters.in_flight.fetch_add(size, Ordering::Relaxed);
        if size == 1 {
            let Some(message) = batch.pop() else { continue };
            let mut attempts = 0;
            let mut last_error = None;
            let finished = {
                let delivery = deliver(&shared, &message, &mut attempts, &mut last_error);
                tokio::select! {
                    biased;
                    _ = delivery => true,
                    _ = cancelled(&mut cancel) => false,
                }
            };
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if !finished {
                shared
                    .undelivered
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(message.into_undelivered(attempts, last_error));
                break;
            }
        } else {
            let mut entries = in_flight(batch);
            let finished = {
                let delivery = deliver_bulk(&shared, &mut entries);
                tokio::select! {
                    biased;
                    _ = delivery => true,
                    _ = cancelled(&mut cancel) => false,
                }
            };
            counters.in_flight.fetch_sub(size, Ordering::Relaxed);
            if !finished {
                shared
                    .undelivered
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend(
                        entries
                            .into_iter()
                            .filter(|entry| !entry.done)
                            .map(|entry| {
                                entry
                                    .message
                                    .into_undelivered(entry.attempts, entry.last_error)
                            }),
                    );
                break;
            }
        }
    }
    // Cancelled: hand back everything still queued on this lane.
    queue.close();
    let mut left = Vec::new();
    while let Some(message) = pending.pop_front() {
        counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
        left.push(message.into_undelivered(0, None));
    }
    while let Ok(message) = queue.try_recv() {
        counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
        left.push(message.into_undelivered(0, None));
    }
    shared
        .undelivered
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(left);
}

/// Moves what the channel holds into `pending`, up to `window` events.
fn fill(
    pending: &mut VecDeque<Message>,
    queue: &mut mpsc::UnboundedReceiver<Message>,
    window: usize,
) {
    while pending.len() < window {
        match queue.try_recv() {
            Ok(message) => pending.push_back(message),
            Err(_) => break,
        }
    }
}

/// Moves the events of `pending` that can share the request of `batch[0]` into `batch`, in
/// queue order, up to `max_batch` events and [`MAX_BULK_BODY_BYTES`]. Stops at the first event
/// of the same stream that cannot join (so that it is not overtaken); returns whether it did.
fn extend_batch(
    batch: &mut Vec<Message>,
    pending: &mut VecDeque<Message>,
    max_batch: usize,
) -> bool {
    let mut bytes: usize = batch.iter().map(|message| message.body.len()).sum();
    let mut index = 0;
    while index < pending.len() && batch.len() < max_batch {
        let candidate = &pending[index];
        if !batch[0].same_stream(candidate) {
            index += 1;
            continue;
        }
        if candidate.bulk == BulkForm::Alone
            || !batch[0].same_request(candidate)
            || bytes + candidate.body.len() + 128 > MAX_BULK_BODY_BYTES
        {
            return true;
        }
        bytes += candidate.body.len() + 128;
        if let Some(message) = pending.remove(index) {
            batch.push(message);
        }
    }
    false
}

/// The batch as entries with unique, non-empty entry ids.
fn in_flight(batch: Vec<Message>) -> Vec<InFlight> {
    let mut used = HashSet::with_capacity(batch.len());
    let mut entries = Vec::with_capacity(batch.len());
    for (index, message) in batch.into_iter().enumerate() {
        let mut entry_id = message.event_id.clone();
        if entry_id.is_empty() || used.contains(&entry_id) {
            let mut n = index;
            loop {
                entry_id = format!("entry-{n}");
                if !used.contains(&entry_id) {
                    break;
                }
                n += 1;
            }
        }
        used.insert(entry_id.clone());
        entries.push(InFlight {
            message,
            entry_id,
            attempts: 0,
            last_error: None,
            done: false,
        });
    }
    entries
}

/// The JSON array of a bulk publish request for `entries[which]`:
/// `[{"entryId":…,"event":…,"contentType":…},…]`, each event as the exact bytes a single publish
/// would send (JSON), or as a JSON string (text).
fn bulk_body(entries: &[InFlight], which: &[usize]) -> Bytes {
    let size: usize = which
        .iter()
        .map(|&i| entries[i].message.body.len() + entries[i].entry_id.len() + 96)
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'[');
    for (n, &i) in which.iter().enumerate() {
        let entry = &entries[i];
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"entryId\":");
        push_json_string(&mut out, &entry.entry_id);
        out.extend_from_slice(b",\"event\":");
        match entry.message.bulk {
            BulkForm::Text => push_json_string(
                &mut out,
                std::str::from_utf8(&entry.message.body).unwrap_or_default(),
            ),
            BulkForm::Json | BulkForm::Alone => out.extend_from_slice(&entry.message.body),
        }
        out.extend_from_slice(b",\"contentType\":");
        push_json_string(
            &mut out,
            entry.message.content_type.to_str().unwrap_or_default(),
        );
        out.push(b'}');
    }
    out.push(b']');
    Bytes::from(out)
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buffer = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The options of a bulk request: the first event's, which every event of the batch shares
/// (metadata, deadline and trace context; see `Message::same_request`).
fn batch_options(entries: &[InFlight]) -> PublishOptions {
    entries[0].message.options.clone()
}

/// Publishes a batch (two events or more) as bulk requests, retrying the failed entries (or the
/// whole batch when the request failed as a whole) with backoff. Records every event's outcome
/// and marks the published ones `done`.
async fn deliver_bulk(shared: &Shared, entries: &mut [InFlight]) {
    let counters = &shared.counters;
    let config = &shared.config;
    let pubsub = entries[0].message.pubsub.clone();
    let topic = entries[0].message.topic.clone();
    let options = batch_options(entries);
    let partition_key = options.partition_key().unwrap_or("").to_owned();
    let batch_size = entries.len();
    let mut remaining: Vec<usize> = (0..entries.len()).collect();
    loop {
        for &i in &remaining {
            entries[i].attempts += 1;
        }
        let body = bulk_body(entries, &remaining);
        counters.bulk_requests.fetch_add(1, Ordering::Relaxed);
        counters
            .bulk_entries
            .fetch_add(remaining.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let res = shared
            .client
            .send_bulk_quietly(&pubsub, &topic, body, &options, remaining.len())
            .await;
        let elapsed = started.elapsed();
        counters.latency.observe(elapsed);
        let mut failures: Vec<(usize, PublishError)> = Vec::new();
        match res {
            Ok(outcome) => {
                // Dapr lists failed entries with a 500; any other status still means "failed".
                let status = if outcome.status().is_success() {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    outcome.status()
                };
                for &i in &remaining {
                    let entry = &mut entries[i];
                    match outcome.error_for(&entry.entry_id) {
                        None => {
                            entry.done = true;
                            counters.published.fetch_add(1, Ordering::Relaxed);
                            debug!(shared.log, "published {} to {}", entry.message.event_type, topic;
                                "event_type" => &entry.message.event_type,
                                "event_id" => &entry.message.event_id,
                                "pubsub" => &pubsub, "topic" => &topic,
                                "partition_key" => &partition_key, "attempt" => entry.attempts,
                                "bulk_entries" => batch_size,
                                "duration_ms" => elapsed.as_millis() as u64);
                        }
                        Some(reason) => failures.push((
                            i,
                            PublishError::entry_failed(status, outcome.error_code(), reason),
                        )),
                    }
                }
            }
            Err(err) => {
                for &i in remaining.iter().skip(1) {
                    failures.push((i, err.duplicate()));
                }
                failures.insert(0, (remaining[0], err));
            }
        }
        if failures.is_empty() {
            return;
        }
        let attempt = entries[failures[0].0].attempts;
        let pause = backoff(shared, attempt);
        remaining.clear();
        for (i, err) in failures {
            let entry = &mut entries[i];
            if err.is_retryable() && entry.attempts < config.max_attempts {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                warn!(shared.log, "publish of {} to {} failed; retrying in {:?}", entry.message.event_type, topic, pause;
                    "event_type" => &entry.message.event_type,
                    "event_id" => &entry.message.event_id,
                    "pubsub" => &pubsub, "topic" => &topic,
                    "partition_key" => &partition_key, "attempt" => entry.attempts,
                    "bulk_entries" => batch_size,
                    "status" => err.status().map(|s| s.as_u16()),
                    "body" => err.body().unwrap_or(""),
                    "error" => %ErrorChain(&err));
                entry.last_error = Some(err);
                remaining.push(i);
            } else {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                log_gave_up(
                    shared,
                    &entry.message,
                    entry.attempts,
                    &err,
                    Some(batch_size),
                );
                entry.last_error = Some(err);
                entry.done = true;
            }
        }
        if remaining.is_empty() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Publishes one event, retrying retryable failures with backoff. Records the outcome.
async fn deliver(
    shared: &Shared,
    message: &Message,
    attempts: &mut u32,
    last_error: &mut Option<PublishError>,
) {
    let counters = &shared.counters;
    let config = &shared.config;
    let partition_key = message.options.partition_key().unwrap_or("");
    loop {
        *attempts += 1;
        let started = Instant::now();
        let res = shared
            .client
            .send_publish_quietly(
                &message.pubsub,
                &message.topic,
                message.content_type.clone(),
                message.body.clone(),
                &message.options,
            )
            .await;
        let elapsed = started.elapsed();
        counters.latency.observe(elapsed);
        let err = match res {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
                debug!(shared.log, "published {} to {}", message.event_type, message.topic;
                    "event_type" => &message.event_type, "event_id" => &message.event_id,
                    "pubsub" => &message.pubsub, "topic" => &message.topic,
                    "partition_key" => partition_key, "attempt" => *attempts,
                    "duration_ms" => elapsed.as_millis() as u64);
                return;
            }
            Err(err) => err,
        };
        if err.is_retryable() && *attempts < config.max_attempts {
            counters.retried.fetch_add(1, Ordering::Relaxed);
            let pause = backoff(shared, *attempts);
            warn!(shared.log, "publish of {} to {} failed; retrying in {:?}", message.event_type, message.topic, pause;
                "event_type" => &message.event_type, "event_id" => &message.event_id,
                "pubsub" => &message.pubsub, "topic" => &message.topic,
                "partition_key" => partition_key, "attempt" => *attempts,
                "status" => err.status().map(|s| s.as_u16()),
                "body" => err.body().unwrap_or(""),
                "error" => %ErrorChain(&err));
            *last_error = Some(err);
            tokio::time::sleep(pause).await;
            continue;
        }
        counters.failed.fetch_add(1, Ordering::Relaxed);
        log_gave_up(shared, message, *attempts, &err, None);
        *last_error = Some(err);
        return;
    }
}

/// Logs that an event was given up on: WARN for an absent or slow sidecar, ERROR otherwise.
fn log_gave_up(
    shared: &Shared,
    message: &Message,
    attempts: u32,
    err: &PublishError,
    bulk_entries: Option<usize>,
) {
    let kv = slog::o!(
        "event_type" => message.event_type.clone(), "event_id" => message.event_id.clone(),
        "pubsub" => message.pubsub.clone(), "topic" => message.topic.clone(),
        "partition_key" => message.options.partition_key().unwrap_or("").to_owned(),
        "attempts" => attempts,
        "bulk_entries" => bulk_entries,
        "status" => err.status().map(|s| s.as_u16()),
        "body" => err.body().unwrap_or("").to_owned(),
        "error" => ErrorChain(err).to_string());
    let log = shared.log.new(kv);
    // An answer from the sidecar needs someone to act; no answer (absent or slow) is degraded
    // but handled.
    match err.status() {
        None => warn!(
            log,
            "gave up publishing {} to {}", message.event_type, message.topic
        ),
        _ => error!(
            log,
            "gave up publishing {} to {}", message.event_type, message.topic
        ),
    }
}

/// Exponential backoff with "equal jitter": half the step, plus a random share of the other half.
fn backoff(shared: &Shared, attempt: u32) -> Duration {
    let config = &shared.config;
    let step = config
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(config.max_backoff);
    let half = step / 2;
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(shared.jitter_seed.fetch_add(1, Ordering::Relaxed));
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    half + half.mul_f64(fraction)
}
