//! The `EventPublisher` seam: where committed events go. Implementations: the Dapr dispatcher (fire-and-forget,
//! in order per user), a DEBUG log (`DAPR_ENABLED=false`), and an in-memory fake for tests (`test-util`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dapr_pubsub_client::{
    Dispatcher, LogFields, PublishOptions, Reservation, ShutdownReport, SubmitError,
};
use slog::{Logger, debug, o, warn};

use crate::error::ErrorChain;
use crate::events::{EXT_CORRELATIONID, OutgoingEvent};
use crate::metrics::ExtraMetric;

/// A boxed future returned by [`EventPublisher::shutdown`].
pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Takes events of a committed change. `publish` never blocks on the network and never fails the caller: delivery
/// problems are the publisher's to count and log.
pub trait EventPublisher: Send + Sync + std::fmt::Debug + 'static {
    /// Hands over the events of one change, in order.
    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger);

    /// Takes the next place in line of `partition_key` (the user id) for events that do not exist yet. Call it
    /// inside the change's transaction, under the row lock that orders the changes, and fill the slot after the
    /// commit with [`PublishSlot::fill`]: the key's events then reach the transport in the order the places were
    /// taken (the commit order), whatever order the slots are filled in. Dropping the slot unfilled (the
    /// transaction rolled back) gives the place up. Never blocks on the network; cheap.
    fn reserve(&self, partition_key: &str, log: &Logger) -> Box<dyn PublishSlot>;

    /// Counters for `/metrics`.
    fn metrics(&self) -> Vec<ExtraMetric> {
        Vec::new()
    }

    /// Delivers what is queued within `deadline`, then stops.
    fn shutdown(&self, _deadline: Duration) -> ShutdownFuture<'_> {
        Box::pin(async {})
    }
}

/// A place in a publisher's line for one partition key, from [`EventPublisher::reserve`].
pub trait PublishSlot: Send + std::fmt::Debug {
    /// Hands over the events of the change this place was taken for, in order. Never blocks on the network and
    /// never fails the caller.
    fn fill(self: Box<Self>, events: Vec<OutgoingEvent>, log: &Logger);
}

/// The key-values the dispatcher logs with every line about an event's delivery: the task id (the event's
/// `subject`) and the correlation id (its `correlationid` extension).
fn log_fields(outgoing: &OutgoingEvent) -> LogFields {
    let mut fields = LogFields::new();
    if let Some(subject) = outgoing.event.subject() {
        fields.push(("task_id", subject.to_owned()));
    }
    if let Some(correlation) = outgoing
        .event
        .extension(EXT_CORRELATIONID)
        .and_then(|value| value.as_str())
    {
        fields.push(("correlation_id", correlation.to_owned()));
    }
    fields
}

fn options_of(outgoing: &OutgoingEvent) -> PublishOptions {
    let mut options = PublishOptions::new().with_partition_key(outgoing.partition_key.clone());
    if let Some(traceparent) = &outgoing.traceparent {
        options = options.with_traceparent(traceparent.clone());
    }
    options
}

/// Publishes through the `dapr-pubsub-client` dispatcher: a bounded queue, ordered lanes by partition key
/// (= user id), retries with the same bytes (same event id).
#[derive(Debug, Clone)]
pub struct DaprPublisher {
    dispatcher: Dispatcher,
    pubsub: String,
    /// Events still queued or in flight when the shutdown deadline passed (counted in `events_dropped_total`).
    abandoned: Arc<AtomicU64>,
    log: Logger,
}

/// The most event ids one "abandoned at shutdown" log line lists (the count is always complete).
pub const MAX_LOGGED_ABANDONED_IDS: usize = 100;

impl DaprPublisher {
    /// Publishes to the `pubsub` component through `dispatcher`; logs what its shutdown abandons to `log`.
    pub fn new(dispatcher: Dispatcher, pubsub: impl Into<String>, log: &Logger) -> Self {
        Self {
            dispatcher,
            pubsub: pubsub.into(),
            abandoned: Arc::new(AtomicU64::new(0)),
            log: log.new(o!("component" => "publisher")),
        }
    }

