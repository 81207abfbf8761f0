//! Route handlers and the route table.

pub mod auth;
pub mod health;
pub mod tasks;

use actix_web::{HttpRequest, web};

use crate::error::ApiError;

/// Mounts every route: `/api/v1/...`, the health and metrics routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/health", web::get().to(health::health))
            .service(
                web::scope("/auth")
                    .service(
                        web::resource("/register")
                            .route(web::post().to(auth::register))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/login")
                            .route(web::post().to(auth::login))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/logout")
                            .route(web::post().to(auth::logout))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/me")
                            .route(web::get().to(auth::me))
                            .default_service(web::to(method_not_allowed)),
                    ),
            )
            .service(
                web::scope("/tasks")
                    .service(
                        web::resource("")
                            .route(web::get().to(tasks::list_tasks))
                            .route(web::post().to(tasks::create_task))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/{task_id}")
                            .route(web::get().to(tasks::get_task))
                            .route(web::patch().to(tasks::update_task))
                            .route(web::delete().to(tasks::delete_task))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/{task_id}/complete")
                            .route(web::post().to(tasks::complete_task))
                            .default_service(web::to(method_not_allowed)),
                    )
                    .service(
                        web::resource("/{task_id}/uncomplete")
                            .route(web::post().to(tasks::uncomplete_task))
                            .default_service(web::to(method_not_allowed)),
                    ),
            ),
    )
    .route("/", web::get().to(health::root))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics));
}

/// 405 with the envelope for a known path and an unsupported method.
pub async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// 404 with the envelope for any unknown route.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}
