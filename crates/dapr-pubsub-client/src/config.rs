//! Client configuration: sidecar endpoint, API token, timeouts and connection-pool settings.
//!
//! The library never reads the process environment on its own. [`ClientConfig::from_env`] is an
//! explicit opt-in that reads Dapr's standard sidecar variables:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DAPR_HTTP_ENDPOINT` | full base URL of the sidecar's HTTP API, e.g. `http://127.0.0.1:3500` | unset |
//! | `DAPR_HTTP_PORT` | port on `127.0.0.1`, used when `DAPR_HTTP_ENDPOINT` is unset | `3500` |
//! | `DAPR_API_TOKEN` | sent as the `dapr-api-token` header when set and not empty | unset |
//!
//! The names are exported as constants ([`DAPR_HTTP_ENDPOINT`], [`DAPR_HTTP_PORT`],
//! [`DAPR_API_TOKEN`]) so that an application with its own configuration system can map them.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Environment variable holding the sidecar's full HTTP base URL.
pub const DAPR_HTTP_ENDPOINT: &str = "DAPR_HTTP_ENDPOINT";
/// Environment variable holding the sidecar's HTTP port on `127.0.0.1`.
pub const DAPR_HTTP_PORT: &str = "DAPR_HTTP_PORT";
/// Environment variable holding the sidecar's API token.
pub const DAPR_API_TOKEN: &str = "DAPR_API_TOKEN";

/// The sidecar's default HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 3500;

/// The connect timeout of [`ClientConfig::new`] when none is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The request deadline of [`ClientConfig::new`] when none is set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`ClientConfig::new`] keeps an idle pooled connection when nothing else is set.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The idle pooled connections [`ClientConfig::new`] keeps when nothing else is set.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;

/// Why a [`ClientConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is not an absolute `http://host[:port][/path]` URL.
    #[error("invalid dapr base url {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given, with any user information removed.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `DAPR_HTTP_PORT` is not a port number.
    #[error("invalid {variable} value {value:?}: not a port number")]
    InvalidPort {
        /// The variable name.
        variable: &'static str,
        /// The value found.
        value: String,
    },
    /// The API token cannot be sent as an HTTP header value.
    #[error("the dapr api token contains characters not allowed in an http header")]
    InvalidApiToken,
}

