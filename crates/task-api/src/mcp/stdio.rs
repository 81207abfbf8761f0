//! `task-api mcp-stdio --user-id UUID`: the task tools over stdin/stdout for one local user, on the same database
//! and event delivery as `serve`. Stdout carries only the protocol; the binary sends its logs to stderr.

use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;
use slog::{Logger, info, o};
use task_domain::UserId;
use task_store::StoreError;

use crate::mcp::tools::TaskTools;
use crate::startup::{BuiltService, ServiceConfig, StartupError};

/// Why the stdio server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The service (database, event delivery) could not be built.
    #[error("cannot start the service")]
    Startup(#[from] StartupError),
    /// The database could not be asked for the user.
    #[error("cannot look up user {user_id}")]
    UserLookup {
        /// The `--user-id`.
        user_id: UserId,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// No registered user has this id.
    #[error(
        "no user with id {0}: register the user first (POST /api/v1/auth/register) and pass its id"
    )]
    UnknownUser(UserId),
    /// The MCP handshake over stdio failed (the client closed stdin early or sent something else).
    #[error("the mcp session over stdio could not start")]
    Handshake(#[source] Box<ServerInitializeError>),
    /// The MCP session task failed.
    #[error("the mcp session over stdio failed")]
    Session(#[source] tokio::task::JoinError),
}

/// Serves the task tools for `user` over stdin/stdout until the client closes stdin, then delivers the queued
/// events within the shutdown deadline.
pub async fn serve_stdio(
    config: &ServiceConfig,
    user: UserId,
    log: &Logger,
) -> Result<(), StdioError> {
    let log = log.new(o!("transport" => "mcp-stdio", "user_id" => user.to_string()));
    let BuiltService { state, background } = crate::startup::build(config, &log).await?;
    let found = state.store.find_user(user).await;
    let ready = match found {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(StdioError::UnknownUser(user)),
        Err(source) => Err(StdioError::UserLookup {
            user_id: user,
            source,
        }),
    };
    let res = match ready {
        Ok(()) => run(TaskTools::for_user(state.tasks.clone(), user, &log), &log).await,
        Err(err) => Err(err),
    };
    BuiltService { state, background }
        .shutdown(config.shutdown_timeout)
        .await;
    info!(log, "mcp stdio server stopped");
    res
}

async fn run(tools: TaskTools, log: &Logger) -> Result<(), StdioError> {
    info!(log, "mcp stdio server ready; reading JSON-RPC from stdin");
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|err| StdioError::Handshake(Box::new(err)))?;
    let reason = running.waiting().await.map_err(StdioError::Session)?;
    info!(log, "mcp stdio session ended"; "reason" => ?reason);
    Ok(())
}
