//! The pooled HTTP/1 client for the sidecar's publish, bulk publish and health endpoints.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cloudevents_model::CloudEvent;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use slog::{Logger, debug, info, o};

use crate::bulk::{BulkEntry, BulkPublishOutcome};
use crate::config::ClientConfig;
use crate::error::{ErrorChain, PublishError};
use crate::options::PublishOptions;

/// Header carrying the sidecar API token.
pub const API_TOKEN_HEADER: &str = "dapr-api-token";
/// `Content-Type` of a plain JSON payload (Dapr wraps it in a CloudEvent).
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// CloudEvent extension read as the default partition key (the CloudEvents partitioning extension).
pub use cloudevents_model::PARTITION_KEY_EXTENSION;

/// Everything but RFC 3986 unreserved characters is percent-encoded in path segments and in
/// query keys and values.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The bulk publish route, stable since Dapr 1.17.
pub const BULK_PUBLISH_PATH: &str = "/v1.0/publish/bulk";
/// The bulk publish route of older sidecars.
pub const BULK_PUBLISH_ALPHA_PATH: &str = "/v1.0-alpha1/publish/bulk";

/// Largest success or bulk-answer body read into memory.
const MAX_ANSWER_BODY_BYTES: usize = 1024 * 1024;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client for the Dapr sidecar's pub/sub HTTP API.
///
/// Cheap to clone (an `Arc` inside); build it once and share it. It holds one pooled HTTP/1
/// connection pool to the sidecar. Every method runs under one deadline covering connect, send
/// and reading the answer, and needs a Tokio runtime with timers enabled.
///
/// The client logs each exchange at DEBUG and returns failures to the caller, who logs them
/// once (see [`PublishError::class`]); the [`Dispatcher`](crate::Dispatcher) does that for
/// background delivery.
#[derive(Clone)]
pub struct PubSubClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    base_url: String,
    /// `Err` when the configured token is not a valid header value; every request then fails.
    api_token: Result<Option<HeaderValue>, ()>,
    request_timeout: Duration,
    log: Logger,
    /// Set once the sidecar showed it has no stable bulk route: the alpha one is used.
    bulk_alpha: AtomicBool,
    /// Whether the bulk route in use was logged.
    bulk_route_logged: AtomicBool,
}

impl std::fmt::Debug for PubSubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubClient")
            .field("base_url", &self.inner.base_url)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The event attributes used in log lines.
#[derive(Clone, Copy, Default)]
pub(crate) struct EventInfo<'a> {
    pub(crate) id: &'a str,
    pub(crate) ty: &'a str,
}

