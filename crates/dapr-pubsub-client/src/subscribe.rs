//! Subscriber-side serde types, independent of any web framework: the programmatic
//! subscription document an app serves on `GET /dapr/subscribe`, the event envelope Dapr
//! delivers, the app's answer, and the bulk-subscribe request and answer.

use std::collections::BTreeMap;

use cloudevents_model::CloudEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The path Dapr reads programmatic subscriptions from.
pub const SUBSCRIBE_PATH: &str = "/dapr/subscribe";

/// One entry of the `/dapr/subscribe` answer (a JSON array of these).
///
/// ```
/// use dapr_pubsub_client::{BulkSubscribe, Subscription};
///
/// let subscriptions = vec![
///     Subscription::new("pubsub-kafka", "task-events", "/events/tasks")
///         .with_dead_letter_topic("task-events-dead"),
///     Subscription::new("pubsub-kafka", "reminders", "/events/reminders")
///         .with_rule(r#"event.type == "reminder.cancelled""#, "/events/reminders/cancelled")
///         .with_bulk_subscribe(BulkSubscribe::new().with_max_messages_count(100)),
/// ];
/// let json = serde_json::to_value(&subscriptions)?;
/// assert_eq!(json[0]["route"], "/events/tasks");
/// assert_eq!(json[0]["deadLetterTopic"], "task-events-dead");
/// assert_eq!(json[1]["routes"]["default"], "/events/reminders");
/// assert_eq!(json[1]["routes"]["rules"][0]["path"], "/events/reminders/cancelled");
/// assert_eq!(json[1]["bulkSubscribe"]["enabled"], true);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Subscription {
    /// The pub/sub component name.
    pub pubsubname: String,
    /// The topic.
    pub topic: String,
    /// The single delivery path (Dapr's v1 form), when no routing rules are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Routing rules (Dapr's v2 form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Routes>,
    /// Component-specific subscription metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Topic that receives the events the app drops or keeps failing on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Bulk delivery settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_subscribe: Option<BulkSubscribe>,
}

impl Subscription {
    /// Delivers every event of `topic` on `pubsub` to `route` (a path of the app).
    pub fn new(
        pubsub: impl Into<String>,
        topic: impl Into<String>,
        route: impl Into<String>,
    ) -> Self {
        Self {
            pubsubname: pubsub.into(),
            topic: topic.into(),
            route: Some(route.into()),
            routes: None,
            metadata: BTreeMap::new(),
            dead_letter_topic: None,
            bulk_subscribe: None,
        }
    }

    /// Adds a routing rule: events matching the CEL expression `matches` go to `path`.
    /// Switches to the v2 form; the route given to [`new`](Self::new) becomes the default.
    pub fn with_rule(mut self, matches: impl Into<String>, path: impl Into<String>) -> Self {
        let default = self.route.take();
        let routes = self.routes.get_or_insert_with(|| Routes {
            rules: Vec::new(),
            default: None,
        });
        if routes.default.is_none() {
            routes.default = default;
        }
        routes.rules.push(RoutingRule {
            matches: matches.into(),
            path: path.into(),
        });
        self
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the dead-letter topic.
    pub fn with_dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Enables bulk delivery with the given settings.
    pub fn with_bulk_subscribe(mut self, bulk: BulkSubscribe) -> Self {
        self.bulk_subscribe = Some(bulk);
        self
    }
}

/// The v2 routing rules of a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Routes {
    /// Rules tried in order.
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
    /// Path for events no rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One routing rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RoutingRule {
    /// A CEL expression over the event (`event.type == "task.created"`).
    #[serde(rename = "match")]
    pub matches: String,
    /// The app path for matching events.
    pub path: String,
}

/// Bulk delivery settings of a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkSubscribe {
    /// Whether bulk delivery is on.
    pub enabled: bool,
    /// Most events per delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages_count: Option<u32>,
    /// Longest wait (ms) before delivering a partial batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_await_duration_ms: Option<u32>,
}

impl Default for BulkSubscribe {
    fn default() -> Self {
        Self::new()
    }
}

impl BulkSubscribe {
    /// Bulk delivery on, with Dapr's default limits.
    pub fn new() -> Self {
        Self {
            enabled: true,
            max_messages_count: None,
            max_await_duration_ms: None,
        }
    }

    /// Sets the most events per delivery.
    pub fn with_max_messages_count(mut self, count: u32) -> Self {
        self.max_messages_count = Some(count);
        self
    }

    /// Sets the longest wait before delivering a partial batch.
    pub fn with_max_await_duration_ms(mut self, ms: u32) -> Self {
        self.max_await_duration_ms = Some(ms);
        self
    }
}

