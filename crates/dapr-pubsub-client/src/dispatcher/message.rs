//! What travels from `submit` to a lane: queued events, reservations, and how an event may
//! share a request.

use std::sync::Arc;

use bytes::Bytes;
use cloudevents_model::CloudEvent;
use http::HeaderValue;
use serde::Serialize;

use crate::client::options_for_event;
use crate::dispatcher::report::UndeliveredEvent;
use crate::error::PublishError;
use crate::options::{METADATA_PARTITION_KEY, PublishOptions};

// The CloudEvents distributed-tracing extension attributes (and the Dapr metadata keys that carry
// them to the broker as record headers).
use cloudevents_model::{TRACEPARENT_EXTENSION as TRACEPARENT, TRACESTATE_EXTENSION as TRACESTATE};

/// Key-value pairs the submitter attaches to an event, logged with every line about its delivery
/// (for example the task id and the correlation id), so that the dispatcher needs to know nothing
/// about what the events describe.
pub type LogFields = Vec<(&'static str, String)>;

/// How an event can travel in a bulk publish request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BulkForm {
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
    pub(crate) fn of(content_type: &str, body: &[u8]) -> Self {
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
pub(crate) struct Message {
    pub(crate) pubsub: String,
    pub(crate) topic: String,
    pub(crate) content_type: HeaderValue,
    pub(crate) body: Bytes,
    pub(crate) options: PublishOptions,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) bulk: BulkForm,
    pub(crate) fields: LogFields,
    /// Whether the event carries its own trace context (the CloudEvents distributed-tracing
    /// extension, equal to the options' `traceparent`/`tracestate`): it then loses nothing in a
    /// bulk request without that `traceparent` header, and may share one with other traces.
    pub(crate) trace_in_event: bool,
}

impl Message {
    /// A CloudEvent in structured mode, serialized now; the partition key comes from `options`,
    /// else from the event's `partitionkey` extension.
    pub(crate) fn cloud_event<D: Serialize>(
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: PublishOptions,
        fields: LogFields,
    ) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(event)?;
        let mut options = match options_for_event(event, &options) {
            std::borrow::Cow::Borrowed(_) => options,
            std::borrow::Cow::Owned(with_key) => with_key,
        };
        let extension = |name| event.extension(name).and_then(|value| value.as_str());
        let trace_in_event = options.traceparent().is_some()
            && extension(TRACEPARENT) == options.traceparent()
            && extension(TRACESTATE) == options.tracestate();
        if trace_in_event {
            // Per-event metadata (bulk: entry metadata), which the Kafka component writes as
            // record headers, so the record carries the trace context however it was sent.
            let trace = [
                (TRACEPARENT, options.traceparent().map(str::to_owned)),
                (TRACESTATE, options.tracestate().map(str::to_owned)),
            ];
            for (key, value) in trace {
                if let Some(value) = value {
                    options = options.with_metadata(key, value);
                }
            }
        }
        Ok(Self {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            content_type: HeaderValue::from_static(cloudevents_model::CONTENT_TYPE),
            body: Bytes::from(body),
            options,
            event_id: event.id().to_owned(),
            event_type: event.ty().to_owned(),
            bulk: BulkForm::Json,
            fields,
            trace_in_event,
        })
    }

    /// What must be equal for two events to share a bulk request.
    pub(crate) fn group(&self) -> RequestGroup<'_> {
        RequestGroup {
            options: &self.options,
            trace_in_event: self.trace_in_event,
        }
    }

    /// Whether metadata `key` travels per event (bulk: as entry metadata) rather than per request.
    pub(crate) fn is_entry_metadata(&self, key: &str) -> bool {
        key == METADATA_PARTITION_KEY
            || (self.trace_in_event && (key == TRACEPARENT || key == TRACESTATE))
    }

    pub(crate) fn into_undelivered(
        self,
        attempts: u32,
        last_error: Option<Arc<PublishError>>,
    ) -> UndeliveredEvent {
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

/// The request-level options of an event (metadata other than what travels per entry; deadline;
/// trace context: a request carries one `traceparent` header, and no event may lose its own, so
/// events that do not carry their trace context themselves share a request only with events of
/// the same trace). Events share a bulk request only when these are equal.
#[derive(Clone, Copy)]
pub(crate) struct RequestGroup<'a> {
    options: &'a PublishOptions,
    trace_in_event: bool,
}

impl RequestGroup<'_> {
    fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        let trace_in_event = self.trace_in_event;
        self.options.metadata().filter(move |(key, _)| {
            *key != METADATA_PARTITION_KEY
                && !(trace_in_event && (*key == TRACEPARENT || *key == TRACESTATE))
        })
    }
}

/// The options of a bulk request for `messages` (one group): everything but what travels per
/// entry, and the trace context header when every event has the same one (events that carry
/// their own trace context may differ; the request then carries none).
pub(crate) fn request_options(messages: &[&Message]) -> PublishOptions {
    let first = messages[0].group();
    let mut options = PublishOptions::new();
    for (key, value) in first.metadata() {
        options = options.with_metadata(key, value);
    }
    let shared = |get: fn(&PublishOptions) -> Option<&str>| {
        let value = get(first.options);
        messages
            .iter()
            .all(|message| get(&message.options) == value)
            .then_some(value)
            .flatten()
    };
    if let Some(traceparent) = shared(PublishOptions::traceparent) {
        options = options.with_traceparent(traceparent);
        if let Some(tracestate) = shared(PublishOptions::tracestate) {
            options = options.with_tracestate(tracestate);
        }
    }
    if let Some(timeout) = first.options.timeout() {
        options = options.with_timeout(timeout);
    }
    options
}

impl PartialEq for RequestGroup<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same_trace = (self.trace_in_event && other.trace_in_event)
            || (self.trace_in_event == other.trace_in_event
                && self.options.traceparent() == other.options.traceparent()
                && self.options.tracestate() == other.options.tracestate());
        same_trace
            && self.metadata().eq(other.metadata())
            && self.options.timeout() == other.options.timeout()
    }
}

/// What a lane receives, in the order it was sent.
pub(crate) enum Command {
    /// An event to publish.
    Event(Box<Message>),
    /// A place in line for the partition key's next events.
    Reserve { id: u64, partition_key: String },
    /// The events of a reservation: they take its place.
    Fill { id: u64, messages: Vec<Message> },
    /// A reservation given up unfilled.
    Cancel { id: u64 },
}

/// The submitter's log fields as slog key-values.
pub(crate) struct Fields<'a>(pub(crate) &'a [(&'static str, String)]);

impl slog::KV for Fields<'_> {
    fn serialize(
        &self,
        _record: &slog::Record<'_>,
        serializer: &mut dyn slog::Serializer,
    ) -> slog::Result {
        for (key, value) in self.0 {
            serializer.emit_str(key, value)?;
        }
        Ok(())
    }
}
