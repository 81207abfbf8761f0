//! The domain events a task mutation causes (SPEC §3.3); `task-api` maps them to CloudEvents.

use crate::instant::DueDate;
use crate::title::TaskTitle;

/// One consequence of a mutation. Payload values that are the task's current state (title, completed, due date
/// of `task.created`) are read from the task the mutation returned; events carry only what the task cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// `task.created`.
    Created,
    /// `task.updated` with the changed fields and their new values.
    Updated(UpdatedFields),
    /// `task.completed`.
    Completed,
    /// `task.uncompleted`.
    Uncompleted,
    /// `task.deleted`.
    Deleted,
    /// `reminder.scheduled` / `reminder.rescheduled` / `reminder.cancelled`.
    Reminder(ReminderChange),
    /// `sync.task`: exactly one per successful mutation, always the last event.
    Sync(SyncAction),
}

/// The fields a `task.updated` names (`changes: {field: new value}`). Completion is never among them: a flip is
/// `task.completed` / `task.uncompleted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdatedFields {
    /// The new title, when it changed.
    pub title: Option<TaskTitle>,
    /// The new due date (`Some(None)`: cleared), when it changed.
    pub due_date: Option<Option<DueDate>>,
}

impl UpdatedFields {
    /// No field changed.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.due_date.is_none()
    }
}

/// What happened to the task's reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderChange {
    /// A due date was set where there was none.
    Scheduled(DueDate),
    /// The due date changed to this one.
    Rescheduled(DueDate),
    /// The due date was cleared, or the task was deleted while it had one.
    Cancelled,
}

impl ReminderChange {
    /// The new due date; `None` for a cancellation.
    pub fn due_date(&self) -> Option<DueDate> {
        match self {
            Self::Scheduled(due) | Self::Rescheduled(due) => Some(*due),
            Self::Cancelled => None,
        }
    }

    /// `"scheduled"`, `"rescheduled"` or `"cancelled"`: the payload's `action`.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Scheduled(_) => "scheduled",
            Self::Rescheduled(_) => "rescheduled",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The main change of a mutation, named by its `sync.task` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// The task was created.
    Created,
    /// Title or due date changed, and completion did not.
    Updated,
    /// Completion flipped to true (takes precedence over field changes in the same update).
    Completed,
    /// Completion flipped to false (takes precedence over field changes in the same update).
    Uncompleted,
    /// The task was deleted.
    Deleted,
}

impl SyncAction {
    /// The payload's `action`: `"created"`, `"updated"`, `"completed"`, `"uncompleted"` or `"deleted"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Completed => "completed",
            Self::Uncompleted => "uncompleted",
            Self::Deleted => "deleted",
        }
    }
}
