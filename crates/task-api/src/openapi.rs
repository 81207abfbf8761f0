//! The OpenAPI document (utoipa), served at `/api/v1/openapi.json` with Swagger UI at `/docs/`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    modifiers(&SecuritySchemes),
    tags((name = "auth"), (name = "tasks"), (name = "health")),
)]
pub struct ApiDoc;
