//! The publish paths against a real daprd (with its `pubsub-kafka` component on Kafka).
//!
//! Runs when `PAKAURA_DAPR_HTTP_ENDPOINT` is set (`scripts/stack env` prints it). Without it each
//! test prints a "skipped" line and passes, unless `CI` is set: then it fails.

use std::time::Duration;

use dapr_pubsub_client::{
    BulkEntry, ClientConfig, DAPR_API_TOKEN, Dispatcher, DispatcherConfig, PubSubClient,
    PublishOptions,
};
use serde_json::json;

use crate::support::{CapturedLogs, event};

const PUBSUB: &str = "pubsub-kafka";

/// The real sidecar, or `None` (after saying why) when the stack is not running.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so on the test output"
)]
async fn real_sidecar(test: &str) -> Option<PubSubClient> {
    let endpoint = std::env::var("PAKAURA_DAPR_HTTP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(endpoint) = endpoint else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PAKAURA_DAPR_HTTP_ENDPOINT is not set but CI is: the daprd tests must run in CI ({test})"
        );
        eprintln!(
            "skipped: {test}: PAKAURA_DAPR_HTTP_ENDPOINT is not set (start the stack: scripts/stack up)"
        );
        return None;
    };
    let mut config = ClientConfig::new(&endpoint)
        .expect("PAKAURA_DAPR_HTTP_ENDPOINT is an http URL")
        .with_request_timeout(Duration::from_secs(10));
    if let Some(token) = std::env::var(DAPR_API_TOKEN).ok().filter(|v| !v.is_empty()) {
        config = config.with_api_token(token);
    }
    let client = PubSubClient::new(config, CapturedLogs::default().logger());
    client
        .wait_until_ready(Duration::from_secs(30))
        .await
        .expect("the daprd at PAKAURA_DAPR_HTTP_ENDPOINT becomes ready");
    Some(client)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

#[tokio::test]
async fn daprd_accepts_a_structured_cloud_event_with_a_partition_key() {
    let Some(client) =
        real_sidecar("daprd_accepts_a_structured_cloud_event_with_a_partition_key").await
    else {
        return;
    };
    let options = PublishOptions::new()
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    client
        .publish_with(
            PUBSUB,
            "task-events",
            &event(&unique("it-ce"), "user-it"),
            &options,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn daprd_accepts_plain_json_and_text() {
    let Some(client) = real_sidecar("daprd_accepts_plain_json_and_text").await else {
        return;
    };
    client
        .publish_json(
            PUBSUB,
            "task-updates",
            &json!({"task_id": unique("t"), "action": "created"}),
            &PublishOptions::new().with_partition_key("user-it"),
        )
        .await
        .unwrap();
    client
        .publish_bytes(
            PUBSUB,
            "reminders",
            "text/plain",
            "reminder",
            &PublishOptions::new(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn daprd_bulk_publishes_every_entry() {
    let Some(client) = real_sidecar("daprd_bulk_publishes_every_entry").await else {
        return;
    };
    let entries = vec![
        BulkEntry::cloud_event(&event(&unique("bulk-a"), "user-it")).unwrap(),
        BulkEntry::json(unique("bulk-b"), &json!({"n": 2})).unwrap(),
        BulkEntry::text(unique("bulk-c"), "text/plain", "three").unwrap(),
    ];
    let outcome = client
        .bulk_publish(PUBSUB, "reminders", &entries, &PublishOptions::new())
        .await
        .unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.published_count(), 3);
}

#[tokio::test]
async fn daprd_rejects_an_unknown_pubsub_as_not_found() {
    let Some(client) = real_sidecar("daprd_rejects_an_unknown_pubsub_as_not_found").await else {
        return;
    };
    let err = client
        .publish("no-such-pubsub", "task-events", &event(&unique("nf"), "u"))
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("ERR_PUBSUB_NOT_FOUND"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn daprd_receives_everything_the_dispatcher_is_given() {
    let Some(client) = real_sidecar("daprd_receives_everything_the_dispatcher_is_given").await
    else {
        return;
    };
    let dispatcher = Dispatcher::spawn(client, DispatcherConfig::new().with_concurrency(4), None);
    for i in 0..100 {
        dispatcher
            .submit(
                PUBSUB,
                "task-events",
                &event(&unique(&format!("disp-{i}")), &format!("user-{}", i % 7)),
                PublishOptions::new(),
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.metrics.published, report.metrics.failed), (100, 0));
}
