//! `/api/v1/tasks/*`: create, list, get, patch, delete, complete, uncomplete. Thin: parse, call `TaskService`,
//! answer.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::Value;
use task_domain::{TaskId, UserId};
use uuid::Uuid;

use crate::auth::authenticate;
use crate::context::RequestContext;
use crate::dto::{
    MessageResponse, TaskListResponse, TaskResponse, parse_completed_filter, parse_create,
    parse_update,
};
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated user of a task route (the per-user rate limit is the scope's middleware,
/// [`crate::state::AppState::limit_per_user`]).
#[derive(Debug, Clone, Copy)]
pub struct TaskUser(pub UserId);

impl FromRequest for TaskUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = authenticate(&req).await?;
            Ok(TaskUser(UserId::from_uuid(user.id)))
        })
    }
}

/// The query of `GET /tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `true` for completed tasks only, `false` for open ones only (also `1`/`0`, `yes`/`no`, `on`/`off`, any
    /// case); empty or absent for all.
    #[param(
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff])?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub completed: Option<String>,
}

/// Creates a task.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = crate::dto::CreateTaskRequest,
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TaskResponse),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorEnvelope),
        (status = 422, description = "Invalid body", body = crate::error::ErrorEnvelope)))]
pub async fn create_task(
    state: web::Data<AppState>,
    user: TaskUser,
    ctx: RequestContext,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let input = parse_create(body.into_inner())?;
    let task = state.tasks.create(user.0, input, &ctx).await?;
    Ok(HttpResponse::Created().json(TaskResponse::from(&task)))
}

/// Lists the user's tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The tasks", body = TaskListResponse),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorEnvelope)))]
pub async fn list_tasks(
    state: web::Data<AppState>,
    user: TaskUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let completed = parse_completed_filter(query.completed.as_deref())?;
    let tasks = state.tasks.list(user.0, completed).await?;
    let tasks: Vec<TaskResponse> = tasks.iter().map(TaskResponse::from).collect();
    Ok(HttpResponse::Ok().json(TaskListResponse {
        count: tasks.len(),
        tasks,
    }))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = Uuid, Path)),
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskResponse),
        (status = 403, description = "Another user's task", body = crate::error::ErrorEnvelope),
        (status = 404, description = "Unknown task", body = crate::error::ErrorEnvelope),
        (status = 422, description = "Malformed id", body = crate::error::ErrorEnvelope)))]
pub async fn get_task(
    state: web::Data<AppState>,
    user: TaskUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let task = state
        .tasks
        .get(user.0, TaskId::from_uuid(path.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

/// Changes title, completion and/or due date.
#[utoipa::path(patch, path = "/api/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = Uuid, Path)),
    request_body = crate::dto::UpdateTaskRequest, security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The updated task", body = TaskResponse),
        (status = 403, description = "Another user's task", body = crate::error::ErrorEnvelope),
        (status = 404, description = "Unknown task", body = crate::error::ErrorEnvelope),
        (status = 422, description = "Invalid body or id", body = crate::error::ErrorEnvelope)))]
pub async fn update_task(
    state: web::Data<AppState>,
    user: TaskUser,
    ctx: RequestContext,
    path: web::Path<Uuid>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let patch = parse_update(body.into_inner())?;
    let task = state
        .tasks
        .update(user.0, TaskId::from_uuid(path.into_inner()), patch, &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

/// Deletes a task.
#[utoipa::path(delete, path = "/api/v1/tasks/{task_id}", tag = "tasks", params(("task_id" = Uuid, Path)),
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse),
        (status = 403, description = "Another user's task", body = crate::error::ErrorEnvelope),
        (status = 404, description = "Unknown task", body = crate::error::ErrorEnvelope)))]
pub async fn delete_task(
    state: web::Data<AppState>,
    user: TaskUser,
    ctx: RequestContext,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .tasks
        .delete(user.0, TaskId::from_uuid(path.into_inner()), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(MessageResponse {
        message: "Task deleted successfully".to_owned(),
    }))
}

/// Marks a task done.
#[utoipa::path(post, path = "/api/v1/tasks/{task_id}/complete", tag = "tasks", params(("task_id" = Uuid, Path)),
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskResponse),
        (status = 403, description = "Another user's task", body = crate::error::ErrorEnvelope),
        (status = 404, description = "Unknown task", body = crate::error::ErrorEnvelope)))]
pub async fn complete_task(
    state: web::Data<AppState>,
    user: TaskUser,
    ctx: RequestContext,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let task = state
        .tasks
        .complete(user.0, TaskId::from_uuid(path.into_inner()), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}

/// Marks a task not done.
#[utoipa::path(post, path = "/api/v1/tasks/{task_id}/uncomplete", tag = "tasks", params(("task_id" = Uuid, Path)),
    security(("cookie" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The task", body = TaskResponse),
        (status = 403, description = "Another user's task", body = crate::error::ErrorEnvelope),
        (status = 404, description = "Unknown task", body = crate::error::ErrorEnvelope)))]
pub async fn uncomplete_task(
    state: web::Data<AppState>,
    user: TaskUser,
    ctx: RequestContext,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let task = state
        .tasks
        .uncomplete(user.0, TaskId::from_uuid(path.into_inner()), &ctx)
        .await?;
    Ok(HttpResponse::Ok().json(TaskResponse::from(&task)))
}