impl PubSubClient {
    /// Builds the client and its connection pool. `log` may be `None` (logs are discarded).
    pub fn new(config: ClientConfig, log: impl Into<Option<Logger>>) -> Self {
        let log = log
            .into()
            .unwrap_or_else(|| Logger::root(slog::Discard, o!()))
            .new(o!("component" => "dapr-pubsub-client"));

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout()));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout())
            .pool_max_idle_per_host(config.pool_max_idle_per_host())
            .build(connector);

        let api_token = match config.api_token() {
            None => Ok(None),
            Some(token) => HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(token))
                .map(|mut value| {
                    value.set_sensitive(true);
                    Some(value)
                })
                .map_err(|_| ()),
        };

        Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url().to_owned(),
                api_token,
                request_timeout: config.request_timeout(),
                log,
                bulk_alpha: AtomicBool::new(false),
                bulk_route_logged: AtomicBool::new(false),
            }),
        }
    }

    /// The sidecar base URL (never contains credentials).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The default deadline of one exchange.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Publishes a CloudEvent in structured mode (`application/cloudevents+json`): Dapr forwards
    /// the envelope unchanged.
    ///
    /// When the event has a `partitionkey` extension, it is sent as `metadata.partitionKey`.
    pub async fn publish<D: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
    ) -> Result<(), PublishError> {
        self.publish_with(pubsub, topic, event, &PublishOptions::new())
            .await
    }

    /// Like [`publish`](Self::publish), with metadata, trace context or a per-call deadline.
    /// An explicit partition key in `options` wins over the event's `partitionkey` extension.
    pub async fn publish_with<D: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &CloudEvent<D>,
        options: &PublishOptions,
    ) -> Result<(), PublishError> {
        let body =
            serde_json::to_vec(event).map_err(|source| PublishError::Serialize { source })?;
        let options = options_for_event(event, options);
        self.send_publish(
            pubsub,
            topic,
            HeaderValue::from_static(cloudevents_model::CONTENT_TYPE),
            Bytes::from(body),
            &options,
            EventInfo {
                id: event.id(),
                ty: event.ty(),
            },
        )
        .await
    }

    /// Publishes a value as plain JSON (`application/json`); Dapr wraps it in a CloudEvent
    /// unless `rawPayload` is set.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        pubsub: &str,
        topic: &str,
        value: &T,
        options: &PublishOptions,
    ) -> Result<(), PublishError> {
        let body =
            serde_json::to_vec(value).map_err(|source| PublishError::Serialize { source })?;
        self.send_publish(
            pubsub,
            topic,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
            Bytes::from(body),
            options,
            EventInfo::default(),
        )
        .await
    }

    /// Publishes bytes with any content type (for example `text/plain`, or
    /// `application/cloudevents+json` for an envelope serialized elsewhere).
    pub async fn publish_bytes(
        &self,
        pubsub: &str,
        topic: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        options: &PublishOptions,
    ) -> Result<(), PublishError> {
        let content_type =
            HeaderValue::from_str(content_type).map_err(|_| PublishError::InvalidRequest {
                reason: "the content type is not a valid header value".into(),
            })?;
        self.send_publish(
            pubsub,
            topic,
            content_type,
            body.into(),
            options,
            EventInfo::default(),
        )
        .await
    }

    /// Publishes several entries in one request (`POST /v1.0/publish/bulk/{pubsub}/{topic}`,
    /// stable since Dapr 1.17). When the sidecar answers 404 without a Dapr pub/sub error (an
    /// older sidecar without that route), the request is sent again to
    /// `/v1.0-alpha1/publish/bulk/…`, and the client keeps using that route. The route in use is
    /// logged once at INFO.
    ///
    /// Dapr publishes the entries independently and in no promised order: the outcome lists the
    /// entries that failed. An `Ok` outcome can therefore still hold failures; check
    /// [`BulkPublishOutcome::is_success`]. An `Err` means the request as a whole was not
    /// accepted (no connection, timeout, 403, 404, …) and no entry can be assumed published.
    /// `options` metadata applies to the whole request; give each entry its own partition key
    /// with [`BulkEntry::with_partition_key`].
    pub async fn publish_bulk(
        &self,
        pubsub: &str,
        topic: &str,
        entries: &[BulkEntry],
        options: &PublishOptions,
    ) -> Result<BulkPublishOutcome, PublishError> {
        let started = Instant::now();
        let outcome = self
            .send_bulk_quietly(pubsub, topic, entries, options)
            .await;
        debug!(self.inner.log, "bulk publish to {} answered", topic;
            "pubsub" => pubsub, "topic" => topic,
            "status" => outcome.as_ref().map(|o| o.status().as_u16()).ok(),
            "entries" => entries.len(),
            "failed" => outcome.as_ref().map(|o| o.failed_entries().len()).unwrap_or(entries.len()),
            "duration_ms" => started.elapsed().as_secs_f64() * 1000.0);
        outcome
    }

    /// Sends a bulk publish request (see [`publish_bulk`](Self::publish_bulk)) without logging
    /// it (the dispatcher logs with its own context).
    pub(crate) async fn send_bulk_quietly(
        &self,
        pubsub: &str,
        topic: &str,
        entries: &[BulkEntry],
        options: &PublishOptions,
    ) -> Result<BulkPublishOutcome, PublishError> {
        let body = Bytes::from(
            serde_json::to_vec(entries).map_err(|source| PublishError::Serialize { source })?,
        );
        let timeout = options.timeout().unwrap_or(self.inner.request_timeout);
        let mut alpha = self.inner.bulk_alpha.load(Ordering::Relaxed);
        loop {
            let route = if alpha {
                BULK_PUBLISH_ALPHA_PATH
            } else {
                BULK_PUBLISH_PATH
            };
            let uri = self.publish_uri(route, pubsub, topic, options);
            let (status, answer) = self
                .exchange(
                    Method::POST,
                    &uri,
                    Some(HeaderValue::from_static(JSON_CONTENT_TYPE)),
                    body.clone(),
                    options,
                    timeout,
                )
                .await?;
            if !alpha && status == StatusCode::NOT_FOUND && !is_pubsub_error(&answer) {
                // No such route (a sidecar older than 1.17), not an unknown pub/sub or topic.
                alpha = true;
                self.inner.bulk_alpha.store(true, Ordering::Relaxed);
                continue;
            }
            if status != StatusCode::NOT_FOUND
                && !self.inner.bulk_route_logged.swap(true, Ordering::Relaxed)
            {
                info!(self.inner.log, "bulk publishing through {}", route;
                    "route" => route, "stable" => !alpha);
            }
            return BulkPublishOutcome::from_answer(status, &answer, entries.len());
        }
    }

    /// Checks once that the sidecar is ready to publish (`GET /v1.0/healthz/outbound`).
    pub async fn health(&self) -> Result<(), PublishError> {
        self.health_within(self.inner.request_timeout).await
    }

    /// Polls `GET /v1.0/healthz/outbound` until the sidecar answers 2xx or `deadline` has passed,
    /// then returns the last failure ([`PublishError::Timeout`] if none could be observed).
    /// Use it at start-up instead of sleeping.
    pub async fn wait_until_ready(&self, deadline: Duration) -> Result<(), PublishError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(25);
        let mut last_error = None;
        loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(last_error.unwrap_or(PublishError::Timeout { timeout: deadline }));
            }
            let err = match self
                .health_within(remaining.min(self.inner.request_timeout))
                .await
            {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            debug!(self.inner.log, "dapr sidecar not ready yet"; "error" => %ErrorChain(&err));
            last_error = Some(err);
            let remaining = deadline.saturating_sub(started.elapsed());
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    async fn health_within(&self, timeout: Duration) -> Result<(), PublishError> {
        let uri = format!("{}/v1.0/healthz/outbound", self.inner.base_url);
        let (status, body) = self
            .exchange(
                Method::GET,
                &uri,
                None,
                Bytes::new(),
                &PublishOptions::new(),
                timeout,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(PublishError::rejected(status, &body))
        }
    }

    /// Publishes pre-serialized bytes and logs the outcome at DEBUG.
    pub(crate) async fn send_publish(
        &self,
        pubsub: &str,
        topic: &str,
        content_type: HeaderValue,
        body: Bytes,
        options: &PublishOptions,
        event: EventInfo<'_>,
    ) -> Result<(), PublishError> {
        let started = Instant::now();
        let res = self
            .send_publish_quietly(pubsub, topic, content_type, body, options)
            .await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let partition_key = options.partition_key().unwrap_or("");
        match &res {
            Ok(()) => debug!(self.inner.log, "published {} to {}", event.ty, topic;
                "event_type" => event.ty, "event_id" => event.id, "pubsub" => pubsub,
                "topic" => topic, "partition_key" => partition_key,
                "duration_ms" => duration_ms),
            Err(err) => debug!(self.inner.log, "publish of {} to {} failed", event.ty, topic;
                "event_type" => event.ty, "event_id" => event.id, "pubsub" => pubsub,
                "topic" => topic, "partition_key" => partition_key,
                "status" => err.status().map(|s| s.as_u16()),
                "duration_ms" => duration_ms, "error" => %ErrorChain(err)),
        }
        res
    }

    /// Publishes pre-serialized bytes: the one code path behind every single publish. Does not
    /// log (the dispatcher logs with its own context).
    pub(crate) async fn send_publish_quietly(
        &self,
        pubsub: &str,
        topic: &str,
        content_type: HeaderValue,
        body: Bytes,
        options: &PublishOptions,
    ) -> Result<(), PublishError> {
        let uri = self.publish_uri("/v1.0/publish", pubsub, topic, options);
        let timeout = options.timeout().unwrap_or(self.inner.request_timeout);
        let (status, answer) = self
            .exchange(
                Method::POST,
                &uri,
                Some(content_type),
                body,
                options,
                timeout,
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(PublishError::rejected(status, &answer))
        }
    }

    /// `{base}{prefix}/{pubsub}/{topic}?metadata.k=v&…` with every component percent-encoded.
    fn publish_uri(
        &self,
        prefix: &str,
        pubsub: &str,
        topic: &str,
        options: &PublishOptions,
    ) -> String {
        let mut uri = format!(
            "{}{}/{}/{}",
            self.inner.base_url,
            prefix,
            utf8_percent_encode(pubsub, COMPONENT),
            utf8_percent_encode(topic, COMPONENT)
        );
        let mut separator = '?';
        for (key, value) in options.metadata() {
            uri.push(separator);
            separator = '&';
            uri.push_str("metadata.");
            uri.extend(utf8_percent_encode(key, COMPONENT));
            uri.push('=');
            uri.extend(utf8_percent_encode(value, COMPONENT));
        }
        uri
    }

    /// One request/answer exchange under one deadline; returns the status and the answer body
    /// (at most [`MAX_ANSWER_BODY_BYTES`]).
    async fn exchange(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
        options: &PublishOptions,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), PublishError> {
        let request = self.build_request(method, uri, content_type, body, options)?;
        let exchange = async {
            let response = self.inner.http.request(request).await.map_err(|err| {
                if err.is_connect() {
                    PublishError::Connect {
                        endpoint: self.inner.base_url.clone(),
                        source: Box::new(err),
                    }
                } else {
                    PublishError::Transport {
                        source: Box::new(err),
                    }
                }
            })?;
            let status = response.status();
            let answer = read_capped(response.into_body(), MAX_ANSWER_BODY_BYTES).await?;
            Ok((status, answer))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(res) => res,
            Err(_) => Err(PublishError::Timeout { timeout }),
        }
    }

    fn build_request(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
        options: &PublishOptions,
    ) -> Result<Request<Full<Bytes>>, PublishError> {
        let invalid = |reason: &str| PublishError::InvalidRequest {
            reason: reason.to_owned(),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        match &self.inner.api_token {
            Ok(Some(token)) => {
                builder = builder.header(HeaderName::from_static(API_TOKEN_HEADER), token.clone());
            }
            Ok(None) => {}
            Err(()) => return Err(invalid("the api token is not a valid header value")),
        }
        if let Some(traceparent) = options.traceparent() {
            let value = HeaderValue::from_str(traceparent)
                .map_err(|_| invalid("traceparent is not a valid header value"))?;
            builder = builder.header(HeaderName::from_static("traceparent"), value);
        }
        if let Some(tracestate) = options.tracestate() {
            let value = HeaderValue::from_str(tracestate)
                .map_err(|_| invalid("tracestate is not a valid header value"))?;
            builder = builder.header(HeaderName::from_static("tracestate"), value);
        }
        builder
            .body(Full::new(body))
            .map_err(|_| invalid("the pubsub name, topic or metadata do not form a valid url"))
    }
}

/// Whether a 404 answer is Dapr's about the pub/sub component or topic (its `errorCode` starts
/// with `ERR_PUBSUB` or `ERR_TOPIC`), rather than about the route.
fn is_pubsub_error(answer: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct DaprError {
        #[serde(rename = "errorCode")]
        error_code: Option<String>,
    }
    serde_json::from_slice::<DaprError>(answer)
        .ok()
        .and_then(|parsed| parsed.error_code)
        .is_some_and(|code| code.starts_with("ERR_PUBSUB") || code.starts_with("ERR_TOPIC"))
}

/// The options to send with `event`: its `partitionkey` extension becomes the partition key
/// unless `options` sets one.
pub(crate) fn options_for_event<'a, D>(
    event: &CloudEvent<D>,
    options: &'a PublishOptions,
) -> Cow<'a, PublishOptions> {
    if options.partition_key().is_some() {
        return Cow::Borrowed(options);
    }
    match event
        .extension(PARTITION_KEY_EXTENSION)
        .and_then(|value| value.as_str())
    {
        Some(key) => {
            let mut options = options.clone();
            options.set_default_partition_key(key);
            Cow::Owned(options)
        }
        None => Cow::Borrowed(options),
    }
}