    /// Counts the events `report` says were left undelivered at the deadline as dropped, and logs their ids
    /// (one WARN line, at most [`MAX_LOGGED_ABANDONED_IDS`] of them) so that they can be found and replayed.
    fn record_abandoned(&self, report: &ShutdownReport) {
        if report.undelivered.is_empty() {
            return;
        }
        let count = report.undelivered.len();
        self.abandoned.fetch_add(count as u64, Ordering::Relaxed);
        let ids: Vec<&str> = report
            .undelivered
            .iter()
            .take(MAX_LOGGED_ABANDONED_IDS)
            .map(|event| event.event_id.as_str())
            .collect();
        warn!(self.log, "{} events abandoned at the shutdown deadline", count;
            "abandoned" => count, "event_ids" => ids.join(","),
            "ids_listed" => ids.len(), "elapsed_ms" => report.elapsed.as_millis() as u64);
    }
}

impl DaprPublisher {
    fn submit(&self, outgoing: &OutgoingEvent, log: &Logger) {
        // A refused submit (queue full, shut down) is already counted and logged by the dispatcher.
        if let Err(err) = self.dispatcher.submit_with_log_fields(
            &self.pubsub,
            &outgoing.topic,
            &outgoing.event,
            options_of(outgoing),
            log_fields(outgoing),
        ) {
            log_not_queued(log, outgoing, &err);
        }
    }
}

/// The one line about an event the dispatcher refused (queue full or shut down); it counted the drop itself.
fn log_not_queued(log: &Logger, outgoing: &OutgoingEvent, err: &SubmitError) {
    warn!(log, "event {} not queued for publishing", outgoing.event_type();
        "event_type" => outgoing.event_type(), "event_id" => outgoing.id(), "topic" => &outgoing.topic,
        "task_id" => outgoing.event.subject().unwrap_or_default(), "error" => %ErrorChain(err));
}

/// A place in the dispatcher's line; `None` when the dispatcher could not reserve one (queue full or shut down):
/// the events are then submitted as they come (and counted as dropped if they still do not fit).
#[derive(Debug)]
struct DaprSlot {
    publisher: DaprPublisher,
    reservation: Option<Reservation>,
}

impl PublishSlot for DaprSlot {
    fn fill(self: Box<Self>, events: Vec<OutgoingEvent>, log: &Logger) {
        let DaprSlot {
            publisher,
            reservation,
        } = *self;
        let Some(mut reservation) = reservation else {
            for outgoing in &events {
                publisher.submit(outgoing, log);
            }
            return;
        };
        for outgoing in &events {
            if let Err(err) = reservation.add(
                &publisher.pubsub,
                &outgoing.topic,
                &outgoing.event,
                options_of(outgoing),
                log_fields(outgoing),
            ) {
                log_not_queued(log, outgoing, &err);
            }
        }
        reservation.submit();
    }
}

