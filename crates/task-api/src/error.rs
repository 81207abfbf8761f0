//! The error envelope `{"error":{"code","message","details"}}` and the handlers that turn every failure into it.

use std::error::Error as StdError;

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use task_store::StoreError;

/// A boxed error kept as the source of [`ApiError::Internal`] and [`ApiError::Unavailable`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// One entry of the envelope's `details` list: which input field was wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The input field, for example `title` or `task_id`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A detail for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    /// The error itself.
    pub error: ErrorBody,
}

/// The `error` object of [`ErrorEnvelope`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code such as `VALIDATION_ERROR`.
    pub code: &'static str,
    /// A human-readable message that never carries internal detail.
    pub message: String,
    /// Field-level details; empty when the error is not about one field.
    pub details: Vec<FieldError>,
}

/// Every way a request can fail; each maps to one status code and envelope `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input (422 `VALIDATION_ERROR`).
    #[error("{message}")]
    Validation {
        /// The summary message.
        message: String,
        /// The fields at fault.
        details: Vec<FieldError>,
    },
    /// Missing, invalid or expired credentials (401 `AUTHENTICATION_ERROR`).
    #[error("{0}")]
    Authentication(String),
    /// The caller may not touch this resource (403 `AUTHORIZATION_ERROR`).
    #[error("access denied")]
    Authorization,
    /// The resource does not exist (404 `NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with existing state (409 `CONFLICT`).
    #[error("{0}")]
    Conflict(String),
    /// The request body is over the limit (413 `PAYLOAD_TOO_LARGE`).
    #[error("request body too large")]
    PayloadTooLarge,
    /// The method is not allowed on this route (405 `METHOD_NOT_ALLOWED`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A JSON body sent without a JSON `Content-Type` (415 `UNSUPPORTED_MEDIA_TYPE`). Refusing these keeps
    /// browsers from sending "simple" cross-site requests (`text/plain`, forms) without a CORS preflight.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Too many requests (429 `RATE_LIMITED`, with `Retry-After`).
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until the next request will be accepted.
        retry_after_secs: u64,
    },
    /// A dependency such as the database is down (503 `SERVICE_UNAVAILABLE`).
    #[error("service unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else (500 `INTERNAL_ERROR`); the source is logged, never sent.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    /// A validation error about one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Validation {
            message: message.clone(),
            details: vec![FieldError::new(field, message)],
        }
    }

    /// An internal error wrapping `source`.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        ApiError::Internal(source.into())
    }

    /// The envelope `code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "VALIDATION_ERROR",
            ApiError::Authentication(_) => "AUTHENTICATION_ERROR",
            ApiError::Authorization => "AUTHORIZATION_ERROR",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The message shown to the client.
    fn public_message(&self) -> String {
        match self {
            ApiError::Validation { message, .. } => message.clone(),
            ApiError::Authentication(message)
            | ApiError::NotFound(message)
            | ApiError::Conflict(message) => message.clone(),
            ApiError::Authorization => "Access denied".to_owned(),
            ApiError::PayloadTooLarge => "Request body too large".to_owned(),
            ApiError::MethodNotAllowed => "Method not allowed".to_owned(),
            ApiError::UnsupportedMediaType => "Content-Type must be application/json".to_owned(),
            ApiError::RateLimited { .. } => "Too many requests, please retry later".to_owned(),
            ApiError::Unavailable(_) => "Service temporarily unavailable".to_owned(),
            ApiError::Internal(_) => "An internal error occurred".to_owned(),
        }
    }

    /// The envelope for this error.
    pub fn envelope(&self) -> ErrorEnvelope {
        let details = match self {
            ApiError::Validation { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code(),
                message: self.public_message(),
                details,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Authentication(_) => StatusCode::UNAUTHORIZED,
            ApiError::Authorization => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited { retry_after_secs } = self {
            builder.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        // A 503 (database down, password hashing at capacity) is temporary: tell clients when to come back.
        if let ApiError::Unavailable(_) = self {
            builder.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let ApiError::Authentication(_) = self {
            builder.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        builder.json(self.envelope())
    }
}

/// The store's classes of failure (`StoreError`) as answers: 404, 409, 422, 401 (the token's user is gone), 503, 500.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("Task not found".to_owned()),
            StoreError::UniqueViolation { .. } => {
                ApiError::Conflict("Resource already exists".to_owned())
            }
            StoreError::CheckViolation { constraint } => {
                ApiError::field("body", format!("value rejected by constraint {constraint}"))
            }
            StoreError::ForeignKeyViolation { .. } => {
                ApiError::Authentication("The authenticated user no longer exists".to_owned())
            }
            StoreError::Unavailable(source) => ApiError::Unavailable(source),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// Renders an error and its `source()` chain on one line (`outer: inner: innermost`): the client crate's, used for
/// every error this crate logs.
pub use dapr_pubsub_client::ErrorChain;

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`" messages.
fn serde_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let name = &message[start..start + len];
    (message.contains("field") && !name.is_empty()).then(|| name.to_owned())
}

/// Maps a JSON body extraction failure to the envelope (configured on `web::JsonConfig`).
pub fn json_error_handler(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge,
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(serde_err) => {
            let text = serde_err.to_string();
            // Keep serde's text without the line/column suffix, which means nothing to an API client.
            let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
            let field = if serde_err.is_data() {
                serde_field(&message)
            } else {
                None
            };
            let message = if serde_err.is_syntax() || serde_err.is_eof() {
                format!("Malformed JSON: {message}")
            } else {
                message
            };
            ApiError::field(field.as_deref().unwrap_or("body"), message)
        }
        _ => ApiError::field("body", "Invalid request body"),
    };
    api.into()
}

/// Maps a path extraction failure (such as a malformed task id) to a 422 envelope.
pub fn path_error_handler(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        PathError::Deserialize(_) => {
            ApiError::field("task_id", "Invalid task id: expected a UUID").into()
        }
        _ => ApiError::field("path", "Invalid path parameter").into(),
    }
}

/// Maps a query-string extraction failure to a 422 envelope.
pub fn query_error_handler(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        QueryPayloadError::Deserialize(inner) => inner.to_string(),
        _ => "Invalid query string".to_owned(),
    };
    let field = serde_field(&message).unwrap_or_else(|| "query".to_owned());
    ApiError::field(&field, message).into()
}

/// The envelope for a status code produced outside our handlers (405, an unmatched route, an actix error).
pub fn envelope_for_status(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("Not found".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => ApiError::Authentication("Not authenticated".to_owned()),
        StatusCode::FORBIDDEN => ApiError::Authorization,
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited {
            retry_after_secs: 60,
        },
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable("service unavailable".into()),
        status if status.is_client_error() => ApiError::field("request", "Invalid request"),
        _ => ApiError::Internal("unexpected error response".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_field_extracts_backticked_names() {
        assert_eq!(
            serde_field("missing field `title`").as_deref(),
            Some("title")
        );
        assert_eq!(
            serde_field("invalid type: integer `5`, expected a string"),
            None
        );
    }

    #[test]
    fn envelope_has_code_message_and_details() {
        let err = ApiError::field("title", "Title must not be empty");
        let json = serde_json::to_value(err.envelope()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "VALIDATION_ERROR", "message": "Title must not be empty",
                "details": [{"field": "title", "message": "Title must not be empty"}]}})
        );
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn internal_errors_never_leak_their_source() {
        let err = ApiError::internal("password=hunter2 connection string");
        let json = serde_json::to_string(&err.envelope()).unwrap();
        assert!(!json.contains("hunter2"));
        assert_eq!(err.code(), "INTERNAL_ERROR");
    }
}
