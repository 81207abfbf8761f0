//! The OpenAPI document (utoipa), served at `/api/v1/openapi.json` with Swagger UI at `/docs/`.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    CreateTaskRequest, Credentials, HealthResponse, MessageResponse, TaskListResponse,
    TaskResponse, UpdateTaskRequest, UserResponse,
};
use crate::error::{ErrorBody, ErrorEnvelope, FieldError};
use crate::routes::{auth, health, tasks};

/// The path of the OpenAPI JSON document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE_NAME))),
        );
    }
}

/// Adds the answers every operation of a kind can give, so the document lists every status a route returns (a
/// client generated from it, or a fuzzer checking it, meets no undocumented status): 413/415/422 where a JSON body
/// is read, 422 for a malformed path id, 401 where a token is needed, 429 where a rate limit applies, 503 where the
/// database is used, and 500 everywhere under `/api/v1`. Each route's own annotations keep their specific answers.
struct CommonResponses;

impl CommonResponses {
    fn add(operation: &mut Operation, status: &str, description: &str) {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                                .build(),
                        )
                        .build(),
                )
            });
    }

    fn apply(path: &str, operation: &mut Operation) {
        let limited_auth = [
            "/api/v1/auth/register",
            "/api/v1/auth/login",
            "/api/v1/auth/logout",
        ];
        let uses_database = path.starts_with("/api/v1/tasks")
            || [
                "/api/v1/auth/register",
                "/api/v1/auth/login",
                "/api/v1/auth/me",
                "/readyz",
            ]
            .contains(&path);
        if operation.request_body.is_some() {
            Self::add(operation, "413", "Body too large");
            Self::add(
                operation,
                "415",
                "Body without Content-Type: application/json",
            );
            Self::add(operation, "422", "Malformed JSON or invalid fields");
        }
        if path.contains("{task_id}") {
            Self::add(operation, "422", "Malformed task id");
        }
        if path == "/api/v1/tasks" {
            Self::add(operation, "422", "Invalid query or body");
        }
        if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
            Self::add(operation, "401", "Not authenticated");
        }
        if path.starts_with("/api/v1/tasks") || limited_auth.contains(&path) {
            Self::add(operation, "429", "Too many requests (see Retry-After)");
        }
        if uses_database {
            Self::add(operation, "503", "The database is unavailable");
        }
        if path.starts_with("/api/v1/") {
            Self::add(
                operation,
                "500",
                "Internal error (nothing internal is shown)",
            );
        }
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                Self::apply(path, operation);
            }
        }
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "pakaura task API", description = "Tasks with CloudEvents publishing through Dapr"),
    paths(
        auth::register, auth::login, auth::logout, auth::me,
        tasks::create_task, tasks::list_tasks, tasks::get_task, tasks::update_task, tasks::delete_task,
        tasks::complete_task, tasks::uncomplete_task,
        health::health, health::root, health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(
        Credentials, UserResponse, MessageResponse, CreateTaskRequest, UpdateTaskRequest, TaskResponse,
        TaskListResponse, HealthResponse, health::RootResponse, ErrorEnvelope, ErrorBody, FieldError,
    )),
    modifiers(&SecuritySchemes, &CommonResponses),
    tags((name = "auth"), (name = "tasks"), (name = "health")),
)]
pub struct ApiDoc;