/// The envelope Dapr POSTs to a subscription route: the CloudEvent as published, plus the
/// attributes Dapr adds (`topic`, `pubsubname`, `traceid`, `traceparent`, `tracestate`).
///
/// `D` is the type of `data`; the default keeps it as JSON. Other extension attributes are kept
/// in `extensions`.
///
/// ```
/// use dapr_pubsub_client::TopicEvent;
///
/// let delivered: TopicEvent = serde_json::from_str(r#"{
///     "specversion": "1.0", "id": "5f2c", "source": "pakaura/api", "type": "task.created",
///     "datacontenttype": "application/json", "data": {"task_id": "42"},
///     "topic": "task-events", "pubsubname": "pubsub-kafka",
///     "traceid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
///     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
///     "tracestate": "", "correlationid": "a6b0c1d2-0000-4000-8000-000000000000"
/// }"#)?;
/// assert_eq!(delivered.topic.as_deref(), Some("task-events"));
/// assert_eq!(delivered.data.as_ref().unwrap()["task_id"], "42");
/// assert_eq!(delivered.extension_str("correlationid"), Some("a6b0c1d2-0000-4000-8000-000000000000"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicEvent<D = Value> {
    /// Event id.
    pub id: String,
    /// Event source.
    pub source: String,
    /// Event type.
    #[serde(rename = "type")]
    pub ty: String,
    /// CloudEvents spec version (`1.0`).
    pub specversion: String,
    /// Content type of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Event subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Event time (RFC 3339), kept as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The topic it was delivered from (added by Dapr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The pub/sub component it came through (added by Dapr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsubname: Option<String>,
    /// Dapr's trace id attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceid: Option<String>,
    /// W3C `traceparent` of the publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` of the publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
    /// A binary payload, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Every other attribute (extensions).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

impl<D> TopicEvent<D> {
    /// An extension attribute.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.extensions.get(name)
    }

    /// An extension attribute that is a string.
    pub fn extension_str(&self, name: &str) -> Option<&str> {
        self.extension(name).and_then(Value::as_str)
    }
}

impl<D: Serialize> TopicEvent<D> {
    /// Re-reads the envelope as a validated [`CloudEvent`] (Dapr's added attributes become
    /// extensions). Fails when the delivered event is not a valid CloudEvent.
    pub fn to_cloud_event(&self) -> Result<CloudEvent, serde_json::Error> {
        serde_json::to_value(self).and_then(serde_json::from_value)
    }
}

/// What the app tells Dapr about one delivered event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AppStatus {
    /// Processed; Dapr acknowledges it.
    Success,
    /// Dapr should deliver it again later.
    Retry,
    /// Dapr should drop it (or send it to the dead-letter topic).
    Drop,
}

/// The app's JSON answer to a delivery: `{"status": "SUCCESS" | "RETRY" | "DROP"}`, sent with
/// HTTP 200. (Dapr also treats any other non-2xx answer as `RETRY`, and 404 as `DROP`.)
///
/// ```
/// use dapr_pubsub_client::AppResponse;
///
/// assert_eq!(serde_json::to_string(&AppResponse::RETRY)?, r#"{"status":"RETRY"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppResponse {
    /// The decision.
    pub status: AppStatus,
}

impl AppResponse {
    /// `{"status":"SUCCESS"}`.
    pub const SUCCESS: Self = Self::new(AppStatus::Success);
    /// `{"status":"RETRY"}`.
    pub const RETRY: Self = Self::new(AppStatus::Retry);
    /// `{"status":"DROP"}`.
    pub const DROP: Self = Self::new(AppStatus::Drop);

    /// An answer with the given status.
    pub const fn new(status: AppStatus) -> Self {
        Self { status }
    }
}

/// What Dapr POSTs to a route with bulk subscribe on.
///
/// `E` is the type of each entry's `event`: the default keeps it as JSON (an object for
/// CloudEvents, a string for text payloads); use [`TopicEvent`] when every entry is a CloudEvent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkSubscribeRequest<E = Value> {
    /// The delivered entries.
    pub entries: Vec<BulkSubscribeEntry<E>>,
    /// Id of this delivery.
    #[serde(default)]
    pub id: String,
    /// Delivery metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The pub/sub component.
    #[serde(default)]
    pub pubsubname: String,
    /// The topic.
    #[serde(default)]
    pub topic: String,
    /// The delivery type (`com.dapr.event.sent.bulk`).
    #[serde(default, rename = "type")]
    pub ty: String,
}

/// One event of a bulk delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkSubscribeEntry<E = Value> {
    /// The entry id to answer with.
    pub entry_id: String,
    /// The event.
    pub event: E,
    /// Entry metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Content type of the event.
    #[serde(default)]
    pub content_type: String,
}

