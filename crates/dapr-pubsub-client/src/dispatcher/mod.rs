//! Background delivery: a bounded queue in front of N ordered lanes that publish with retries,
//! so that callers never wait for (or fail because of) the sidecar.
//!
//! - `submit` serializes the event once and never blocks; when the queue is full the event is
//!   dropped, counted and logged, and an error value is returned that the caller may ignore.
//! - Events are spread over `concurrency` lanes by a hash of their partition key; each lane
//!   has one request in flight at a time. Within a lane, the events of one ordering key
//!   (pub/sub, topic, partition key) go out one at a time, in submit order: the next one only
//!   once the one before it was accepted or given up on. Events without a key are spread
//!   round-robin.
//! - A failed event is retried with the retry policy ([`DispatcherConfig::retry_policy`]: the
//!   same bytes, so the same CloudEvent id; backoff with jitter; up to `max_attempts` attempts for
//!   failures of class [`Unavailable`](crate::delivery::FailureClass::Unavailable)). While it
//!   waits, only the later events of its key wait with it; the other keys keep flowing.
//! - [`Dispatcher::reserve`] takes a key's place in line before its events exist (inside a
//!   database transaction, say), so that events reach the sidecar in the order the places were
//!   taken, whatever order they are filled in.
//! - `shutdown` stops intake, drains the queue within a deadline and reports what it could not
//!   deliver.
//! - Opt-in batching (`max_batch` > 1): a lane sends the oldest waiting event of several keys as
//!   one bulk publish request; see [`DispatcherConfig::with_max_batch`].
//!
//! The files: `config` (settings), `report` (what comes back), `message` (what is queued and
//! which events may share a request), `lane` (the line of one lane and its loop), `send` (one
//! request, its outcome and its logs).

mod config;
mod lane;
mod message;
mod report;
mod send;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloudevents_model::CloudEvent;
use http::HeaderValue;
use serde::Serialize;
use slog::{Logger, error, info, o, warn};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use self::config::DispatcherConfig;
pub use self::message::LogFields;
pub use self::report::{ShutdownReport, SubmitError, UndeliveredEvent};

use self::message::{BulkForm, Command, Message};
use crate::client::PubSubClient;
use crate::delivery::RetryPolicy;
use crate::error::ErrorChain;
use crate::metrics::{Counters, MetricsSnapshot};
use crate::options::PublishOptions;

/// The largest body of a bulk publish request the dispatcher builds (daprd's default request
/// body limit is 4 MiB). A single event larger than this is published alone.
pub const MAX_BULK_BODY_BYTES: usize = 3 * 1024 * 1024;