/// Reads a body up to `cap` bytes; whatever is beyond is not read (the connection is then
/// not reused).
async fn read_capped<B>(mut body: B, cap: usize) -> Result<Bytes, PublishError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut collected = BytesMut::new();
    while collected.len() < cap {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|err| PublishError::Transport {
            source: Box::new(err),
        })?;
        if let Ok(data) = frame.into_data() {
            let room = cap - collected.len();
            collected.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_uri_percent_encodes_names_and_metadata() {
        let client = PubSubClient::new(ClientConfig::localhost(3500), None);
        let options = PublishOptions::new()
            .with_partition_key("user/42 é")
            .with_metadata("odd key&", "a=b");
        assert_eq!(
            client.publish_uri("/v1.0/publish", "pub sub", "task/events?x", &options),
            "http://127.0.0.1:3500/v1.0/publish/pub%20sub/task%2Fevents%3Fx\
             ?metadata.partitionKey=user%2F42%20%C3%A9&metadata.odd%20key%26=a%3Db"
        );
        assert_eq!(
            client.publish_uri(
                "/v1.0/publish",
                "pubsub-kafka",
                "task-events",
                &PublishOptions::new()
            ),
            "http://127.0.0.1:3500/v1.0/publish/pubsub-kafka/task-events"
        );
    }
}
