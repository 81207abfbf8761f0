//! CloudEvents 1.0 events and their JSON event format, strictly validated.
#![doc = include_str!("../README.md")]

pub mod batch;
mod data;
mod de;
mod error;
mod event;
mod extension;
mod rules;
mod ser;
pub mod timestamp;

#[cfg(test)]
mod tests;

pub use data::Data;
pub use error::{BuildError, JsonKind, ParseError, Rule};
pub use event::{CloudEvent, EventBuilder};
pub use extension::ExtensionValue;

/// Media type of one event in the JSON event format (structured content mode).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Media type of a batch of events in the JSON batch format.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The attribute of the CloudEvents Partitioning extension: the key that keeps related events in order on one
/// partition (Dapr's `metadata.partitionKey`, Kafka's record key).
pub const PARTITION_KEY_EXTENSION: &str = "partitionkey";

/// The attribute of the CloudEvents Sequence extension: the event's place in the order of its source (or key).
pub const SEQUENCE_EXTENSION: &str = "sequence";

/// The W3C trace context of the CloudEvents Distributed Tracing extension: `traceparent`.
pub const TRACEPARENT_EXTENSION: &str = "traceparent";

/// The W3C trace context of the CloudEvents Distributed Tracing extension: `tracestate`.
pub const TRACESTATE_EXTENSION: &str = "tracestate";

/// The only `specversion` this crate reads and writes.
pub const SPEC_VERSION: &str = "1.0";

/// Checks a `source` attribute value the way [`EventBuilder::build`] does: a non-empty URI-reference (RFC 3986)
/// of valid CloudEvents string characters. Lets a producer refuse a bad configured source at start instead of
/// failing every event later.
///
/// # Errors
/// The [`Rule`] the value breaks.
pub fn check_source(source: &str) -> Result<(), Rule> {
    rules::check_non_empty_string(source)?;
    rules::check_uri_reference(source)
}

/// Whether a media type declares JSON content (`*/json` or `*/*+json`, parameters ignored, case-insensitive),
/// the test the JSON event format applies to `datacontenttype`.
#[must_use]
pub fn is_json_content_type(media_type: &str) -> bool {
    rules::content_type_is_json(media_type)
}