/// The app's answer to a bulk delivery: one status per entry.
///
/// ```
/// use dapr_pubsub_client::{AppStatus, BulkSubscribeResponse};
///
/// let answer = BulkSubscribeResponse::new()
///     .with_status("a", AppStatus::Success)
///     .with_status("b", AppStatus::Retry);
/// assert_eq!(
///     serde_json::to_string(&answer)?,
///     r#"{"statuses":[{"entryId":"a","status":"SUCCESS"},{"entryId":"b","status":"RETRY"}]}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BulkSubscribeResponse {
    /// Per-entry decisions.
    pub statuses: Vec<BulkSubscribeResponseEntry>,
}

impl BulkSubscribeResponse {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same status for every entry of `request`.
    pub fn all<E>(request: &BulkSubscribeRequest<E>, status: AppStatus) -> Self {
        Self {
            statuses: request
                .entries
                .iter()
                .map(|entry| BulkSubscribeResponseEntry {
                    entry_id: entry.entry_id.clone(),
                    status,
                })
                .collect(),
        }
    }

    /// Adds the status of one entry.
    pub fn with_status(mut self, entry_id: impl Into<String>, status: AppStatus) -> Self {
        self.push(entry_id, status);
        self
    }

    /// Adds the status of one entry.
    pub fn push(&mut self, entry_id: impl Into<String>, status: AppStatus) {
        self.statuses.push(BulkSubscribeResponseEntry {
            entry_id: entry_id.into(),
            status,
        });
    }
}

/// The decision for one entry of a bulk delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BulkSubscribeResponseEntry {
    /// The entry id from the request.
    pub entry_id: String,
    /// The decision.
    pub status: AppStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_request_parses_dapr_delivery() {
        let request: BulkSubscribeRequest = serde_json::from_str(
            r#"{"entries":[
                {"entryId":"1","event":{"specversion":"1.0","id":"a","source":"s","type":"t","data":{"n":1}},
                 "metadata":{"k":"v"},"contentType":"application/cloudevents+json"},
                {"entryId":"2","event":"plain text","contentType":"text/plain"}],
               "id":"batch","metadata":{},"pubsubname":"pubsub-kafka","topic":"task-events",
               "type":"com.dapr.event.sent.bulk"}"#,
        )
        .unwrap();
        assert_eq!(request.entries.len(), 2);
        assert_eq!(request.entries[1].event, "plain text");
        let answer = BulkSubscribeResponse::all(&request, AppStatus::Drop);
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"statuses":[{"entryId":"1","status":"DROP"},{"entryId":"2","status":"DROP"}]})
        );
        let typed: BulkSubscribeEntry<TopicEvent> =
            serde_json::from_value(serde_json::to_value(&request.entries[0]).unwrap()).unwrap();
        assert_eq!(typed.event.ty, "t");
    }

    #[test]
    fn subscription_round_trips_and_rules_keep_the_default() {
        let subscription = Subscription::new("p", "t", "/d")
            .with_rule("event.type == \"a\"", "/a")
            .with_metadata("rawPayload", "false");
        assert_eq!(subscription.route, None);
        let json = serde_json::to_value(&subscription).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pubsubname":"p","topic":"t",
                "routes":{"rules":[{"match":"event.type == \"a\"","path":"/a"}],"default":"/d"},
                "metadata":{"rawPayload":"false"}})
        );
        let back: Subscription = serde_json::from_value(json).unwrap();
        assert_eq!(back, subscription);
    }

    #[test]
    fn a_dapr_delivery_reads_back_as_a_cloud_event() {
        let delivered: TopicEvent = serde_json::from_str(
            r#"{"specversion":"1.0","id":"5f2c","source":"pakaura/api","type":"task.created",
                "datacontenttype":"application/json","subject":"42","time":"2026-01-01T00:00:00Z",
                "data":{"task_id":"42"},"topic":"task-events","pubsubname":"pubsub-kafka",
                "traceid":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "tracestate":"","partitionkey":"user-7"}"#,
        )
        .unwrap();
        assert_eq!(delivered.extension_str("partitionkey"), Some("user-7"));
        let event = delivered.to_cloud_event().unwrap();
        assert_eq!(event.id(), "5f2c");
        assert_eq!(event.ty(), "task.created");
        assert_eq!(event.subject(), Some("42"));
        assert_eq!(
            event.extension("pubsubname").and_then(|v| v.as_str()),
            Some("pubsub-kafka")
        );
        assert_eq!(
            event.extension("partitionkey").and_then(|v| v.as_str()),
            Some("user-7")
        );
    }

    #[test]
    fn app_status_parses_uppercase() {
        let answer: AppResponse = serde_json::from_str(r#"{"status":"DROP"}"#).unwrap();
        assert_eq!(answer, AppResponse::DROP);
        assert!(serde_json::from_str::<AppResponse>(r#"{"status":"maybe"}"#).is_err());
    }
}