impl EventPublisher for DaprPublisher {
    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger) {
        for outgoing in &events {
            self.submit(outgoing, log);
        }
    }

    fn reserve(&self, partition_key: &str, log: &Logger) -> Box<dyn PublishSlot> {
        let reservation = match self.dispatcher.reserve(partition_key) {
            Ok(reservation) => Some(reservation),
            Err(err) => {
                warn!(log, "no place in the publish queue reserved; events will be queued as they come";
                    "partition_key" => partition_key, "error" => %ErrorChain(&err));
                None
            }
        };
        Box::new(DaprSlot {
            publisher: self.clone(),
            reservation,
        })
    }

    fn metrics(&self) -> Vec<ExtraMetric> {
        let m = self.dispatcher.metrics();
        vec![
            counter(
                "events_submitted_total",
                "Events accepted into the publish queue",
                m.submitted as f64,
            ),
            counter(
                "events_published_total",
                "Events the Dapr sidecar accepted",
                m.published as f64,
            ),
            counter(
                "events_failed_total",
                "Events given up on after retries or a permanent error",
                m.failed as f64,
            ),
            counter(
                "events_retried_total",
                "Publish retry attempts",
                m.retried as f64,
            ),
            counter(
                "events_dropped_total",
                "Events dropped because the queue was full or closed, or abandoned at the shutdown deadline",
                (m.dropped + self.abandoned.load(Ordering::Relaxed)) as f64,
            ),
            gauge(
                "events_queue_depth",
                "Events waiting in the publish queue",
                m.queue_depth as f64,
            ),
            gauge(
                "events_in_flight",
                "Events being delivered",
                m.in_flight as f64,
            ),
            counter(
                "events_bulk_requests_total",
                "Bulk publish requests (each carries several queued events)",
                m.bulk_requests as f64,
            ),
            counter(
                "events_bulk_entries_total",
                "Events sent in bulk publish requests, once per attempt",
                m.bulk_entries as f64,
            ),
            counter(
                "events_overtaken_total",
                "Events of a bulk request that failed while a later event of their user and topic in it was published (order broken; only with EVENT_BATCH_SAME_KEY)",
                m.overtaken as f64,
            ),
            counter(
                "events_publish_duration_seconds_count",
                "Publish attempts (one HTTP exchange each)",
                m.latency.count() as f64,
            ),
            counter(
                "events_publish_duration_seconds_sum",
                "Total time of publish attempts, in seconds",
                m.latency.sum().as_secs_f64(),
            ),
        ]
    }

    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_> {
        let dispatcher = self.dispatcher.clone();
        Box::pin(async move {
            // Run on its own task so that a failure inside the dispatcher's shutdown (it logs its own report)
            // cannot take the caller's shutdown sequence down with it.
            if let Ok(report) =
                tokio::spawn(async move { dispatcher.shutdown(deadline).await }).await
            {
                self.record_abandoned(&report);
            }
        })
    }
}

fn counter(name: &'static str, help: &'static str, value: f64) -> ExtraMetric {
    ExtraMetric {
        name,
        help,
        kind: "counter",
        value,
    }
}

fn gauge(name: &'static str, help: &'static str, value: f64) -> ExtraMetric {
    ExtraMetric {
        name,
        help,
        kind: "gauge",
        value,
    }
}

/// `DAPR_ENABLED=false`: events are built and logged at DEBUG, nothing is sent.
#[derive(Debug, Clone, Default)]
pub struct LogPublisher;

impl EventPublisher for LogPublisher {
    fn reserve(&self, _partition_key: &str, _log: &Logger) -> Box<dyn PublishSlot> {
        Box::new(LogSlot)
    }

    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger) {
        for outgoing in events {
            // Serialised only when the line is written (below DEBUG it is dropped before its fields are read).
            let json = slog::FnValue(|_: &slog::Record<'_>| outgoing.to_json().unwrap_or_default());
            debug!(log, "event {} built (publishing disabled)", outgoing.event_type();
                "event_type" => outgoing.event_type(), "event_id" => outgoing.id(), "topic" => &outgoing.topic,
                "task_id" => outgoing.event.subject().unwrap_or_default(),
                "partition_key" => &outgoing.partition_key, "event" => json);
        }
    }
}

/// The [`LogPublisher`]'s slot: nothing is sent, so there is no order to keep; the events are logged when filled.
#[derive(Debug)]
struct LogSlot;

