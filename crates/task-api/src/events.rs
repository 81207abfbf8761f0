//! Domain events → CloudEvents (SPEC §3.1, §3.2): types, topics, payloads and the envelope attributes.

use serde::Serialize;
use serde_json::{Map, Value};
use task_domain::{DueDate, ReminderChange, Task, TaskEvent};
use task_store::{EventSequence, SequenceExhausted};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use cloudevents_model::{
    CloudEvent, PARTITION_KEY_EXTENSION, SEQUENCE_EXTENSION, TRACEPARENT_EXTENSION,
};

use crate::config::Topics;
use crate::context::RequestContext;

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
/// `reminder.scheduled`.
pub const REMINDER_SCHEDULED: &str = "reminder.scheduled";
/// `reminder.rescheduled`.
pub const REMINDER_RESCHEDULED: &str = "reminder.rescheduled";
/// `reminder.cancelled`.
pub const REMINDER_CANCELLED: &str = "reminder.cancelled";

/// The extension carrying the correlation id as the plan asked (Dapr may overwrite it).
pub const EXT_TRACEID: &str = "traceid";
/// The extension carrying the correlation id that consumers should read.
pub const EXT_CORRELATIONID: &str = "correlationid";

/// One CloudEvent ready to publish, with where and how.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// The topic.
    pub topic: String,
    /// The partition key (the user id).
    pub partition_key: String,
    /// The `traceparent` to forward.
    pub traceparent: Option<String>,
    /// The event.
    pub event: CloudEvent<Value>,
}

impl OutgoingEvent {
    /// The event id.
    pub fn id(&self) -> &str {
        self.event.id()
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        self.event.ty()
    }

    /// The structured-mode JSON of the event.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.event)
    }
}

/// Payload of `task.created`.
#[derive(Debug, Serialize)]
pub struct TaskCreatedData<'a> {
    /// Task id.
    pub task_id: String,
    /// Owner id.
    pub user_id: String,
    /// `"created"`.
    pub action: &'static str,
    /// Title.
    pub title: &'a str,
    /// Completion state.
    pub completed: bool,
    /// Due date, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    /// When the change happened.
    pub timestamp: String,
}

/// Payload of `task.updated`.
#[derive(Debug, Serialize)]
pub struct TaskUpdatedData<'a> {
    /// Task id.
    pub task_id: String,
    /// Owner id.
    pub user_id: String,
    /// `"updated"`.
    pub action: &'static str,
    /// The title after the change.
    pub title: &'a str,
    /// `{field: new value}` for each changed field (`due_date: null` when cleared).
    pub changes: Map<String, Value>,
    /// When the change happened.
    pub timestamp: String,
}

/// Payload of `task.completed` / `task.uncompleted`.
#[derive(Debug, Serialize)]
pub struct TaskCompletionData {
    /// Task id.
    pub task_id: String,
    /// Owner id.
    pub user_id: String,
    /// `"completed"` or `"uncompleted"`.
    pub action: &'static str,
    /// The new completion state.
    pub completed: bool,
    /// When the change happened.
    pub timestamp: String,
}

/// Payload of `task.deleted` and `sync.task`.
#[derive(Debug, Serialize)]
pub struct TaskActionData {
    /// Task id.
    pub task_id: String,
    /// Owner id.
    pub user_id: String,
    /// What happened.
    pub action: &'static str,
    /// When the change happened.
    pub timestamp: String,
}

/// Payload of `reminder.*`.
#[derive(Debug, Serialize)]
pub struct ReminderData {
    /// Task id.
    pub task_id: String,
    /// Owner id.
    pub user_id: String,
    /// `"scheduled"`, `"rescheduled"` or `"cancelled"`.
    pub action: &'static str,
    /// The due date; `null` only for `cancelled`.
    pub due_date: Option<String>,
    /// When the change happened.
    pub timestamp: String,
}

