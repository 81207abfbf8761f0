//! What Dapr tells a subscriber app about a delivery besides the event: the Kafka placement.
//!
//! Dapr's Kafka component passes the record's key, partition, offset and topic as metadata, which
//! the HTTP delivery turns into the request headers `__key`, `__partition`, `__offset` and `__topic`.

use actix_web::HttpRequest;
use serde::Serialize;

/// Where a delivered event sat in Kafka, when Dapr said so.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KafkaPlacement {
    /// The record key (the partition key the publisher set).
    pub key: Option<String>,
    /// The partition.
    pub partition: Option<i32>,
    /// The offset in that partition.
    pub offset: Option<i64>,
}

impl KafkaPlacement {
    /// Reads the placement headers of a Dapr delivery.
    pub fn from_request(request: &HttpRequest) -> Self {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            key: header("__key"),
            partition: header("__partition").and_then(|value| value.parse().ok()),
            offset: header("__offset").and_then(|value| value.parse().ok()),
        }
    }

    /// `partition@offset`, or `-` when unknown.
    pub fn position(&self) -> String {
        match (self.partition, self.offset) {
            (Some(partition), Some(offset)) => format!("{partition}@{offset}"),
            (Some(partition), None) => format!("{partition}@?"),
            _ => "-".to_owned(),
        }
    }
}
