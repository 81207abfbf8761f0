//! Tool inputs and outputs with their JSON schemas (derived through `rmcp::schemars`), and [`ToolError`], the
//! caller-visible failure of a tool (`isError: true`), never a protocol error.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use rmcp::schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use task_domain::{Task, TaskId};
use uuid::Uuid;

use crate::dto::TaskResponse;
use crate::error::ApiError;

/// `add_task` arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct AddTaskInput {
    /// The task title: 1 to 500 characters after trimming surrounding whitespace.
    pub title: String,
    /// Optional due date: an RFC 3339 date-time (`2030-01-31T17:00:00Z`, `2030-01-31T17:00:00+02:00`), a
    /// date-time without offset (taken as UTC) or a plain date `2030-01-31` (midnight UTC). Omit for no due date.
    #[serde(default)]
    pub due_date: Option<String>,
}

/// Which tasks `list_tasks` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub enum TaskFilter {
    /// Every task (the default).
    #[default]
    All,
    /// Only tasks marked done.
    Completed,
    /// Only tasks not done yet.
    Incomplete,
}

impl TaskFilter {
    /// The `completed` filter of the service.
    pub fn completed(self) -> Option<bool> {
        match self {
            TaskFilter::All => None,
            TaskFilter::Completed => Some(true),
            TaskFilter::Incomplete => Some(false),
        }
    }

    /// The filter's name, as accepted on input.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskFilter::All => "all",
            TaskFilter::Completed => "completed",
            TaskFilter::Incomplete => "incomplete",
        }
    }
}

/// `list_tasks` arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListTasksInput {
    /// `all` (default), `completed` or `incomplete`.
    #[serde(default)]
    pub filter: Option<TaskFilter>,
}

/// `update_task` arguments: only the given fields change.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct UpdateTaskInput {
    /// The id (UUID) of the task, as returned by `add_task` or `list_tasks`.
    pub task_id: String,
    /// A new title (1 to 500 characters after trimming). Omit or null to keep the current title.
    #[serde(default)]
    pub title: Option<String>,
    /// A new due date (same formats as `add_task`). Omit or null to keep the current due date; to remove it, use
    /// `clear_due_date: true` instead.
    #[serde(default)]
    pub due_date: Option<String>,
    /// `true` removes the due date (and cancels its reminder). Cannot be combined with `due_date`.
    #[serde(default)]
    pub clear_due_date: Option<bool>,
}

/// Arguments of the tools that act on one task (`complete_task`, `uncomplete_task`, `delete_task`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct TaskIdInput {
    /// The id (UUID) of the task, as returned by `add_task` or `list_tasks`.
    pub task_id: String,
}

/// A task as the tools return it (the REST API's task JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct TaskView {
    /// The task id (UUID).
    pub id: String,
    /// The title.
    pub title: String,
    /// Whether the task is done.
    pub completed: bool,
    /// When the task is due (RFC 3339, UTC), or null.
    pub due_date: Option<String>,
    /// When the task was created (RFC 3339, UTC).
    pub created_at: String,
    /// When the task last changed (RFC 3339, UTC).
    pub updated_at: String,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        let rest = TaskResponse::from(task);
        Self {
            id: rest.id.to_string(),
            title: rest.title,
            completed: rest.completed,
            due_date: rest.due_date,
            created_at: rest.created_at,
            updated_at: rest.updated_at,
        }
    }
}

/// `list_tasks` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct TaskList {
    /// The filter applied: `all`, `completed` or `incomplete`.
    pub filter: String,
    /// How many tasks were returned.
    pub count: usize,
    /// The tasks, newest first.
    pub tasks: Vec<TaskView>,
}

/// `delete_task` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct DeletedTask {
    /// `Task deleted successfully`.
    pub message: String,
    /// The task as it was before it was deleted.
    pub task: TaskView,
}

/// `clear_completed` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ClearedTasks {
    /// How many completed tasks were deleted (0 when there were none).
    pub deleted_count: usize,
    /// The deleted tasks, as they were.
    pub deleted: Vec<TaskView>,
}

/// A tool failure shown to the caller: the API error's code and message, with field details.
#[derive(Debug)]
pub struct ToolError {
    code: &'static str,
    message: String,
    details: Vec<(String, String)>,
}

impl ToolError {
    /// The envelope code (`VALIDATION_ERROR`, `NOT_FOUND`, `AUTHORIZATION_ERROR`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message without the code.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The text item of the error result: `CODE: message` plus any field details the message does not repeat.
    pub fn text(&self) -> String {
        let mut text = format!("{}: {}", self.code, self.message);
        for (field, message) in &self.details {
            if *message != self.message || self.details.len() > 1 {
                text.push_str(&format!("; {field}: {message}"));
            }
        }
        text
    }

    /// A validation error about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::field(field, message).into()
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::error::Error for ToolError {}

impl From<ApiError> for ToolError {
    fn from(err: ApiError) -> Self {
        let envelope = err.envelope();
        Self {
            code: envelope.error.code,
            message: envelope.error.message,
            details: envelope
                .error
                .details
                .into_iter()
                .map(|d| (d.field, d.message))
                .collect(),
        }
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.text())]).into())
    }
}

/// Parses a `task_id` argument; the same message as the REST API's malformed path id.
pub fn parse_task_id(raw: &str) -> Result<TaskId, ToolError> {
    Uuid::parse_str(raw.trim())
        .map(TaskId::from_uuid)
        .map_err(|_| ToolError::invalid("task_id", "Invalid task id: expected a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_errors_carry_code_message_and_new_details() {
        let err = ToolError::from(ApiError::NotFound("Task not found".to_owned()));
        assert_eq!(err.text(), "NOT_FOUND: Task not found");
        assert_eq!(
            ToolError::from(ApiError::Authorization).text(),
            "AUTHORIZATION_ERROR: Access denied"
        );
        let err = ToolError::from(ApiError::Validation {
            message: "Request validation failed".to_owned(),
            details: vec![
                crate::error::FieldError::new("title", "Title must not be empty"),
                crate::error::FieldError::new("due_date", "due_date must be an RFC 3339 date-time"),
            ],
        });
        assert_eq!(
            err.text(),
            "VALIDATION_ERROR: Request validation failed; title: Title must not be empty; due_date: due_date must \
             be an RFC 3339 date-time"
        );
        let internal = ToolError::from(ApiError::internal("secret dsn"));
        assert_eq!(
            internal.text(),
            "INTERNAL_ERROR: An internal error occurred"
        );
    }

    #[test]
    fn task_ids_must_be_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(parse_task_id(&id.to_string()).unwrap().into_uuid(), id);
        let err = parse_task_id("42").unwrap_err();
        assert_eq!(err.code(), "VALIDATION_ERROR");
        assert_eq!(err.message(), "Invalid task id: expected a UUID");
    }

    #[test]
    fn filters_map_to_the_completed_flag() {
        assert_eq!(TaskFilter::default().completed(), None);
        assert_eq!(TaskFilter::Completed.completed(), Some(true));
        assert_eq!(TaskFilter::Incomplete.completed(), Some(false));
        let input: ListTasksInput =
            serde_json::from_value(serde_json::json!({"filter": "incomplete"})).unwrap();
        assert_eq!(input.filter, Some(TaskFilter::Incomplete));
        assert!(
            serde_json::from_value::<ListTasksInput>(serde_json::json!({"filter": "done"}))
                .is_err()
        );
    }
}