/// RFC 3339 in UTC, always with six fractional digits (microseconds) and `Z`, as the original service writes
/// its timestamps: `2026-12-02T13:47:37.012500Z`, never `…37.0125Z` or `…37Z`. Stored instants are microsecond
/// precise, so nothing is lost; a finer instant is truncated.
pub fn rfc3339(instant: OffsetDateTime) -> String {
    const MICROS_Z: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let utc = instant.to_offset(time::UtcOffset::UTC);
    utc.format(MICROS_Z)
        .or_else(|_| utc.format(&Rfc3339))
        .unwrap_or_else(|_| instant.unix_timestamp().to_string())
}

/// The payload structs hold strings, booleans and string maps only, so serialization cannot fail.
fn to_value<T: Serialize>(data: &T) -> Value {
    serde_json::to_value(data).unwrap_or(Value::Null)
}

fn due(due: DueDate) -> String {
    rfc3339(due.instant())
}

/// Hands out the `sequence` values of one transaction's events, in the order they are built.
#[derive(Debug)]
pub struct Numbering {
    block: EventSequence,
    next: usize,
}

impl Numbering {
    /// Numbers the events of the transaction that took `block`.
    pub fn new(block: EventSequence) -> Self {
        Self { block, next: 0 }
    }

    fn take(&mut self) -> Result<String, SequenceExhausted> {
        let value = self.block.nth_text(self.next)?;
        self.next += 1;
        Ok(value)
    }
}

