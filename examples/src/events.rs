//! Task events in the shape of SPEC §3 (envelope, types, topics, payloads), built with `cloudevents-model`.
//!
//! The publish example emits these, the subscriber checks them, and the round-trip test uses them as its
//! traffic. A real service would build them from its own domain changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloudevents_model::{BuildError, CloudEvent};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The Dapr pub/sub component of the local stack and of the deployment.
pub const PUBSUB_NAME: &str = "pubsub-kafka";
/// Topic of `task.*` events.
pub const TOPIC_TASK_EVENTS: &str = "task-events";
/// Topic of `sync.task` events.
pub const TOPIC_TASK_UPDATES: &str = "task-updates";
/// Topic of `reminder.*` events.
pub const TOPIC_REMINDERS: &str = "reminders";
/// All three topics.
pub const ALL_TOPICS: [&str; 3] = [TOPIC_TASK_EVENTS, TOPIC_TASK_UPDATES, TOPIC_REMINDERS];

/// `task.created`.
pub const TASK_CREATED: &str = "task.created";
/// `task.updated`.
pub const TASK_UPDATED: &str = "task.updated";
/// `task.completed`.
pub const TASK_COMPLETED: &str = "task.completed";
/// `task.uncompleted`.
pub const TASK_UNCOMPLETED: &str = "task.uncompleted";
/// `task.deleted`.
pub const TASK_DELETED: &str = "task.deleted";
/// `sync.task`.
pub const SYNC_TASK: &str = "sync.task";
/// The `task.*` types of the `task-events` topic.
pub const TASK_TYPES: [&str; 5] = [
    TASK_CREATED,
    TASK_UPDATED,
    TASK_COMPLETED,
    TASK_UNCOMPLETED,
    TASK_DELETED,
];

/// Extension naming the correlation id of the request that caused the event.
pub const CORRELATION_EXTENSION: &str = "correlationid";
/// Extension carrying the correlation id as the plan asked (Dapr may overwrite it with its trace id).
pub const TRACE_ID_EXTENSION: &str = "traceid";
/// Extension carrying the partition key (the user id); `dapr-pubsub-client` sends it as `metadata.partitionKey`.
pub use cloudevents_model::PARTITION_KEY_EXTENSION;

/// Extension ordering the events of one task (the CloudEvents Sequence extension).
pub use dapr_pubsub_client::consumer::SEQUENCE_EXTENSION;

/// Builds SPEC-shaped events for one source (`source` attribute) and one correlation id.
#[derive(Clone, Debug)]
pub struct TaskEventFactory {
    source: String,
    correlation_id: Uuid,
    /// The next `sequence` value, shared by clones: it starts at the current time in microseconds so that a
    /// restarted publisher keeps increasing, and grows by one per event.
    sequence: Arc<AtomicU64>,
}

impl TaskEventFactory {
    /// Events from `source`, all carrying `correlation_id`.
    pub fn new(source: impl Into<String>, correlation_id: Uuid) -> Self {
        let start = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
        Self {
            source: source.into(),
            correlation_id,
            sequence: Arc::new(AtomicU64::new(u64::try_from(start).unwrap_or(0))),
        }
    }

    /// The correlation id every event of this factory carries.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// An event of type `ty` about `task_id` of `user_id` with payload `data`: a fresh UUIDv4 id, the current
    /// time, `subject` = task id, JSON content, and the `traceid`, `correlationid`, `partitionkey` and `sequence`
    /// extensions (`sequence`: 20 zero-padded digits, growing with every event this factory builds).
    pub fn event(
        &self,
        ty: &str,
        user_id: Uuid,
        task_id: Uuid,
        data: &Value,
    ) -> Result<CloudEvent, BuildError> {
        let correlation = self.correlation_id.to_string();
        CloudEvent::builder(Uuid::new_v4().to_string(), self.source.as_str(), ty)
            .time(OffsetDateTime::now_utc())
            .subject(task_id.to_string())
            .datacontenttype("application/json")
            .extension(TRACE_ID_EXTENSION, correlation.as_str())
            .extension(CORRELATION_EXTENSION, correlation.as_str())
            .extension(PARTITION_KEY_EXTENSION, user_id.to_string())
            .extension(
                SEQUENCE_EXTENSION,
                format!("{:020}", self.sequence.fetch_add(1, Ordering::Relaxed)),
            )
            .json_data(data)
            .build()
    }

    /// `task.created` with its `sync.task` companion.
    pub fn created(
        &self,
        user_id: Uuid,
        task_id: Uuid,
        title: &str,
    ) -> Result<[Topical; 2], BuildError> {
        let data = payload(
            user_id,
            task_id,
            "created",
            [("title", json!(title)), ("completed", json!(false))],
        );
        self.with_sync(TASK_CREATED, "created", user_id, task_id, &data)
    }