impl PublishSlot for LogSlot {
    fn fill(self: Box<Self>, events: Vec<OutgoingEvent>, log: &Logger) {
        LogPublisher.publish(events, log);
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use fake::MemoryPublisher;

#[cfg(any(test, feature = "test-util"))]
mod fake {
    use std::sync::{Arc, Mutex};

    use slog::Logger;

    use super::{EventPublisher, PublishSlot};
    use crate::events::OutgoingEvent;

    /// A place in the record: its events, once filled.
    #[derive(Debug)]
    enum Place {
        Reserved(u64),
        Events(Vec<OutgoingEvent>),
    }

    #[derive(Debug, Default)]
    struct Record {
        places: Vec<Place>,
        next_id: u64,
    }

    /// An in-memory publisher that records every event handed to it; clones share the record. A reserved slot
    /// keeps its place: its events are recorded where it was reserved, as the dispatcher would send them.
    #[derive(Debug, Clone, Default)]
    pub struct MemoryPublisher {
        record: Arc<Mutex<Record>>,
    }

    impl MemoryPublisher {
        /// An empty recorder.
        pub fn new() -> Self {
            Self::default()
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
            self.record.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Everything published so far, in order (events of unfilled slots are not there yet).
        pub fn events(&self) -> Vec<OutgoingEvent> {
            self.lock()
                .places
                .iter()
                .flat_map(|place| match place {
                    Place::Events(events) => events.clone(),
                    Place::Reserved(_) => Vec::new(),
                })
                .collect()
        }

        /// Forgets what was recorded.
        pub fn clear(&self) {
            self.lock().places.clear();
        }
    }

    impl EventPublisher for MemoryPublisher {
        fn publish(&self, events: Vec<OutgoingEvent>, _log: &Logger) {
            self.lock().places.push(Place::Events(events));
        }

        fn reserve(&self, _partition_key: &str, _log: &Logger) -> Box<dyn PublishSlot> {
            let mut record = self.lock();
            let id = record.next_id;
            record.next_id += 1;
            record.places.push(Place::Reserved(id));
            Box::new(MemorySlot {
                publisher: self.clone(),
                id: Some(id),
            })
        }
    }

    /// A [`MemoryPublisher`] place.
    #[derive(Debug)]
    struct MemorySlot {
        publisher: MemoryPublisher,
        /// `None` once filled.
        id: Option<u64>,
    }

    impl MemorySlot {
        fn settle(&mut self, events: Option<Vec<OutgoingEvent>>) {
            let Some(id) = self.id.take() else { return };
            let mut record = self.publisher.lock();
            let at = record
                .places
                .iter()
                .position(|place| matches!(place, Place::Reserved(slot) if *slot == id));
            match (at, events) {
                (Some(at), Some(events)) => record.places[at] = Place::Events(events),
                (Some(at), None) => {
                    record.places.remove(at);
                }
                // Cleared meanwhile.
                (None, Some(events)) => record.places.push(Place::Events(events)),
                (None, None) => {}
            }
        }
    }

    impl PublishSlot for MemorySlot {
        fn fill(mut self: Box<Self>, events: Vec<OutgoingEvent>, _log: &Logger) {
            self.settle(Some(events));
        }
    }

    impl Drop for MemorySlot {
        fn drop(&mut self) {
            self.settle(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use cloudevents_model::CloudEvent;
    use serde_json::Value;

    use super::*;

    fn outgoing(id: &str) -> OutgoingEvent {
        OutgoingEvent {
            topic: "task-events".into(),
            partition_key: "user-1".into(),
            traceparent: None,
            event: CloudEvent::builder(id, "pakaura/api", "task.updated")
                .data(Value::Null)
                .build()
                .unwrap(),
        }
    }

    #[test]
    fn memory_slots_keep_their_place_and_a_dropped_one_leaves_none() {
        let log = Logger::root(slog::Discard, slog::o!());
        let publisher = MemoryPublisher::new();
        let first = publisher.reserve("user-1", &log);
        let second = publisher.reserve("user-1", &log);
        let dropped = publisher.reserve("user-1", &log);
        second.fill(vec![outgoing("b")], &log);
        assert!(
            publisher.events().iter().map(OutgoingEvent::id).eq(["b"]),
            "b is recorded"
        );
        first.fill(vec![outgoing("a")], &log);
        drop(dropped);
        publisher.publish(vec![outgoing("c")], &log);
        let ids: Vec<String> = publisher
            .events()
            .iter()
            .map(|e| e.id().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