/// Configuration of a [`PubSubClient`](crate::PubSubClient).
///
/// Required: the base URL, the constructor's argument. Everything else has a `with_*` setter and,
/// when not set, the value of a public constant:
///
/// | setting | when not set |
/// |---|---|
/// | API token | none |
/// | connect timeout | [`DEFAULT_CONNECT_TIMEOUT`] (500 ms) |
/// | request timeout (one deadline over connect, send and read) | [`DEFAULT_REQUEST_TIMEOUT`] (2 s) |
/// | pool idle timeout | [`DEFAULT_POOL_IDLE_TIMEOUT`] (30 s) |
/// | maximum idle connections per host | [`DEFAULT_POOL_MAX_IDLE_PER_HOST`] (32) |
///
/// An application with its own configuration sets each of them, so that its values live in one
/// place (its own), not half in this crate.
///
/// The API token is a [`SecretString`] (re-exported from the `secrecy` crate): `Debug` never
/// shows it, and reading it takes an explicit [`ExposeSecret::expose_secret`](crate::ExposeSecret::expose_secret).
///
/// ```
/// use dapr_pubsub_client::{ClientConfig, ExposeSecret};
///
/// let config = ClientConfig::localhost(3500).with_api_token("s3cr3t");
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// assert_eq!(config.api_token().map(ExposeSecret::expose_secret), Some("s3cr3t"));
/// ```
///
/// It also deserializes (for figment or serde users) from
/// `{ "base_url": "...", "api_token": "...", "connect_timeout_ms": 500, "request_timeout_ms": 2000,
/// "pool_idle_timeout_ms": 30000, "pool_max_idle_per_host": 32 }`, where every key but `base_url`
/// is optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawClientConfig")]
pub struct ClientConfig {
    base_url: String,
    api_token: Option<SecretString>,
    connect_timeout: Duration,
    request_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl ClientConfig {
    /// Creates a configuration for the sidecar at `base_url` (for example `http://127.0.0.1:3500`).
    ///
    /// Only plain `http` is supported (the sidecar is local). A trailing `/` is removed; a path
    /// prefix is kept.
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: parse_base_url(base_url)?,
            api_token: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
        })
    }

    /// Configuration for the sidecar on `http://127.0.0.1:{port}`.
    pub fn localhost(port: u16) -> Self {
        Self::new(&format!("http://127.0.0.1:{port}"))
            .expect("a loopback URL with a numeric port is always valid")
    }

    /// Reads Dapr's standard variables from the process environment (see the module docs).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with the variables looked up through `lookup`
    /// (handy for tests and for applications that keep their own environment snapshot).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut config =
            match non_empty(DAPR_HTTP_ENDPOINT) {
                Some(endpoint) => Self::new(endpoint.trim())?,
                None => {
                    let port =
                        match non_empty(DAPR_HTTP_PORT) {
                            Some(value) => value.trim().parse::<u16>().map_err(|_| {
                                ConfigError::InvalidPort {
                                    variable: DAPR_HTTP_PORT,
                                    value,
                                }
                            })?,
                            None => DEFAULT_HTTP_PORT,
                        };
                    Self::localhost(port)
                }
            };
        if let Some(token) = non_empty(DAPR_API_TOKEN) {
            config = config.with_api_token(checked_token(token)?);
        }
        Ok(config)
    }

    /// Sets the API token sent as the `dapr-api-token` header. A token with characters not
    /// allowed in a header makes every request fail with [`PublishError::InvalidRequest`]
    /// (the fallible constructors reject it up front).
    ///
    /// [`PublishError::InvalidRequest`]: crate::PublishError::InvalidRequest
    pub fn with_api_token(mut self, token: impl Into<SecretString>) -> Self {
        self.api_token = Some(token.into());
        self
    }

    /// Sets the TCP connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the default deadline of one exchange with the sidecar (connect, send, read the answer).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long an idle pooled connection is kept.
    pub fn with_pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// Sets the maximum number of idle pooled connections kept to the sidecar.
    pub fn with_pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// The base URL, without a trailing `/`. It never contains credentials.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API token, if any ([`ExposeSecret::expose_secret`](crate::ExposeSecret::expose_secret) reads it; never log what that returns).
    pub fn api_token(&self) -> Option<&SecretString> {
        self.api_token.as_ref()
    }

    /// The TCP connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The default deadline of one exchange.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How long an idle pooled connection is kept.
    pub fn pool_idle_timeout(&self) -> Duration {
        self.pool_idle_timeout
    }

    /// The maximum number of idle pooled connections.
    pub fn pool_max_idle_per_host(&self) -> usize {
        self.pool_max_idle_per_host
    }
}

/// The serde shape of [`ClientConfig`].
#[derive(Deserialize)]
struct RawClientConfig {
    base_url: String,
    #[serde(default)]
    api_token: Option<String>,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    request_timeout_ms: Option<u64>,
    #[serde(default)]
    pool_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pool_max_idle_per_host: Option<usize>,
}

impl TryFrom<RawClientConfig> for ClientConfig {
    type Error = ConfigError;