    /// `task.updated` (a new title) with its `sync.task` companion.
    pub fn updated(
        &self,
        user_id: Uuid,
        task_id: Uuid,
        title: &str,
    ) -> Result<[Topical; 2], BuildError> {
        let data = payload(
            user_id,
            task_id,
            "updated",
            [
                ("title", json!(title)),
                ("changes", json!({ "title": title })),
            ],
        );
        self.with_sync(TASK_UPDATED, "updated", user_id, task_id, &data)
    }

    /// `task.completed` with its `sync.task` companion.
    pub fn completed(&self, user_id: Uuid, task_id: Uuid) -> Result<[Topical; 2], BuildError> {
        let data = payload(user_id, task_id, "completed", [("completed", json!(true))]);
        self.with_sync(TASK_COMPLETED, "completed", user_id, task_id, &data)
    }

    /// `task.deleted` with its `sync.task` companion.
    pub fn deleted(&self, user_id: Uuid, task_id: Uuid) -> Result<[Topical; 2], BuildError> {
        let data = payload(user_id, task_id, "deleted", []);
        self.with_sync(TASK_DELETED, "deleted", user_id, task_id, &data)
    }

    /// The events of one task's life (create, rename, complete, delete), in order, each followed by its
    /// `sync.task`.
    pub fn lifecycle(&self, user_id: Uuid, title: &str) -> Result<Vec<Topical>, BuildError> {
        let task_id = Uuid::new_v4();
        let mut events = Vec::with_capacity(8);
        events.extend(self.created(user_id, task_id, title)?);
        events.extend(self.updated(user_id, task_id, &format!("{title} (renamed)"))?);
        events.extend(self.completed(user_id, task_id)?);
        events.extend(self.deleted(user_id, task_id)?);
        Ok(events)
    }

    fn with_sync(
        &self,
        ty: &str,
        action: &str,
        user_id: Uuid,
        task_id: Uuid,
        data: &Value,
    ) -> Result<[Topical; 2], BuildError> {
        let sync = payload(user_id, task_id, action, []);
        Ok([
            Topical::new(TOPIC_TASK_EVENTS, self.event(ty, user_id, task_id, data)?),
            Topical::new(
                TOPIC_TASK_UPDATES,
                self.event(SYNC_TASK, user_id, task_id, &sync)?,
            ),
        ])
    }
}

/// An event and the topic it belongs on.
#[derive(Clone, Debug)]
pub struct Topical {
    /// The topic.
    pub topic: &'static str,
    /// The event.
    pub event: CloudEvent,
}

impl Topical {
    /// Pairs an event with its topic.
    pub fn new(topic: &'static str, event: CloudEvent) -> Self {
        Self { topic, event }
    }
}

/// The `data` of a task event: `task_id`, `user_id`, `action`, `timestamp`, plus `extra` members.
pub fn payload<const N: usize>(
    user_id: Uuid,
    task_id: Uuid,
    action: &str,
    extra: [(&str, Value); N],
) -> Value {
    let mut data = Map::new();
    data.insert("task_id".into(), json!(task_id));
    data.insert("user_id".into(), json!(user_id));
    data.insert("action".into(), json!(action));
    for (key, value) in extra {
        data.insert(key.into(), value);
    }
    data.insert("timestamp".into(), json!(now_rfc3339()));
    Value::Object(data)
}

/// The current UTC time as RFC 3339.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_spec_envelope() {
        let correlation = Uuid::new_v4();
        let factory = TaskEventFactory::new("pakaura/examples", correlation);
        let user = Uuid::new_v4();
        let events = factory.lifecycle(user, "write the report").unwrap();
        let types: Vec<_> = events.iter().map(|t| (t.topic, t.event.ty())).collect();
        assert_eq!(
            types,
            [
                (TOPIC_TASK_EVENTS, TASK_CREATED),
                (TOPIC_TASK_UPDATES, SYNC_TASK),
                (TOPIC_TASK_EVENTS, TASK_UPDATED),
                (TOPIC_TASK_UPDATES, SYNC_TASK),
                (TOPIC_TASK_EVENTS, TASK_COMPLETED),
                (TOPIC_TASK_UPDATES, SYNC_TASK),
                (TOPIC_TASK_EVENTS, TASK_DELETED),
                (TOPIC_TASK_UPDATES, SYNC_TASK),
            ]
        );
        let created = &events[0].event;
        let json: Value = serde_json::from_str(&created.to_json_string().unwrap()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["source"], "pakaura/examples");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["correlationid"], correlation.to_string());
        assert_eq!(json["traceid"], correlation.to_string());
        assert_eq!(json["partitionkey"], user.to_string());
        assert_eq!(json["subject"], json["data"]["task_id"]);
        assert_eq!(json["data"]["action"], "created");
        assert_eq!(json["data"]["title"], "write the report");
        assert!(Uuid::parse_str(created.id()).is_ok());
        let updated: Value =
            serde_json::from_str(&events[2].event.to_json_string().unwrap()).unwrap();
        assert_eq!(
            updated["data"]["changes"]["title"],
            "write the report (renamed)"
        );
        let ids: std::collections::HashSet<_> =
            events.iter().map(|t| t.event.id().to_owned()).collect();
        assert_eq!(ids.len(), events.len(), "every event has its own id");
    }
}
