//! What the dispatcher hands back: refused submits and the shutdown report.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::PublishError;
use crate::metrics::MetricsSnapshot;
use crate::options::PublishOptions;

/// Why [`Dispatcher::submit`](crate::Dispatcher::submit) did not take an event. Already counted and logged by the
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
    pub last_error: Option<Arc<PublishError>>,
}

/// What [`Dispatcher::shutdown`](crate::Dispatcher::shutdown) achieved.
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
