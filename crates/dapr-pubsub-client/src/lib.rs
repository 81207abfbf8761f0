//! Client for the Dapr sidecar's pub/sub HTTP API: publish, bulk publish, background delivery
//! and subscriber-side types.
#![doc = include_str!("../README.md")]

mod bulk;
mod client;
mod config;
pub mod consumer;
pub mod delivery;
mod dispatcher;
mod error;
mod metrics;
mod options;
mod subscribe;

pub use crate::bulk::{BulkEntry, BulkPublishOutcome, BulkPublishResponse, FailedEntry};
pub use crate::client::{
    API_TOKEN_HEADER, BULK_PUBLISH_ALPHA_PATH, BULK_PUBLISH_PATH, JSON_CONTENT_TYPE,
    PARTITION_KEY_EXTENSION, PubSubClient,
};
pub use crate::config::{
    ClientConfig, ConfigError, DAPR_API_TOKEN, DAPR_HTTP_ENDPOINT, DAPR_HTTP_PORT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP_PORT, DEFAULT_POOL_IDLE_TIMEOUT,
    DEFAULT_POOL_MAX_IDLE_PER_HOST, DEFAULT_REQUEST_TIMEOUT,
};
pub use crate::consumer::{Admission, ConsumerGuard};
pub use crate::dispatcher::{
    Dispatcher, DispatcherConfig, LogFields, MAX_BULK_BODY_BYTES, Reservation, ShutdownReport,
    SubmitError, UndeliveredEvent,
};
pub use crate::error::{ErrorChain, MAX_ERROR_BODY_BYTES, PublishError};
pub use crate::metrics::{HistogramSnapshot, LATENCY_BUCKETS_SECONDS, MetricsSnapshot};
pub use crate::options::{
    METADATA_PARTITION_KEY, METADATA_RAW_PAYLOAD, METADATA_TTL_IN_SECONDS, PublishOptions,
};
pub use crate::subscribe::{
    AppResponse, AppStatus, BulkSubscribe, BulkSubscribeEntry, BulkSubscribeRequest,
    BulkSubscribeResponse, BulkSubscribeResponseEntry, Routes, RoutingRule, SUBSCRIBE_PATH,
    Subscription, TopicEvent,
};

/// The API token's type and the trait that reads it, re-exported from `secrecy` so that callers
/// need no dependency of their own.
pub use secrecy::{ExposeSecret, SecretString};

/// Re-export of the CloudEvents crate this client publishes.
pub use cloudevents_model;
