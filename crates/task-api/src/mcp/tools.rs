//! [`TaskTools`]: the seven task tools (`add_task`, `list_tasks`, `update_task`, `complete_task`,
//! `uncomplete_task`, `delete_task`, `clear_completed`) on top of [`TaskService`], and how a call finds its
//! [`Caller`] (user, service, correlation).

use std::sync::Arc;

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use slog::{Logger, error, info, warn};
use task_domain::{TaskPatch, UserId};

use crate::context::RequestContext;
use crate::dto::{parse_create, parse_update};
use crate::error::{ApiError, ErrorChain};
use crate::mcp::SERVER_NAME;
use crate::mcp::types::{
    AddTaskInput, ClearedTasks, DeletedTask, ListTasksInput, TaskIdInput, TaskList, TaskView,
    ToolError, UpdateTaskInput, parse_task_id,
};
use crate::service::TaskService;

/// Who calls a tool, and with which correlation: what every tool needs to call [`TaskService`].
///
/// Over HTTP the `/mcp` middleware builds it from the token and the request's correlation headers and hands it
/// to the tools through rmcp's request extensions; over stdio it is the process's user with a fresh correlation
/// id per call.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The task operations.
    pub tasks: TaskService,
    /// The authenticated user.
    pub user: UserId,
    /// The correlation id, `traceparent` and logger of this call.
    pub ctx: RequestContext,
}

/// How the tools find their caller.
#[derive(Debug, Clone)]
enum Source {
    /// From the HTTP request (the `/mcp` middleware put a [`Caller`] in its extensions).
    Http,
    /// One fixed user for the whole process (stdio).
    Fixed(Arc<FixedUser>),
}

/// The user of a stdio server.
#[derive(Debug)]
struct FixedUser {
    /// The task operations.
    tasks: TaskService,
    /// The user given with `--user-id`.
    user: UserId,
    /// The root logger; each call gets a child with its own correlation id.
    log: Logger,
}

/// The MCP server of the task tools.
#[derive(Debug, Clone)]
pub struct TaskTools {
    source: Source,
}

const INSTRUCTIONS: &str = "Manage the authenticated user's to-do list. Tasks have an id (UUID), a title, a \
    completed flag and an optional due date. Use list_tasks to find task ids, add_task to create, update_task to \
    rename or change the due date, complete_task / uncomplete_task to mark done or not done, delete_task to remove \
    one task and clear_completed to remove every completed task. Dates are RFC 3339 (UTC unless an offset is \
    given). Every change is published as an event to downstream services.";

impl TaskTools {
    /// Tools for HTTP requests: each call reads its [`Caller`] from the request the `/mcp` middleware
    /// authenticated.
    pub fn http() -> Self {
        Self {
            source: Source::Http,
        }
    }

    /// Tools that act for one user (stdio).
    pub fn for_user(tasks: TaskService, user: UserId, log: &Logger) -> Self {
        Self {
            source: Source::Fixed(Arc::new(FixedUser {
                tasks,
                user,
                log: log.clone(),
            })),
        }
    }

    /// The caller of one tool call.
    fn caller(&self, extensions: &Extensions) -> Result<Caller, ToolError> {
        match &self.source {
            Source::Fixed(fixed) => {
                let ctx = RequestContext::detached(&fixed.log);
                Ok(Caller {
                    tasks: fixed.tasks.clone(),
                    user: fixed.user,
                    ctx,
                })
            }
            Source::Http => rmcp_actix_web::transport::on_request_extensions(extensions)
                .and_then(|found| found.get::<Caller>())
                .cloned()
                .ok_or_else(|| ApiError::Authentication("Not authenticated".to_owned()).into()),
        }
    }
}

/// Logs the outcome of a tool call once and turns a failure into a tool error. The MCP edge of the service layer:
/// a `ServiceError` becomes the API's error (code and message, as the REST API answers), and that the tool error.
fn finish<T>(
    caller: &Caller,
    tool: &'static str,
    res: Result<T, ApiError>,
) -> Result<Json<T>, ToolError> {
    let log = &caller.ctx.log;
    let user_id = caller.user.to_string();
    match res {
        Ok(value) => {
            info!(log, "mcp tool {tool} succeeded"; "tool" => tool, "user_id" => &user_id);
            Ok(Json(value))
        }
        Err(err) => {
            let chain = ErrorChain(&err).to_string();
            match &err {
                ApiError::Internal(_) => {
                    error!(log, "mcp tool {tool} failed"; "tool" => tool, "user_id" => &user_id,
                        "code" => err.code(), "error" => chain);
                }
                ApiError::Unavailable(_) => {
                    warn!(log, "mcp tool {tool} failed"; "tool" => tool, "user_id" => &user_id,
                        "code" => err.code(), "error" => chain);
                }
                _ => {
                    info!(log, "mcp tool {tool} rejected"; "tool" => tool, "user_id" => &user_id,
                        "code" => err.code(), "error" => chain);
                }
            }
            Err(err.into())
        }
    }
}

/// Drops absent (`None`) entries so the body reads like a REST request that omitted them.
fn body(fields: &[(&str, Option<Value>)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|(name, value)| Some(((*name).to_owned(), value.clone()?)))
            .collect(),
    )
}

#[tool_router]
impl TaskTools {
    /// `add_task`.
    #[tool(
        description = "Create a task for the user. `title` is required (1-500 characters after trimming); \
            `due_date` is optional (RFC 3339 date-time such as 2030-01-31T17:00:00Z, or a date 2030-01-31 meaning \
            midnight UTC). Returns the new task with its id.",
        annotations(
            title = "Add a task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn add_task(
        &self,
        Parameters(input): Parameters<AddTaskInput>,
        extensions: Extensions,
    ) -> Result<Json<TaskView>, ToolError> {
        let caller = self.caller(&extensions)?;
        let res = async {
            let parsed = parse_create(body(&[
                ("title", Some(json!(input.title))),
                ("due_date", input.due_date.map(Value::String)),
            ]))?;
            let task = caller
                .tasks
                .create(caller.user, parsed, &caller.ctx)
                .await?;
            Ok(TaskView::from(&task))
        }
        .await;
        finish(&caller, "add_task", res)
    }

