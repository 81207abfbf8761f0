//! Route handlers and the route table.

pub mod auth;
pub mod health;
pub mod tasks;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, Route, web};

use crate::error::ApiError;
use crate::service::ServiceError;
use crate::state::AppState;

/// The HTTP edge of the service layer: a failed task operation as the answer the API has always given.
impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound => ApiError::NotFound("Task not found".to_owned()),
            ServiceError::NotOwner => ApiError::Authorization,
            ServiceError::Store(store) => store.into(),
            ServiceError::NotReady(task_store::StoreError::Unavailable(source)) => {
                ApiError::Unavailable(source)
            }
            ServiceError::NotReady(other) => ApiError::Unavailable(Box::new(other)),
            err @ (ServiceError::Events(_) | ServiceError::OutboxRow(_)) => ApiError::internal(err),
        }
    }
}

/// A resource answering `routes`, and 405 with `Allow: <allow>` and the envelope for any other method.
fn resource(
    path: &str,
    allow: &'static str,
    routes: impl IntoIterator<Item = Route>,
) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(web::resource(path), actix_web::Resource::route)
        .default_service(web::to(move || method_not_allowed(allow)))
}

/// Mounts every route: `/api/v1/...`, the health and metrics routes. Each rate-limited scope has one middleware
/// (`rate_limit::RateLimit`, built by `AppState`): register, login and logout per client address (an inner scope
/// of `/auth` that leaves `/me` out), the task scope per user.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.service(
        web::scope("/api/v1")
            .service(resource("/health", "GET", [web::get().to(health::health)]))
            .service(
                web::scope("/auth")
                    .service(resource("/me", "GET", [web::get().to(auth::me)]))
                    .service(
                        web::scope("")
                            .wrap(state.limit_per_client_address())
                            .service(resource(
                                "/register",
                                "POST",
                                [web::post().to(auth::register)],
                            ))
                            .service(resource("/login", "POST", [web::post().to(auth::login)]))
                            .service(resource("/logout", "POST", [web::post().to(auth::logout)])),
                    ),
            )
            .service(
                web::scope("/tasks")
                    .wrap(state.limit_per_user())
                    .service(resource(
                        "",
                        "GET, POST",
                        [
                            web::get().to(tasks::list_tasks),
                            web::post().to(tasks::create_task),
                        ],
                    ))
                    .service(resource(
                        "/{task_id}",
                        "GET, PATCH, DELETE",
                        [
                            web::get().to(tasks::get_task),
                            web::patch().to(tasks::update_task),
                            web::delete().to(tasks::delete_task),
                        ],
                    ))
                    .service(resource(
                        "/{task_id}/complete",
                        "POST",
                        [web::post().to(tasks::complete_task)],
                    ))
                    .service(resource(
                        "/{task_id}/uncomplete",
                        "POST",
                        [web::post().to(tasks::uncomplete_task)],
                    )),
            ),
    )
    .service(resource("/", "GET", [web::get().to(health::root)]))
    .service(resource(
        "/healthz",
        "GET",
        [web::get().to(health::healthz)],
    ))
    .service(resource("/readyz", "GET", [web::get().to(health::readyz)]))
    .service(resource(
        "/metrics",
        "GET",
        [web::get().to(health::metrics)],
    ));
}

/// 405 with the envelope and the `Allow` header (RFC 9110 §15.5.6) for a known path and an unsupported method.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// 404 with the envelope for any unknown route.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}