    fn try_from(raw: RawClientConfig) -> Result<Self, Self::Error> {
        let mut config = ClientConfig::new(&raw.base_url)?;
        if let Some(token) = raw.api_token.filter(|token| !token.is_empty()) {
            config = config.with_api_token(checked_token(token)?);
        }
        if let Some(ms) = raw.connect_timeout_ms {
            config = config.with_connect_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = raw.request_timeout_ms {
            config = config.with_request_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = raw.pool_idle_timeout_ms {
            config = config.with_pool_idle_timeout(Duration::from_millis(ms));
        }
        if let Some(max) = raw.pool_max_idle_per_host {
            config = config.with_pool_max_idle_per_host(max);
        }
        Ok(config)
    }
}

/// Rejects a token that cannot be sent as a header value.
fn checked_token(token: String) -> Result<SecretString, ConfigError> {
    match http::HeaderValue::from_str(&token) {
        Ok(_) => Ok(SecretString::from(token)),
        Err(_) => Err(ConfigError::InvalidApiToken),
    }
}

/// Validates a base URL and returns it normalised (no trailing `/`).
fn parse_base_url(input: &str) -> Result<String, ConfigError> {
    let invalid = |reason| ConfigError::InvalidBaseUrl {
        url: redact_userinfo(input),
        reason,
    };
    let uri: http::Uri = input.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https is not supported; the sidecar is local")),
        Some(_) => return Err(invalid("the scheme must be http")),
        None => return Err(invalid("the URL must be absolute (http://host:port)")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the URL has no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    if authority.host().is_empty() {
        return Err(invalid("the URL has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("the URL must not have a query"));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(format!("http://{authority}{path}"))
}

/// Removes `user:password@` from a URL-ish string for use in messages.
fn redact_userinfo(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return input.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn base_url_is_normalised_and_validated() {
        let config = ClientConfig::new("http://127.0.0.1:3500/").unwrap();
        assert_eq!(config.base_url(), "http://127.0.0.1:3500");
        let config = ClientConfig::new("http://dapr.local:3500/prefix/").unwrap();
        assert_eq!(config.base_url(), "http://dapr.local:3500/prefix");
        for bad in [
            "127.0.0.1:3500",
            "https://127.0.0.1:3500",
            "ftp://x",
            "http://u:p@h:1",
            "http://h:1/?q=1",
            "",
        ] {
            let err = ClientConfig::new(bad).unwrap_err();
            assert!(matches!(err, ConfigError::InvalidBaseUrl { .. }), "{bad}");
            assert!(!err.to_string().contains("u:p"), "{err}");
        }
    }

    #[test]
    fn from_lookup_prefers_endpoint_then_port_then_default() {
        let config = ClientConfig::from_lookup(lookup(&[
            (DAPR_HTTP_ENDPOINT, "http://sidecar:9999"),
            (DAPR_HTTP_PORT, "1234"),
            (DAPR_API_TOKEN, "tok"),
        ]))
        .unwrap();
        assert_eq!(config.base_url(), "http://sidecar:9999");
        assert_eq!(
            config.api_token().map(ExposeSecret::expose_secret),
            Some("tok")
        );

        let config = ClientConfig::from_lookup(lookup(&[(DAPR_HTTP_PORT, "1234")])).unwrap();
        assert_eq!(config.base_url(), "http://127.0.0.1:1234");
        assert!(config.api_token().is_none());

        let config =
            ClientConfig::from_lookup(lookup(&[(DAPR_HTTP_ENDPOINT, ""), (DAPR_API_TOKEN, "")]))
                .unwrap();
        assert_eq!(config.base_url(), "http://127.0.0.1:3500");
        assert!(config.api_token().is_none());

        let err = ClientConfig::from_lookup(lookup(&[(DAPR_HTTP_PORT, "http")])).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidPort { .. }));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = ClientConfig::localhost(3500).with_api_token("very-secret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
    }

    #[test]
    fn deserializes_with_millisecond_durations() {
        let config: ClientConfig = serde_json::from_str(
            r#"{"base_url":"http://127.0.0.1:3501","api_token":"t","request_timeout_ms":250,
                "pool_max_idle_per_host":4}"#,
        )
        .unwrap();
        assert_eq!(config.base_url(), "http://127.0.0.1:3501");
        assert_eq!(config.request_timeout(), Duration::from_millis(250));
        assert_eq!(config.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(config.pool_max_idle_per_host(), 4);
        assert_eq!(
            config.api_token().map(ExposeSecret::expose_secret),
            Some("t")
        );
        assert!(serde_json::from_str::<ClientConfig>(r#"{"base_url":"nope"}"#).is_err());
    }
}
