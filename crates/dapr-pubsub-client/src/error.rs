//! Publish errors, classified so that a caller can react (retry, move aside, alert; see
//! [`FailureClass`]), and a one-line error-chain formatter for logs.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::delivery::FailureClass;

/// A boxed error from the HTTP stack.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The most body bytes kept from a rejected answer.
pub const MAX_ERROR_BODY_BYTES: usize = 1024;

/// Why a publish (or a health check) did not succeed.
///
/// No sidecar answer makes the client panic: every answer maps to one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No connection to the sidecar could be made (refused, unreachable, DNS, connect timeout):
    /// the sidecar is absent or not up yet.
    #[error("could not connect to the dapr sidecar at {endpoint}")]
    Connect {
        /// The sidecar base URL (never contains credentials).
        endpoint: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The whole exchange (connect, send, answer) did not finish within the deadline.
    #[error("the dapr sidecar did not answer within {timeout:?}")]
    Timeout {
        /// The deadline that was hit.
        timeout: Duration,
    },
    /// The sidecar answered with a non-success status.
    #[error("the dapr sidecar rejected the request with status {status}")]
    Rejected {
        /// The HTTP status.
        status: StatusCode,
        /// Dapr's `errorCode` from a JSON error body (for example `ERR_PUBSUB_NOT_FOUND`).
        error_code: Option<String>,
        /// The start of the answer body (at most [`MAX_ERROR_BODY_BYTES`], lossy UTF-8).
        body: String,
    },
    /// The connection broke or the HTTP exchange failed after connecting.
    #[error("http transport error while talking to the dapr sidecar")]
    Transport {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The event could not be serialized to JSON.
    #[error("could not serialize the event to json")]
    Serialize {
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The sidecar's success answer could not be understood (for example a bulk publish answer
    /// that is not the documented JSON).
    #[error("could not decode the dapr sidecar's answer (status {status})")]
    Decode {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A request could not be built from the given input (for example a `traceparent` with
    /// characters not allowed in a header).
    #[error("invalid publish request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
}

impl PublishError {
    /// The sidecar's status code, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected { status, .. } | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the sidecar refused the publish by access control (403, for example a topic not
    /// allowed for this app).
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(StatusCode::FORBIDDEN)
    }

    /// Whether the sidecar does not know the pub/sub component or topic (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// Whether the sidecar could not be reached.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// Whether the deadline was hit.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// What the failure means for the event: see [`FailureClass`].
    pub fn class(&self) -> FailureClass {
        crate::delivery::classify(self)
    }

    /// Whether trying the same request again soon may succeed: the sidecar or broker is
    /// unavailable ([`FailureClass::Unavailable`]: connect failures, timeouts, broken
    /// transports, 408, 429 and 5xx answers).
    pub fn is_retryable(&self) -> bool {
        self.class() == FailureClass::Unavailable
    }

    /// The body snippet of a rejected answer.
    pub fn body(&self) -> Option<&str> {
        match self {
            Self::Rejected { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Dapr's `errorCode` of a rejected answer.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Rejected { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// Builds a `Rejected` from a status and the (possibly long) answer body.
    pub(crate) fn rejected(status: StatusCode, body: &[u8]) -> Self {
        let error_code = serde_json::from_slice::<DaprErrorBody>(body)
            .ok()
            .and_then(|parsed| parsed.error_code);
        Self::Rejected {
            status,
            error_code,
            body: snippet(body),
        }
    }

    /// The failure of one entry of a bulk publish: a `Rejected` with the answer's status and
    /// error code, and Dapr's message for that entry as the body.
    pub(crate) fn entry_failed(status: StatusCode, error_code: Option<&str>, reason: &str) -> Self {
        Self::Rejected {
            status,
            error_code: error_code.map(str::to_owned),
            body: snippet(reason.as_bytes()),
        }
    }
}

/// The JSON error body Dapr answers with.
#[derive(serde::Deserialize)]
struct DaprErrorBody {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// At most [`MAX_ERROR_BODY_BYTES`] of `body`, as lossy UTF-8 cut on a character boundary.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY_BYTES)]);
    let mut text = text.into_owned();
    if body.len() > MAX_ERROR_BODY_BYTES {
        // The cut may have split a character into U+FFFD; that is fine for a diagnostic.
        text.push('…');
    }
    text
}

/// Displays an error and all its sources on one line, separated by `: `.
///
/// ```
/// use dapr_pubsub_client::ErrorChain;
///
/// let io = std::io::Error::new(std::io::ErrorKind::Other, "inner");
/// assert_eq!(ErrorChain(&io).to_string(), "inner");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let rejected = |code: u16| PublishError::rejected(StatusCode::from_u16(code).unwrap(), b"");
        assert!(rejected(500).is_retryable());
        assert!(rejected(503).is_retryable());
        assert!(rejected(429).is_retryable());
        assert!(!rejected(400).is_retryable());
        assert!(!rejected(403).is_retryable());
        assert!(!rejected(404).is_retryable());
        assert!(
            PublishError::Timeout {
                timeout: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(rejected(403).is_forbidden() && !rejected(403).is_not_found());
        assert!(rejected(404).is_not_found() && !rejected(404).is_forbidden());
    }

    #[test]
    fn rejected_keeps_a_capped_body_and_the_dapr_error_code() {
        let err = PublishError::rejected(
            StatusCode::NOT_FOUND,
            br#"{"errorCode":"ERR_PUBSUB_NOT_FOUND","message":"pubsub x not found"}"#,
        );
        assert_eq!(err.error_code(), Some("ERR_PUBSUB_NOT_FOUND"));
        assert!(err.body().unwrap().contains("pubsub x not found"));

        let long = vec![b'a'; 10 * MAX_ERROR_BODY_BYTES];
        let err = PublishError::rejected(StatusCode::INTERNAL_SERVER_ERROR, &long);
        assert!(err.body().unwrap().len() <= MAX_ERROR_BODY_BYTES + '…'.len_utf8());
        assert_eq!(err.error_code(), None);
        assert_eq!(
            err.to_string(),
            "the dapr sidecar rejected the request with status 500 Internal Server Error"
        );
    }

    #[test]
    fn error_chain_joins_sources() {
        let err = PublishError::Connect {
            endpoint: "http://127.0.0.1:1".into(),
            source: Box::new(std::io::Error::other("connection refused")),
        };
        assert_eq!(
            ErrorChain(&err).to_string(),
            "could not connect to the dapr sidecar at http://127.0.0.1:1: connection refused"
        );
    }
}
