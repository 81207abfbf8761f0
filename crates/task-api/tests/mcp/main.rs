//! The MCP server tests: rmcp's own Streamable HTTP client against the service on a real port (SQLite, in-memory
//! publisher): the seven tools, their results and events (compared with what REST publishes), isolation between
//! users, tool errors, authentication and the transport settings.

mod support;

mod tools;
mod transport;
