//! The dispatcher's settings.

use std::time::Duration;

use crate::delivery::RetryPolicy;

/// Settings of a [`Dispatcher`](crate::Dispatcher). Build with [`DispatcherConfig::new`] and the `with_*` setters.
///
/// `new()` starts from the values below, meant for trying the crate out. They are policy (memory
/// held by the queue, load on the sidecar, how long an event is retried), so an application sets
/// each of them from its own configuration rather than inherit them from here; there is no
/// `Default` implementation to pick them up silently.
///
/// | setting | value from `new()` |
/// |---|---|
/// | queue capacity (events waiting, all lanes together) | 10 000 |
/// | concurrency (ordered lanes, one request in flight each) | 8 |
/// | attempts per event (first try included) | 5 |
/// | first backoff / backoff cap | 100 ms / 5 s |
/// | events per request (`max_batch`; 1 = no batching) | 1 |
/// | linger (wait for more events to fill a batch) | 0 |
/// | consecutive events of one key in a request ([`with_same_key_batches`](Self::with_same_key_batches)) | no |
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    pub(crate) queue_capacity: usize,
    pub(crate) concurrency: usize,
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_batch: usize,
    pub(crate) linger: Duration,
    pub(crate) same_key_batches: bool,
}

impl DispatcherConfig {
    /// The starting values listed above.
    #[expect(
        clippy::new_without_default,
        reason = "a Default would let a caller inherit the queue and retry policy without saying so"
    )]
    pub fn new() -> Self {
        Self {
            queue_capacity: 10_000,
            concurrency: 8,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_batch: 1,
            linger: Duration::ZERO,
            same_key_batches: false,
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
    /// With `events` > 1, a lane plans its next request with
    /// [`delivery::plan`](crate::delivery::plan): the oldest waiting event of each ordering key
    /// (pub/sub, topic, partition key) that is not held back, so **at most one event per key**
    /// in a request, batched across keys that share the pub/sub component, topic, other
    /// metadata, deadline and trace context, up to `events` and [`MAX_BULK_BODY_BYTES`](crate::MAX_BULK_BODY_BYTES)
    /// (`POST /v1.0/publish/bulk/{pubsub}/{topic}`, or the alpha route on older sidecars). The
    /// next event of a key goes out only once the one before it was accepted or given up on, so
    /// a failed entry is never overtaken by a later event of its key. Nothing waits for a batch
    /// to fill unless [`with_linger`](Self::with_linger) says so: batches form only when events
    /// queue up behind a request in flight. A batch of one is sent as a single publish.
    ///
    /// In a bulk request:
    /// - each entry carries its partition key as entry metadata (`partitionKey`), its own
    ///   content type (`application/cloudevents+json` for [`Dispatcher::submit`](crate::Dispatcher::submit)(crate::Dispatcher::submit)) and its
    ///   event id as entry id, and the very bytes a single publish would send; other metadata
    ///   are request metadata;
    /// - events join a request only when they have the same `traceparent`/`tracestate` (or
    ///   none), which the request then carries exactly as a single publish would: no event loses
    ///   its trace context;
    /// - events sent through [`Dispatcher::submit_bytes`](crate::Dispatcher::submit_bytes) join a request only when their content
    ///   type is `application/json` or `application/cloudevents+json` (and the body is JSON), or
    ///   `text/*` / `application/xml` (and the body is UTF-8); others are always published alone.
    ///
    /// Dapr answers with the entries it could not publish: only those are retried (same bytes,
    /// same event ids, same backoff and attempt limit as single publishes). A failure of the
    /// whole request retries all its entries. Metrics count events, plus
    /// [`MetricsSnapshot::bulk_requests`](crate::MetricsSnapshot::bulk_requests) and [`MetricsSnapshot::bulk_entries`](crate::MetricsSnapshot::bulk_entries).
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

    /// Lets a bulk request carry several consecutive events of one ordering key (pub/sub,
    /// topic, partition key), in order; off by default (at most one per key, see
    /// [`with_max_batch`](Self::with_max_batch)). Only used when `max_batch` > 1. Lets one busy
    /// key's queued events go out together instead of one request each.
    ///
    /// **Keeps order only where the pub/sub component publishes a bulk request's entries in
    /// order and all-or-nothing per key.** Dapr promises neither: components without native bulk
    /// publish go through Dapr's default bulk publisher, which publishes the entries
    /// concurrently; the Kafka component hands them in order to one Sarama producer
    /// (`SendMessages`), but an entry can fail on its own (a message over the broker's size limit,
    /// a serialization error) while a later entry of its key is published, and a retry inside the
    /// producer (not idempotent, up to 5 requests in flight by Sarama's defaults) can reorder a
    /// partition's records. Turn it on only for Kafka with events that cannot fail one by one.
    ///
    /// The dispatcher watches for the failure it can see: when a bulk response reports a failed
    /// entry followed by a published entry of the same key, the failed event has been overtaken;
    /// it is counted in [`MetricsSnapshot::overtaken`](crate::MetricsSnapshot::overtaken) and the
    /// request is logged (WARN, once, with the event ids). The failed entry is still retried (it
    /// lands after the events that overtook it).
    pub fn with_same_key_batches(mut self, enabled: bool) -> Self {
        self.same_key_batches = enabled;
        self
    }

    /// Whether a bulk request may carry consecutive events of one key.
    pub fn same_key_batches(&self) -> bool {
        self.same_key_batches
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

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.initial_backoff, self.max_backoff, self.max_attempts)
    }
}
