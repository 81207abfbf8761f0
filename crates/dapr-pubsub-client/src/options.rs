//! Per-call publish options: Dapr metadata (sent as `metadata.*` query parameters), W3C trace
//! context pass-through and a per-call deadline.

use std::time::Duration;

/// Metadata key of the partition (Kafka message) key.
pub const METADATA_PARTITION_KEY: &str = "partitionKey";
/// Metadata key of the message time-to-live in seconds.
pub const METADATA_TTL_IN_SECONDS: &str = "ttlInSeconds";
/// Metadata key asking Dapr not to wrap the payload in a CloudEvent.
pub const METADATA_RAW_PAYLOAD: &str = "rawPayload";

/// Options of one publish call. All optional; build with the `with_*` setters.
///
/// ```
/// use std::time::Duration;
/// use dapr_pubsub_client::PublishOptions;
///
/// let options = PublishOptions::new()
///     .with_partition_key("user-42")
///     .with_ttl(Duration::from_secs(60))
///     .with_metadata("priority", "high")
///     .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .with_timeout(Duration::from_millis(500));
/// assert_eq!(options.partition_key(), Some("user-42"));
/// assert_eq!(options.metadata_value("ttlInSeconds"), Some("60"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOptions {
    metadata: Vec<(String, String)>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    timeout: Option<Duration>,
}

impl PublishOptions {
    /// No metadata, no trace context, the client's default deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the metadata entry `key`; sent as `metadata.{key}={value}`.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_metadata(key.into(), value.into());
        self
    }

    /// Sets `partitionKey` (the Kafka message key: events with one key keep their order).
    pub fn with_partition_key(self, key: impl Into<String>) -> Self {
        self.with_metadata(METADATA_PARTITION_KEY, key)
    }

    /// Sets `ttlInSeconds` (whole seconds, rounded down, at least 1).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        self.with_metadata(METADATA_TTL_IN_SECONDS, ttl.as_secs().max(1).to_string())
    }

    /// Sets `rawPayload`: when true Dapr sends the body as is, without a CloudEvent envelope.
    pub fn with_raw_payload(self, raw: bool) -> Self {
        self.with_metadata(METADATA_RAW_PAYLOAD, if raw { "true" } else { "false" })
    }

    /// Passes a W3C `traceparent` header to the sidecar.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Passes a W3C `tracestate` header to the sidecar.
    pub fn with_tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }

    /// Overrides the client's deadline for this call (one deadline over the whole exchange).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The metadata entries in insertion order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of metadata entry `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `partitionKey` metadata value.
    pub fn partition_key(&self) -> Option<&str> {
        self.metadata_value(METADATA_PARTITION_KEY)
    }

    /// The `traceparent` to pass through.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The `tracestate` to pass through.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The per-call deadline, if overridden.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_metadata(&mut self, key: String, value: String) {
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// Sets `partitionKey` only when it is not set yet.
    pub(crate) fn set_default_partition_key(&mut self, key: &str) {
        if self.partition_key().is_none() {
            self.metadata
                .push((METADATA_PARTITION_KEY.to_owned(), key.to_owned()));
        }
    }
}
