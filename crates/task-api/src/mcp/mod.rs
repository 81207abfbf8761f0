//! The MCP server: the task operations as Model Context Protocol tools for AI agents, over Streamable HTTP at
//! `/mcp` (same server, port and JWT as the REST API) and over stdio (`task-api mcp-stdio --user-id UUID`).
//!
//! The tools call [`crate::service::TaskService`], the layer the REST routes use, so validation, transactions,
//! events, partition keys and correlation are the REST API's. The user is always the caller's: the token's `sub`
//! over HTTP, the `--user-id` of the process over stdio; it is never a tool argument.
//!
//! - [`tools`]: the tool router ([`TaskTools`]) and how a call finds its user and correlation id.
//! - [`types`]: tool inputs and outputs (with their JSON schemas) and [`ToolError`].
//! - [`http`]: the `/mcp` scope: authentication before the MCP layer, then rmcp-actix-web in stateless mode.
//! - [`stdio`]: [`serve_stdio`], the stdio entry point of the binary.

pub mod http;
pub mod stdio;
pub mod tools;
pub mod types;

pub use task_domain::UserId;

pub use crate::mcp::http::{MCP_PATH, configure};
pub use crate::mcp::stdio::{StdioError, serve_stdio};
pub use crate::mcp::tools::{Caller, TaskTools};
pub use crate::mcp::types::ToolError;

/// The name the server announces to MCP clients.
pub const SERVER_NAME: &str = "pakaura-tasks";

/// Parses the `--user-id` of `task-api mcp-stdio` (for clap's `value_parser`).
pub fn parse_user_id(raw: &str) -> Result<UserId, String> {
    uuid::Uuid::parse_str(raw.trim())
        .map(UserId::from_uuid)
        .map_err(|_| format!("`{raw}` is not a UUID (expected the id of a registered user)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_be_uuids() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(parse_user_id(&format!(" {id} ")).unwrap().into_uuid(), id);
        assert!(parse_user_id("me").unwrap_err().contains("not a UUID"));
    }
}
