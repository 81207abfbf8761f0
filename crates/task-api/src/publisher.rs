//! The `EventPublisher` seam: where committed events go. Implementations: the Dapr dispatcher (fire-and-forget,
//! in order per user), a DEBUG log (`DAPR_ENABLED=false`), and an in-memory fake for tests (`test-util`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dapr_pubsub_client::{Dispatcher, PublishOptions, ShutdownReport};
use slog::{Logger, debug, o, warn};

use crate::error::ErrorChain;
use crate::events::OutgoingEvent;
use crate::metrics::ExtraMetric;

/// A boxed future returned by [`EventPublisher::shutdown`].
pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Takes events of a committed change. `publish` never blocks on the network and never fails the caller: delivery
/// problems are the publisher's to count and log.
pub trait EventPublisher: Send + Sync + std::fmt::Debug + 'static {
    /// Hands over the events of one change, in order.
    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger);

    /// Counters for `/metrics`.
    fn metrics(&self) -> Vec<ExtraMetric> {
        Vec::new()
    }

    /// Delivers what is queued within `deadline`, then stops.
    fn shutdown(&self, _deadline: Duration) -> ShutdownFuture<'_> {
        Box::pin(async {})
    }
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

impl EventPublisher for DaprPublisher {
    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger) {
        for outgoing in events {
            let mut options =
                PublishOptions::new().with_partition_key(outgoing.partition_key.clone());
            if let Some(traceparent) = &outgoing.traceparent {
                options = options.with_traceparent(traceparent.clone());
            }
            // A refused submit (queue full, shut down) is already counted and logged by the dispatcher.
            if let Err(err) =
                self.dispatcher
                    .submit(&self.pubsub, &outgoing.topic, &outgoing.event, options)
            {
                warn!(log, "event {} not queued for publishing", outgoing.event_type();
                    "event_type" => outgoing.event_type(), "event_id" => outgoing.id(), "topic" => &outgoing.topic,
                    "task_id" => outgoing.event.subject().unwrap_or_default(), "error" => %ErrorChain(&err));
            }
        }
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
    fn publish(&self, events: Vec<OutgoingEvent>, log: &Logger) {
        for outgoing in events {
            let json = outgoing.to_json().unwrap_or_default();
            debug!(log, "event {} built (publishing disabled)", outgoing.event_type();
                "event_type" => outgoing.event_type(), "event_id" => outgoing.id(), "topic" => &outgoing.topic,
                "task_id" => outgoing.event.subject().unwrap_or_default(),
                "partition_key" => &outgoing.partition_key, "event" => json);
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use fake::MemoryPublisher;

#[cfg(any(test, feature = "test-util"))]
mod fake {
    use std::sync::{Arc, Mutex};

    use slog::Logger;

    use super::EventPublisher;
    use crate::events::OutgoingEvent;

    /// An in-memory publisher that records every event handed to it; clones share the record.
    #[derive(Debug, Clone, Default)]
    pub struct MemoryPublisher {
        events: Arc<Mutex<Vec<OutgoingEvent>>>,
    }

    impl MemoryPublisher {
        /// An empty recorder.
        pub fn new() -> Self {
            Self::default()
        }

        /// Everything published so far, in order.
        pub fn events(&self) -> Vec<OutgoingEvent> {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }

        /// Forgets what was recorded.
        pub fn clear(&self) {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    impl EventPublisher for MemoryPublisher {
        fn publish(&self, events: Vec<OutgoingEvent>, _log: &Logger) {
            self.events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(events);
        }
    }
}
