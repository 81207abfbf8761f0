//! [`RequestContext`]: what every part of one request shares — the HTTP handlers and the MCP tools that serve it, the
//! service that runs it and every event it causes. A leaf: it knows neither HTTP nor events, so every layer can
//! use it (the middleware fills it in from the request's headers, `events` reads it when building an event).

use slog::{Logger, o};
use uuid::Uuid;

/// The correlation of one request (or MCP tool call), and its logger.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The correlation id (SPEC §3.3), on every log line and event of the request.
    pub correlation_id: Uuid,
    /// The incoming W3C `traceparent`, when valid; forwarded to the sidecar with the request's events.
    pub traceparent: Option<String>,
    /// The request's child logger, carrying `correlation_id`.
    pub log: Logger,
}

impl RequestContext {
    /// The context of a request correlated by `correlation_id`, logging through a child of `root` that carries it.
    pub fn new(correlation_id: Uuid, traceparent: Option<String>, root: &Logger) -> Self {
        Self {
            correlation_id,
            traceparent,
            log: root.new(o!("correlation_id" => correlation_id.to_string())),
        }
    }

    /// A context for work that does not come from an HTTP request (tests, tools, the MCP stdio server): a fresh
    /// correlation id and no trace.
    pub fn detached(root: &Logger) -> Self {
        Self::new(Uuid::new_v4(), None, root)
    }
}