/// Why a change's events could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// An attribute was invalid.
    #[error("invalid CloudEvent")]
    Event(#[from] cloudevents_model::BuildError),
    /// The transaction had more events than its sequence block numbers.
    #[error("too many events in one change")]
    Sequence(#[from] SequenceExhausted),
}

/// Builds the CloudEvents of a mutation.
#[derive(Debug, Clone)]
pub struct EventFactory {
    source: String,
    topics: Topics,
}

impl EventFactory {
    /// A factory with `source` (for example `pakaura/api`) and topic names.
    pub fn new(source: impl Into<String>, topics: Topics) -> Self {
        Self {
            source: source.into(),
            topics,
        }
    }

    /// The topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The CloudEvents of `events`, in order, for `task` (its state after the change; before it for deletes),
    /// at `now`, each with the next value of `numbering` as its `sequence`.
    pub fn build(
        &self,
        task: &Task,
        events: &[TaskEvent],
        ctx: &RequestContext,
        now: OffsetDateTime,
        numbering: &mut Numbering,
    ) -> Result<Vec<OutgoingEvent>, EventsError> {
        events
            .iter()
            .map(|event| {
                let sequence = numbering.take()?;
                Ok(self.build_one(task, event, ctx, now, sequence)?)
            })
            .collect()
    }

    fn build_one(
        &self,
        task: &Task,
        event: &TaskEvent,
        ctx: &RequestContext,
        now: OffsetDateTime,
        sequence: String,
    ) -> Result<OutgoingEvent, cloudevents_model::BuildError> {
        let task_id = task.id().to_string();
        let user_id = task.user_id().to_string();
        let timestamp = rfc3339(now);
        let (ty, topic, data): (&str, &str, Value) = match event {
            TaskEvent::Created => (
                TASK_CREATED,
                &self.topics.task_events,
                to_value(&TaskCreatedData {
                    task_id: task_id.clone(),
                    user_id: user_id.clone(),
                    action: "created",
                    title: task.title().as_str(),
                    completed: task.completed(),
                    due_date: task.due_date().map(due),
                    timestamp,
                }),
            ),
            TaskEvent::Updated(fields) => {
                let mut changes = Map::new();
                if let Some(title) = &fields.title {
                    changes.insert("title".to_owned(), Value::String(title.as_str().to_owned()));
                }
                if let Some(due_date) = fields.due_date {
                    changes.insert(
                        "due_date".to_owned(),
                        due_date.map(due).map_or(Value::Null, Value::String),
                    );
                }
                (
                    TASK_UPDATED,
                    &self.topics.task_events,
                    to_value(&TaskUpdatedData {
                        task_id: task_id.clone(),
                        user_id: user_id.clone(),
                        action: "updated",
                        title: task.title().as_str(),
                        changes,
                        timestamp,
                    }),
                )
            }
            TaskEvent::Completed | TaskEvent::Uncompleted => {
                let completed = matches!(event, TaskEvent::Completed);
                let (ty, action) = if completed {
                    (TASK_COMPLETED, "completed")
                } else {
                    (TASK_UNCOMPLETED, "uncompleted")
                };
                (
                    ty,
                    &self.topics.task_events,
                    to_value(&TaskCompletionData {
                        task_id: task_id.clone(),
                        user_id: user_id.clone(),
                        action,
                        completed,
                        timestamp,
                    }),
                )
            }
            TaskEvent::Deleted => (
                TASK_DELETED,
                &self.topics.task_events,
                to_value(&TaskActionData {
                    task_id: task_id.clone(),
                    user_id: user_id.clone(),
                    action: "deleted",
                    timestamp,
                }),
            ),
            TaskEvent::Reminder(change) => {
                let ty = match change {
                    ReminderChange::Scheduled(_) => REMINDER_SCHEDULED,
                    ReminderChange::Rescheduled(_) => REMINDER_RESCHEDULED,
                    ReminderChange::Cancelled => REMINDER_CANCELLED,
                };
                (
                    ty,
                    &self.topics.reminders,
                    to_value(&ReminderData {
                        task_id: task_id.clone(),
                        user_id: user_id.clone(),
                        action: change.action(),
                        due_date: change.due_date().map(due),
                        timestamp,
                    }),
                )
            }
            TaskEvent::Sync(action) => (
                SYNC_TASK,
                &self.topics.task_updates,
                to_value(&TaskActionData {
                    task_id: task_id.clone(),
                    user_id: user_id.clone(),
                    action: action.as_str(),
                    timestamp,
                }),
            ),
        };
        let correlation = ctx.correlation_id.to_string();
        let mut builder = CloudEvent::builder(Uuid::new_v4().to_string(), self.source.clone(), ty)
            .time(now)
            .subject(task_id)
            .datacontenttype("application/json")
            .extension(EXT_TRACEID, correlation.clone())
            .extension(EXT_CORRELATIONID, correlation)
            // The partition key (the user id), and the `sequence` (cloudevents/spec `extensions/sequence.md`): a
            // 20-digit zero-padded value, taken inside the change's transaction under its row lock, that
            // increases in commit order.
            .extension(PARTITION_KEY_EXTENSION, user_id.clone())
            .extension(SEQUENCE_EXTENSION, sequence);
        if let Some(traceparent) = &ctx.traceparent {
            // The distributed-tracing extension: with the trace context in the event, events of different
            // traces can share one bulk publish request (which carries one `traceparent` header).
            builder = builder.extension(TRACEPARENT_EXTENSION, traceparent.clone());
        }
        let event = builder.data(data).build()?;
        Ok(OutgoingEvent {
            topic: topic.to_owned(),
            partition_key: user_id,
            traceparent: ctx.traceparent.clone(),
            event,
        })
    }
}

#[cfg(test)]
mod timestamp_tests {
    use time::macros::datetime;

    use super::rfc3339;

    #[test]
    fn timestamps_always_have_six_fractional_digits_and_z() {
        for (instant, text) in [
            (
                datetime!(2026-12-02 13:47:37.0125 UTC),
                "2026-12-02T13:47:37.012500Z",
            ),
            (
                datetime!(2026-12-02 13:47:37 UTC),
                "2026-12-02T13:47:37.000000Z",
            ),
            (
                datetime!(2026-12-02 14:47:37.123456 +01:00),
                "2026-12-02T13:47:37.123456Z",
            ),
            // Finer than microseconds is truncated, never rounded into the next second.
            (
                datetime!(2026-12-02 13:47:37.999999999 UTC),
                "2026-12-02T13:47:37.999999Z",
            ),
        ] {
            assert_eq!(rfc3339(instant), text);
        }
    }
}
