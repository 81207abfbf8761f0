//! The JSON batch format (`application/cloudevents-batch+json`): a JSON array of events in the JSON event format.

use std::cell::Cell;
use std::io;

use serde::Serialize;

use crate::data::Data;
use crate::de::{BatchSeed, parse_document};
use crate::error::ParseError;
use crate::event::CloudEvent;

/// Parses a batch: a JSON array whose elements are events in the JSON event format. `[]` is a valid batch.
///
/// # Errors
/// [`ParseError::NotAnArray`] if the document is not an array, [`ParseError::BatchItem`] (with the index and the
/// event's own error as source) if an element is not a valid event, [`ParseError::Syntax`] for malformed JSON.
pub fn from_slice(bytes: &[u8]) -> Result<Vec<CloudEvent<Data>>, ParseError> {
    let slot = Cell::new(None);
    parse_document(bytes, BatchSeed { slot: &slot }, &slot)
}

/// Parses a batch from a string; see [`from_slice`].
///
/// # Errors
/// As [`from_slice`].
pub fn from_str(text: &str) -> Result<Vec<CloudEvent<Data>>, ParseError> {
    from_slice(text.as_bytes())
}

/// Serializes events as a batch.
///
/// # Errors
/// Fails only if a payload's `Serialize` implementation fails.
pub fn to_vec<D: Serialize>(events: &[CloudEvent<D>]) -> Result<Vec<u8>, serde_json::Error> {
    let mut buffer = Vec::with_capacity(events.len() * 512 + 2);
    to_writer(&mut buffer, events)?;
    Ok(buffer)
}

/// Serializes events as a batch into `writer`.
///
/// # Errors
/// Fails if writing fails or a payload's `Serialize` implementation fails.
pub fn to_writer<W: io::Write, D: Serialize>(
    writer: W,
    events: &[CloudEvent<D>],
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(writer, events)
}
