//! The `/mcp` scope: MCP Streamable HTTP on the REST server's port. The task routes' per-user rate limit (the same
//! middleware and limiter as `/api/v1/tasks`) and then a middleware that authenticates the request with the REST
//! API's JWT (bearer header or `auth_token` cookie) run *before* the MCP layer, answering 429/401 with the API's
//! error envelope; then rmcp-actix-web serves the request statelessly.
//!
//! Stateless: every POST is served on its own (no `Mcp-Session-Id`, no server-held session), so any replica can
//! answer any request; `GET` and `DELETE` answer 405. JSON responses are preferred over SSE for plain
//! request/response calls. The `Host` allow-list of rmcp (loopback only by default, a DNS-rebinding defence for
//! unauthenticated local servers) is turned off: every request here carries a token checked first, and a
//! deployment is reached under its own host names. Restrict hosts at the ingress if wanted.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpMessage, web};
use rmcp_actix_web::transport::{LocalSessionManager, StreamableHttpService};
use task_domain::UserId;

use crate::auth::authenticate;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::mcp::tools::{Caller, TaskTools};
use crate::state::AppState;

/// Where the MCP endpoint is mounted.
pub const MCP_PATH: &str = "/mcp";

/// The largest accepted MCP request body, in bytes (tool arguments are small).
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

/// Mounts `/mcp` (call it from the app's route configuration).
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    let service = StreamableHttpService::builder()
        .service_factory(Arc::new(|| Ok(TaskTools::http())))
        .session_manager(Arc::new(LocalSessionManager::default()))
        .stateful_mode(false)
        .json_response(true)
        .allowed_hosts(Vec::new())
        .max_request_body_bytes(MAX_REQUEST_BODY_BYTES)
        .on_request_fn(|req, extensions| {
            if let Some(caller) = req.extensions().get::<Caller>() {
                extensions.insert(caller.clone());
            }
        })
        .build();
    cfg.service(
        web::scope(MCP_PATH)
            .wrap(from_fn(authenticate_mcp))
            // Outermost: limited before the user lookup, as the task routes are.
            .wrap(state.limit_per_user())
            .service(service.scope()),
    );
}

/// Authenticates an `/mcp` request and stores its [`Caller`] for the tools; the 401 envelope otherwise.
async fn authenticate_mcp(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match caller_of(&req).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        // Rendered as the API's envelope; the error stays attached for the access log.
        Err(err) => Ok(req.error_response(err)),
    }
}

async fn caller_of(req: &ServiceRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state is not configured"))?;
    let user = authenticate(req.request()).await?;
    let ctx = req
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .unwrap_or_else(|| RequestContext::detached(&state.log));
    Ok(Caller {
        tasks: state.tasks.clone(),
        user: UserId::from_uuid(user.id),
        ctx,
    })
}
