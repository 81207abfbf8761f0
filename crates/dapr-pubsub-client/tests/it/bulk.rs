//! Bulk publish against a mockito sidecar: request shape, full success, partial failure, rejection.

use dapr_pubsub_client::{BulkEntry, PublishOptions};
use mockito::Matcher;
use serde_json::json;

use crate::support::{BULK, CapturedLogs, client, event, sidecar};

fn entries() -> Vec<BulkEntry> {
    vec![
        BulkEntry::cloud_event(&event("evt-a", "user-1")).unwrap(),
        BulkEntry::json("plain-b", &json!({"n": 2})).unwrap(),
        BulkEntry::text("text-c", "text/plain", "three")
            .unwrap()
            .with_metadata("ttlInSeconds", "30"),
    ]
}

#[tokio::test]
async fn bulk_publish_sends_dapr_documented_entries() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", BULK)
        .match_header("content-type", "application/json")
        .match_query(Matcher::UrlEncoded(
            "metadata.rawPayload".into(),
            "false".into(),
        ))
        .match_body(Matcher::PartialJson(json!([
            {"entryId": "evt-a", "contentType": "application/cloudevents+json",
             "event": {"id": "evt-a", "type": "task.created", "source": "pakaura/api"},
             "metadata": {"partitionKey": "user-1"}},
            {"entryId": "plain-b", "contentType": "application/json", "event": {"n": 2}},
            {"entryId": "text-c", "contentType": "text/plain", "event": "three",
             "metadata": {"ttlInSeconds": "30"}}
        ])))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let outcome = client(&server.url(), CapturedLogs::default().logger())
        .publish_bulk(
            "pubsub-kafka",
            "task-events",
            &entries(),
            &PublishOptions::new().with_raw_payload(false),
        )
        .await
        .unwrap();
    assert!(outcome.is_success());
    assert_eq!(outcome.published_count(), 3);
    mock.assert_async().await;
}

#[tokio::test]
async fn bulk_partial_failure_reports_each_failed_entry() {
    let mut server = sidecar().await;
    let _mock = server
        .mock("POST", BULK)
        .with_status(500)
        .with_header("content-type", "application/json")
        .with_body(
            r#"{"failedEntries":[{"entryId":"plain-b","error":"kafka: broker not available"}],
                "errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}"#,
        )
        .expect(1)
        .create_async()
        .await;
    let outcome = client(&server.url(), CapturedLogs::default().logger())
        .publish_bulk(
            "pubsub-kafka",
            "task-events",
            &entries(),
            &PublishOptions::new(),
        )
        .await
        .unwrap();
    assert!(!outcome.is_success());
    assert_eq!(outcome.published_count(), 2);
    assert_eq!(
        outcome.error_for("plain-b"),
        Some("kafka: broker not available")
    );
    assert_eq!(outcome.error_for("evt-a"), None);
    assert_eq!(outcome.error_code(), Some("ERR_PUBSUB_PUBLISH_MESSAGE"));
    assert_eq!(outcome.status().as_u16(), 500);
}

#[tokio::test]
async fn bulk_rejection_of_the_whole_request_is_an_error() {
    let mut server = sidecar().await;
    let _mock = server
        .mock("POST", BULK)
        .with_status(403)
        .with_body(r#"{"errorCode":"ERR_PUBSUB_FORBIDDEN","message":"not allowed"}"#)
        .expect(1)
        .create_async()
        .await;
    let err = client(&server.url(), CapturedLogs::default().logger())
        .publish_bulk(
            "pubsub-kafka",
            "task-events",
            &entries(),
            &PublishOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(err.is_forbidden(), "{err:?}");
}
