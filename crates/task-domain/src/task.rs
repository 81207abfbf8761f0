//! The `Task` entity and its mutations, each returning the domain events it causes (SPEC §3.3).

use time::OffsetDateTime;

use crate::events::{ReminderChange, SyncAction, TaskEvent, UpdatedFields};
use crate::ids::{TaskId, UserId};
use crate::instant::{DueDate, normalize};
use crate::title::TaskTitle;

/// A task of one user.
///
/// Fields are private: a change goes through a mutation method, which returns the events it causes. The store
/// rebuilds stored tasks with [`Task::from_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    id: TaskId,
    user_id: UserId,
    title: TaskTitle,
    completed: bool,
    due_date: Option<DueDate>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// Every field of a [`Task`], for rebuilding one from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskParts {
    /// The task's id.
    pub id: TaskId,
    /// The owner.
    pub user_id: UserId,
    /// The title.
    pub title: TaskTitle,
    /// Whether it is done.
    pub completed: bool,
    /// When it is due, if ever.
    pub due_date: Option<DueDate>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// A partial update (the body of `PATCH /tasks/{id}`): `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    /// A new title.
    pub title: Option<TaskTitle>,
    /// A new completion state.
    pub completed: Option<bool>,
    /// `Some(Some(date))` sets the due date, `Some(None)` clears it.
    pub due_date: Option<Option<DueDate>>,
}

impl TaskPatch {
    /// A patch that only sets the completion state.
    pub fn completed(completed: bool) -> Self {
        Self {
            completed: Some(completed),
            ..Self::default()
        }
    }
}

impl Task {
    /// A new, not completed task created at `now`; returns it with `task.created`, `reminder.scheduled` when it
    /// has a due date, and `sync.task` (created).
    pub fn create(
        id: TaskId,
        user_id: UserId,
        title: TaskTitle,
        due_date: Option<DueDate>,
        now: OffsetDateTime,
    ) -> (Self, Vec<TaskEvent>) {
        let now = normalize(now);
        let task = Self {
            id,
            user_id,
            title,
            completed: false,
            due_date,
            created_at: now,
            updated_at: now,
        };
        let mut events = vec![TaskEvent::Created];
        if let Some(due) = due_date {
            events.push(TaskEvent::Reminder(ReminderChange::Scheduled(due)));
        }
        events.push(TaskEvent::Sync(SyncAction::Created));
        (task, events)
    }

    /// Rebuilds a stored task. Timestamps are normalized (UTC, microseconds).
    pub fn from_parts(parts: TaskParts) -> Self {
        let TaskParts {
            id,
            user_id,
            title,
            completed,
            due_date,
            created_at,
            updated_at,
        } = parts;
        Self {
            id,
            user_id,
            title,
            completed,
            due_date,
            created_at: normalize(created_at),
            updated_at: normalize(updated_at),
        }
    }

    /// All fields, by value.
    pub fn into_parts(self) -> TaskParts {
        let Self {
            id,
            user_id,
            title,
            completed,
            due_date,
            created_at,
            updated_at,
        } = self;
        TaskParts {
            id,
            user_id,
            title,
            completed,
            due_date,
            created_at,
            updated_at,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The owner.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The title.
    pub fn title(&self) -> &TaskTitle {
        &self.title
    }

    /// Whether it is done.
    pub fn completed(&self) -> bool {
        self.completed
    }

    /// When it is due, if ever.
    pub fn due_date(&self) -> Option<DueDate> {
        self.due_date
    }

    /// When it was created (UTC, microseconds).
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it last changed (UTC, microseconds).
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// Applies `patch` at `now` and returns the events, in this order:
    ///
    /// 1. `task.updated` when the title or the due date changed, naming each changed field with its new value;
    /// 2. `task.completed` / `task.uncompleted` when the completion state flipped (never `task.updated` for it);
    /// 3. `reminder.scheduled` / `rescheduled` / `cancelled` when the due date was set, changed or cleared;
    /// 4. one `sync.task` whose action is `completed` / `uncompleted` if the state flipped, else `updated`.
    ///
    /// A field whose new value equals the current one is no change. When nothing changes, the task (including
    /// `updated_at`) stays as it was and the result is empty: no event, no sync.
    pub fn update(&mut self, patch: TaskPatch, now: OffsetDateTime) -> Vec<TaskEvent> {
        let mut fields = UpdatedFields::default();
        if let Some(title) = patch.title.filter(|title| *title != self.title) {
            fields.title = Some(title.clone());
            self.title = title;
        }
        let flipped = patch
            .completed
            .filter(|completed| *completed != self.completed);
        if let Some(completed) = flipped {
            self.completed = completed;
        }
        let mut reminder = None;
        if let Some(due_date) = patch.due_date.filter(|due_date| *due_date != self.due_date) {
            reminder = Some(match (self.due_date, due_date) {
                (None, Some(due)) => ReminderChange::Scheduled(due),
                (Some(_), Some(due)) => ReminderChange::Rescheduled(due),
                (_, None) => ReminderChange::Cancelled,
            });
            fields.due_date = Some(due_date);
            self.due_date = due_date;
        }

        let mut events = Vec::new();
        if !fields.is_empty() {
            events.push(TaskEvent::Updated(fields));
        }
        let sync = match flipped {
            Some(true) => {
                events.push(TaskEvent::Completed);
                SyncAction::Completed
            }
            Some(false) => {
                events.push(TaskEvent::Uncompleted);
                SyncAction::Uncompleted
            }
            None => SyncAction::Updated,
        };
        events.extend(reminder.map(TaskEvent::Reminder));
        if !events.is_empty() {
            events.push(TaskEvent::Sync(sync));
            self.updated_at = normalize(now);
        }
        events
    }

    /// Marks the task done: `task.completed` + `sync.task`, or nothing when it already was.
    pub fn complete(&mut self, now: OffsetDateTime) -> Vec<TaskEvent> {
        self.update(TaskPatch::completed(true), now)
    }

    /// Marks the task not done: `task.uncompleted` + `sync.task`, or nothing when it already was not.
    pub fn uncomplete(&mut self, now: OffsetDateTime) -> Vec<TaskEvent> {
        self.update(TaskPatch::completed(false), now)
    }

    /// The events of deleting this task: `task.deleted`, `reminder.cancelled` when it had a due date, and
    /// `sync.task` (deleted). Deleting always changes something, so this is never empty.
    pub fn delete(&self) -> Vec<TaskEvent> {
        let mut events = vec![TaskEvent::Deleted];
        if self.due_date.is_some() {
            events.push(TaskEvent::Reminder(ReminderChange::Cancelled));
        }
        events.push(TaskEvent::Sync(SyncAction::Deleted));
        events
    }
}

/// The events of "clear completed": [`Task::delete`]'s events for each completed task among `tasks`, in the order
/// given; tasks not completed are not part of it.
pub fn clear_completed(tasks: &[Task]) -> Vec<(TaskId, Vec<TaskEvent>)> {
    tasks
        .iter()
        .filter(|task| task.completed)
        .map(|task| (task.id, task.delete()))
        .collect()
}
