//! Bulk publish: request entries and the per-entry outcome of
//! `POST /v1.0/publish/bulk/{pubsub}/{topic}`.

use std::collections::BTreeMap;

use cloudevents_model::CloudEvent;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::client::{JSON_CONTENT_TYPE, PARTITION_KEY_EXTENSION};
use crate::error::PublishError;
use crate::options::METADATA_PARTITION_KEY;

/// One entry of a bulk publish request, serialized as Dapr documents it:
/// `{"entryId": …, "event": …, "contentType": …, "metadata": {…}}`.
///
/// The event is serialized when the entry is built, so a request can be retried with the very
/// same bytes.
///
/// ```
/// use dapr_pubsub_client::BulkEntry;
///
/// let entry = BulkEntry::json("e-1", &serde_json::json!({"n": 1}))?
///     .with_partition_key("user-7");
/// assert_eq!(
///     serde_json::to_string(&entry)?,
///     r#"{"entryId":"e-1","event":{"n":1},"contentType":"application/json","metadata":{"partitionKey":"user-7"}}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEntry {
    entry_id: String,
    event: Box<RawValue>,
    content_type: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

impl BulkEntry {
    /// A CloudEvent in structured mode; the entry id is the event id. The event's
    /// `partitionkey` extension, when present, becomes the entry's `partitionKey` metadata.
    pub fn cloud_event<D: Serialize>(event: &CloudEvent<D>) -> Result<Self, PublishError> {
        let mut entry = Self {
            entry_id: event.id().to_owned(),
            event: to_raw(event)?,
            content_type: cloudevents_model::CONTENT_TYPE.to_owned(),
            metadata: BTreeMap::new(),
        };
        if let Some(key) = event
            .extension(PARTITION_KEY_EXTENSION)
            .and_then(|value| value.as_str())
        {
            entry = entry.with_partition_key(key);
        }
        Ok(entry)
    }

    /// A structured CloudEvent that is already serialized (for example one stored in an outbox), sent as
    /// `application/cloudevents+json` byte for byte. `json` must be a JSON value; it is not parsed further.
    ///
    /// ```
    /// use dapr_pubsub_client::BulkEntry;
    ///
    /// let stored = r#"{"specversion":"1.0","id":"e-1","source":"s","type":"t"}"#;
    /// let entry = BulkEntry::cloud_event_json("e-1", stored)?;
    /// assert_eq!(entry.event_json(), stored);
    /// assert!(BulkEntry::cloud_event_json("e-2", "not json").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cloud_event_json(
        entry_id: impl Into<String>,
        json: impl Into<String>,
    ) -> Result<Self, PublishError> {
        Self::raw_json(entry_id, cloudevents_model::CONTENT_TYPE, json)
    }

    /// Already serialized JSON with the given content type (`application/json` or
    /// `application/cloudevents+json`), embedded byte for byte. `json` must be a JSON value.
    pub fn raw_json(
        entry_id: impl Into<String>,
        content_type: impl Into<String>,
        json: impl Into<String>,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            entry_id: entry_id.into(),
            event: RawValue::from_string(json.into())
                .map_err(|source| PublishError::Serialize { source })?,
            content_type: content_type.into(),
            metadata: BTreeMap::new(),
        })
    }

    /// Any serializable value as `application/json` (Dapr wraps it in a CloudEvent).
    pub fn json<T: Serialize + ?Sized>(
        entry_id: impl Into<String>,
        value: &T,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            entry_id: entry_id.into(),
            event: to_raw(value)?,
            content_type: JSON_CONTENT_TYPE.to_owned(),
            metadata: BTreeMap::new(),
        })
    }

    /// A text payload with the given content type (for example `text/plain`); sent as a JSON
    /// string, as Dapr expects for non-JSON content.
    pub fn text(
        entry_id: impl Into<String>,
        content_type: impl Into<String>,
        text: &str,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            entry_id: entry_id.into(),
            event: to_raw(text)?,
            content_type: content_type.into(),
            metadata: BTreeMap::new(),
        })
    }

    /// Adds (or replaces) an entry metadata value.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the entry's `partitionKey` metadata.
    pub fn with_partition_key(self, key: impl Into<String>) -> Self {
        self.with_metadata(METADATA_PARTITION_KEY, key)
    }

    /// The entry id Dapr reports failures with.
    pub fn entry_id(&self) -> &str {
        &self.entry_id
    }

    /// The serialized event JSON.
    pub fn event_json(&self) -> &str {
        self.event.get()
    }

    /// The entry's content type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The entry metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}

fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, PublishError> {
    let json = serde_json::to_string(value).map_err(|source| PublishError::Serialize { source })?;
    RawValue::from_string(json).map_err(|source| PublishError::Serialize { source })
}

/// One entry Dapr could not publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FailedEntry {
    /// The entry id from the request.
    pub entry_id: String,
    /// Dapr's error message for it.
    #[serde(default)]
    pub error: String,
}

/// The JSON body of a bulk publish answer: `{"failedEntries": [...], "errorCode": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkPublishResponse {
    /// The entries that failed.
    #[serde(default)]
    pub failed_entries: Vec<FailedEntry>,
    /// Dapr's error code when some entries failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// What happened to each entry of a bulk publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkPublishOutcome {
    status: StatusCode,
    total: usize,
    failed: Vec<FailedEntry>,
    error_code: Option<String>,
}

impl BulkPublishOutcome {
    /// Interprets the sidecar's answer: 2xx with an empty body or a `failedEntries` list, or a
    /// non-2xx answer that lists failed entries (partial failure). Any other non-2xx answer is
    /// `Rejected`.
    pub(crate) fn from_answer(
        status: StatusCode,
        body: &[u8],
        total: usize,
    ) -> Result<Self, PublishError> {
        let is_blank = body.iter().all(u8::is_ascii_whitespace);
        if status.is_success() {
            let parsed = if is_blank {
                BulkPublishResponse::default()
            } else {
                serde_json::from_slice::<BulkPublishResponse>(body)
                    .map_err(|source| PublishError::Decode { status, source })?
            };
            return Ok(Self::new(status, total, parsed));
        }
        match serde_json::from_slice::<BulkPublishResponse>(body) {
            Ok(parsed) if !parsed.failed_entries.is_empty() => Ok(Self::new(status, total, parsed)),
            _ => Err(PublishError::rejected(status, body)),
        }
    }

    fn new(status: StatusCode, total: usize, parsed: BulkPublishResponse) -> Self {
        Self {
            status,
            total,
            failed: parsed.failed_entries,
            error_code: parsed.error_code,
        }
    }

    /// Whether every entry was published.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// The entries that failed, as Dapr reported them.
    pub fn failed_entries(&self) -> &[FailedEntry] {
        &self.failed
    }

    /// Dapr's error message for `entry_id`, or `None` if that entry was published.
    pub fn error_for(&self, entry_id: &str) -> Option<&str> {
        self.failed
            .iter()
            .find(|failed| failed.entry_id == entry_id)
            .map(|failed| failed.error.as_str())
    }

    /// How many entries were published (entries in the request minus the failed ones).
    pub fn published_count(&self) -> usize {
        self.total.saturating_sub(self.failed.len())
    }

    /// The HTTP status of the answer (204 when all succeeded, 500 on partial failure).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Dapr's error code on partial failure.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_outcomes_or_errors() {
        let ok = BulkPublishOutcome::from_answer(StatusCode::NO_CONTENT, b"", 3).unwrap();
        assert!(ok.is_success());
        assert_eq!(ok.published_count(), 3);

        let ok =
            BulkPublishOutcome::from_answer(StatusCode::OK, br#"{"failedEntries":[]}"#, 2).unwrap();
        assert!(ok.is_success());

        let partial = BulkPublishOutcome::from_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"failedEntries":[{"entryId":"b","error":"boom"}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}"#,
            2,
        )
        .unwrap();
        assert!(!partial.is_success());
        assert_eq!(partial.error_for("b"), Some("boom"));
        assert_eq!(partial.error_for("a"), None);
        assert_eq!(partial.published_count(), 1);
        assert_eq!(partial.error_code(), Some("ERR_PUBSUB_PUBLISH_MESSAGE"));

        let err = BulkPublishOutcome::from_answer(
            StatusCode::NOT_FOUND,
            br#"{"errorCode":"ERR_PUBSUB_NOT_FOUND"}"#,
            2,
        )
        .unwrap_err();
        assert!(err.is_not_found());

        let err = BulkPublishOutcome::from_answer(StatusCode::OK, b"<html>", 2).unwrap_err();
        assert!(matches!(err, PublishError::Decode { .. }));

        let err =
            BulkPublishOutcome::from_answer(StatusCode::INTERNAL_SERVER_ERROR, b"\xff\xfe", 2)
                .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn text_entries_are_json_strings() {
        let entry = BulkEntry::text("t", "text/plain", "hello \"world\"").unwrap();
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"entryId":"t","event":"hello \"world\"","contentType":"text/plain"}"#
        );
    }
}