    /// `list_tasks`.
    #[tool(
        description = "List the user's tasks, newest first. `filter` is `all` (default), `completed` or \
            `incomplete`. Returns the tasks with their ids, titles, completion state and due dates.",
        annotations(title = "List tasks", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tasks(
        &self,
        Parameters(input): Parameters<ListTasksInput>,
        extensions: Extensions,
    ) -> Result<Json<TaskList>, ToolError> {
        let caller = self.caller(&extensions)?;
        let filter = input.filter.unwrap_or_default();
        let res = async {
            let tasks = caller.tasks.list(caller.user, filter.completed()).await?;
            let tasks: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
            Ok(TaskList {
                filter: filter.as_str().to_owned(),
                count: tasks.len(),
                tasks,
            })
        }
        .await;
        finish(&caller, "list_tasks", res)
    }

    /// `update_task`.
    #[tool(
        description = "Change a task's title and/or due date. Give `task_id` and only the fields to change: \
            `title` (1-500 characters), `due_date` (RFC 3339 date-time or a date), or `clear_due_date: true` to \
            remove the due date. Omitted or null fields keep their value. To mark a task done use complete_task. \
            Returns the updated task.",
        annotations(
            title = "Update a task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_task(
        &self,
        Parameters(input): Parameters<UpdateTaskInput>,
        extensions: Extensions,
    ) -> Result<Json<TaskView>, ToolError> {
        let caller = self.caller(&extensions)?;
        let task_id = parse_task_id(&input.task_id)?;
        let clear = input.clear_due_date.unwrap_or(false);
        if clear && input.due_date.is_some() {
            return Err(ToolError::invalid(
                "due_date",
                "Give either due_date or clear_due_date: true, not both",
            ));
        }
        let res = async {
            let due_date = if clear {
                Some(Value::Null)
            } else {
                input.due_date.map(Value::String)
            };
            let patch: TaskPatch = parse_update(body(&[
                ("title", input.title.map(Value::String)),
                ("due_date", due_date),
            ]))?;
            let task = caller
                .tasks
                .update(caller.user, task_id, patch, &caller.ctx)
                .await?;
            Ok(TaskView::from(&task))
        }
        .await;
        finish(&caller, "update_task", res)
    }

    /// `complete_task`.
    #[tool(
        description = "Mark a task as done. Completing a task that is already done changes nothing. Returns the \
            task.",
        annotations(
            title = "Complete a task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn complete_task(
        &self,
        Parameters(input): Parameters<TaskIdInput>,
        extensions: Extensions,
    ) -> Result<Json<TaskView>, ToolError> {
        let caller = self.caller(&extensions)?;
        let task_id = parse_task_id(&input.task_id)?;
        let res = caller
            .tasks
            .complete(caller.user, task_id, &caller.ctx)
            .await
            .map_err(ApiError::from)
            .map(|task| TaskView::from(&task));
        finish(&caller, "complete_task", res)
    }

    /// `uncomplete_task`.
    #[tool(
        description = "Mark a task as not done (reopen it). Reopening a task that is not done changes nothing. \
            Returns the task.",
        annotations(
            title = "Reopen a task",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn uncomplete_task(
        &self,
        Parameters(input): Parameters<TaskIdInput>,
        extensions: Extensions,
    ) -> Result<Json<TaskView>, ToolError> {
        let caller = self.caller(&extensions)?;
        let task_id = parse_task_id(&input.task_id)?;
        let res = caller
            .tasks
            .uncomplete(caller.user, task_id, &caller.ctx)
            .await
            .map_err(ApiError::from)
            .map(|task| TaskView::from(&task));
        finish(&caller, "uncomplete_task", res)
    }

    /// `delete_task`.
    #[tool(
        description = "Delete one task permanently (its reminder, if any, is cancelled). Returns the deleted task.",
        annotations(
            title = "Delete a task",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn delete_task(
        &self,
        Parameters(input): Parameters<TaskIdInput>,
        extensions: Extensions,
    ) -> Result<Json<DeletedTask>, ToolError> {
        let caller = self.caller(&extensions)?;
        let task_id = parse_task_id(&input.task_id)?;
        let res = caller
            .tasks
            .delete(caller.user, task_id, &caller.ctx)
            .await
            .map_err(ApiError::from)
            .map(|task| DeletedTask {
                message: "Task deleted successfully".to_owned(),
                task: TaskView::from(&task),
            });
        finish(&caller, "delete_task", res)
    }

    /// `clear_completed`.
    #[tool(
        description = "Delete every completed task of the user permanently. Returns how many were deleted and \
            which; deleting nothing is not an error.",
        annotations(
            title = "Clear completed tasks",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn clear_completed(
        &self,
        extensions: Extensions,
    ) -> Result<Json<ClearedTasks>, ToolError> {
        let caller = self.caller(&extensions)?;
        let res = caller
            .tasks
            .clear_completed(caller.user, &caller.ctx)
            .await
            .map_err(ApiError::from)
            .map(|removed| {
                let deleted: Vec<TaskView> = removed.iter().map(TaskView::from).collect();
                ClearedTasks {
                    deleted_count: deleted.len(),
                    deleted,
                }
            });
        finish(&caller, "clear_completed", res)
    }
}

#[tool_handler]
impl ServerHandler for TaskTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                    .with_title("pakaura tasks"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}