pub(crate) struct Shared {
    client: PubSubClient,
    config: DispatcherConfig,
    policy: RetryPolicy,
    counters: Counters,
    log: Logger,
    undelivered: Mutex<Vec<UndeliveredEvent>>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` once shut down.
    lanes: RwLock<Option<Vec<mpsc::UnboundedSender<Command>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// One stop signal per lane (per-lane, so lanes never contend on a shared waiter list).
    cancel: Mutex<Vec<oneshot::Sender<()>>>,
    round_robin: AtomicUsize,
    next_reservation: AtomicU64,
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
            policy: config.retry_policy(),
        });
        let mut senders = Vec::with_capacity(config.concurrency);
        let mut workers = Vec::with_capacity(config.concurrency);
        let mut cancel = Vec::with_capacity(config.concurrency);
        for _ in 0..config.concurrency {
            let (tx, rx) = mpsc::unbounded_channel();
            let (stop, stop_rx) = oneshot::channel();
            senders.push(tx);
            cancel.push(stop);
            workers.push(tokio::spawn(lane::run_lane(
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
                next_reservation: AtomicU64::new(0),
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
        self.submit_with_log_fields(pubsub, topic, event, options, LogFields::new())
    }

    /// [`submit`](Self::submit), with key-values logged on every line about this event's
    /// delivery (for example `("task_id", …)` and `("correlation_id", …)`).
    pub fn submit_with_log_fields<D: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: PublishOptions,
        fields: LogFields,
    ) -> Result<(), SubmitError> {
        let message = self.message(pubsub, topic, event, options, fields)?;
        self.enqueue(message)
    }

    fn message<D: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: PublishOptions,
        fields: LogFields,
    ) -> Result<Message, SubmitError> {
        Message::cloud_event(pubsub, topic, event, options, fields).map_err(|source| {
            let shared = &self.inner.shared;
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            error!(shared.log, "could not serialize {} for {}", event.ty(), topic;
                "event_type" => event.ty(), "event_id" => event.id(), "topic" => topic,
                "error" => %ErrorChain(&source));
            SubmitError::Serialize { source }
        })
    }

    /// Takes the next place in line of `partition_key` before its events exist. Never blocks
    /// and is plain sync code (call it inside a database transaction, under the row lock that
    /// orders the changes).
    ///
    /// The key's events submitted later (directly or through a later reservation) wait behind
    /// this place until it is filled with [`Reservation::add`] and [`Reservation::submit`], or
    /// dropped (which gives the place up). Other keys never wait for it. Fails like
    /// [`submit`](Self::submit) when the queue is full (a place counts as one queued event until
    /// it is filled) or the dispatcher is shut down; that is logged but not counted as dropped
    /// (no event exists yet: the caller may still submit its events).
    ///
    /// ```no_run
    /// # async fn demo(dispatcher: dapr_pubsub_client::Dispatcher, a: cloudevents_model::CloudEvent,
    /// #     b: cloudevents_model::CloudEvent) -> Result<(), dapr_pubsub_client::SubmitError> {
    /// use dapr_pubsub_client::PublishOptions;
    ///
    /// let mut first = dispatcher.reserve("user-1")?;  // change A commits first
    /// let mut second = dispatcher.reserve("user-1")?; // then change B
    /// second.add("pubsub-kafka", "task-events", &b, PublishOptions::new(), Vec::new())?;
    /// second.submit(); // waits behind A's place
    /// first.add("pubsub-kafka", "task-events", &a, PublishOptions::new(), Vec::new())?;
    /// first.submit(); // the sidecar sees A, then B
    /// # Ok(()) }
    /// ```
    pub fn reserve(&self, partition_key: &str) -> Result<Reservation, SubmitError> {
        let shared = &self.inner.shared;
        let counters = &shared.counters;
        let lanes = self
            .inner
            .lanes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Nothing is lost yet (the events do not exist), so nothing is counted as dropped.
        let refuse = |why: &str, err: SubmitError| {
            warn!(shared.log, "could not reserve a place for {}: {}", partition_key, why;
                "partition_key" => partition_key, "error" => why);
            Err(err)
        };
        let Some(lanes) = lanes.as_ref() else {
            return refuse("the dispatcher is shut down", SubmitError::Closed);
        };
        let capacity = shared.config.queue_capacity;
        if counters.queue_depth.fetch_add(1, Ordering::AcqRel) >= capacity {
            counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            return refuse(
                "the publish queue is full",
                SubmitError::QueueFull { capacity },
            );
        }
        let sender = lanes[lane_of(partition_key, lanes.len())].clone();
        let id = self.inner.next_reservation.fetch_add(1, Ordering::Relaxed);
        let reserve = Command::Reserve {
            id,
            partition_key: partition_key.to_owned(),
        };
        if sender.send(reserve).is_err() {
            counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            return refuse("the publish lane is not running", SubmitError::Closed);
        }
        Ok(Reservation {
            dispatcher: self.clone(),
            sender: Some(sender),
            id,
            partition_key: partition_key.to_owned(),
            messages: Vec::new(),
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
            fields: LogFields::new(),
            trace_in_event: false,
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
            Some(key) => lane_of(key, lanes.len()),
            None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % lanes.len(),
        };
        match lanes[lane].send(Command::Event(Box::new(message))) {
            Ok(()) => {
                counters.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::SendError(command)) => {
                let Command::Event(message) = command else {
                    unreachable!("an event was sent")
                };
                let message = *message;
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
        "error" => why, "event_type" => &message.event_type, "event_id" => &message.event_id,
        "pubsub" => &message.pubsub, "topic" => &message.topic,
        "partition_key" => message.options.partition_key().unwrap_or(""),
        message::Fields(&message.fields));
}

/// The lane of a partition key.
fn lane_of(partition_key: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    partition_key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// A place in line for one partition key's next events, taken by [`Dispatcher::reserve`].
///
/// Fill it with [`add`](Self::add) and hand it over with [`submit`](Self::submit); dropping it
/// unsubmitted gives the place up (the key's later events then go on at once).
#[must_use = "a reservation holds back its key until it is submitted or dropped"]
pub struct Reservation {
    dispatcher: Dispatcher,
    /// `None` once submitted.
    sender: Option<mpsc::UnboundedSender<Command>>,
    id: u64,
    partition_key: String,
    messages: Vec<Message>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("partition_key", &self.partition_key)
            .field("events", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The partition key this place belongs to.
    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    /// Adds an event (serialized now), published in this place, after the events added before
    /// it. Its partition key is the reservation's unless `options` sets one: a different key
    /// loses the ordering this place gives. `fields` are logged with its delivery (see
    /// [`Dispatcher::submit_with_log_fields`]).
    pub fn add<D: Serialize>(
        &mut self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: PublishOptions,
        fields: LogFields,
    ) -> Result<(), SubmitError> {
        let options = if options.partition_key().is_some() {
            options
        } else {
            options.with_partition_key(self.partition_key.clone())
        };
        let message = self
            .dispatcher
            .message(pubsub, topic, event, options, fields)?;
        self.messages.push(message);
        Ok(())
    }

    /// Hands the added events over: they take this place in line. Never blocks. An empty
    /// reservation simply gives its place up.
    pub fn submit(mut self) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        let shared = &self.dispatcher.inner.shared;
        let messages = std::mem::take(&mut self.messages);
        let count = messages.len();
        shared
            .counters
            .queue_depth
            .fetch_add(count, Ordering::AcqRel);
        let fill = Command::Fill {
            id: self.id,
            messages,
        };
        match sender.send(fill) {
            Ok(()) => {
                shared
                    .counters
                    .submitted
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
            Err(mpsc::error::SendError(command)) => {
                // The lane stopped (a shutdown deadline passed): the events are dropped.
                shared
                    .counters
                    .queue_depth
                    .fetch_sub(count, Ordering::AcqRel);
                if let Command::Fill { messages, .. } = command {
                    for message in &messages {
                        shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        log_drop(&shared.log, message, "the publish lane is not running");
                    }
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Command::Cancel { id: self.id });
        }
    }
}
