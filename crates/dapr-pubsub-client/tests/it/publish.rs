//! Single publish against a mockito sidecar: headers, query, body, every kind of answer.

use std::time::{Duration, Instant};

use dapr_pubsub_client::delivery::FailureClass;
use dapr_pubsub_client::{ClientConfig, ErrorChain, PubSubClient, PublishError, PublishOptions};
use mockito::Matcher;
use serde_json::json;

use crate::support::{CapturedLogs, client, event, refused_port, sidecar, silent_sidecar};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn publishes_a_structured_cloud_event_with_token_trace_and_partition_key() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", "/v1.0/publish/pubsub-kafka/task-events")
        .match_query(Matcher::UrlEncoded(
            "metadata.partitionKey".into(),
            "user-1".into(),
        ))
        .match_header("content-type", "application/cloudevents+json")
        .match_header("dapr-api-token", "s3cr3t-token")
        .match_header("traceparent", TRACEPARENT)
        .match_header("tracestate", "vendor=1")
        .match_body(Matcher::PartialJson(json!({
            "specversion": "1.0",
            "id": "evt-1",
            "source": "pakaura/api",
            "type": "task.created",
            "subject": "task-1",
            "data": {"task_id": "task-1"}
        })))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let client = PubSubClient::new(
        ClientConfig::new(&server.url())
            .unwrap()
            .with_api_token("s3cr3t-token"),
        logs.logger(),
    );

    let options = PublishOptions::new()
        .with_traceparent(TRACEPARENT)
        .with_tracestate("vendor=1");
    client
        .publish_with(
            "pubsub-kafka",
            "task-events",
            &event("evt-1", "user-1"),
            &options,
        )
        .await
        .unwrap();

    mock.assert_async().await;
    let records = logs.records();
    let published = records
        .iter()
        .find(|r| r.message.starts_with("published"))
        .expect("a success log line");
    assert_eq!(published.level, slog::Level::Debug);
    assert_eq!(published.kv["event_id"], "evt-1");
    assert_eq!(published.kv["event_type"], "task.created");
    assert_eq!(published.kv["topic"], "task-events");
    assert_eq!(published.kv["partition_key"], "user-1");
    assert_eq!(published.kv["component"], "dapr-pubsub-client");
    assert!(!logs.dump().contains("s3cr3t-token"), "{}", logs.dump());
}

#[tokio::test]
async fn metadata_goes_to_percent_encoded_query_parameters_and_names_to_the_path() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", "/v1.0/publish/pubsub%20kafka/task%2Fevents")
        .match_query(Matcher::AllOf(vec![
            Matcher::UrlEncoded("metadata.partitionKey".into(), "explicit key".into()),
            Matcher::UrlEncoded("metadata.ttlInSeconds".into(), "90".into()),
            Matcher::UrlEncoded("metadata.rawPayload".into(), "true".into()),
            Matcher::UrlEncoded("metadata.odd&key".into(), "a=b c".into()),
        ]))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let client = client(&server.url(), CapturedLogs::default().logger());

    let options = PublishOptions::new()
        .with_partition_key("explicit key")
        .with_ttl(Duration::from_secs(90))
        .with_raw_payload(true)
        .with_metadata("odd&key", "a=b c");
    client
        .publish_with(
            "pubsub kafka",
            "task/events",
            &event("evt-2", "from-extension"),
            &options,
        )
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn json_and_bytes_are_sent_with_their_own_content_types() {
    let mut server = sidecar().await;
    let json_mock = server
        .mock("POST", "/v1.0/publish/pubsub-kafka/task-updates")
        .match_header("content-type", "application/json")
        .match_body(Matcher::Json(
            json!({"task_id": "t-9", "action": "created"}),
        ))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let text_mock = server
        .mock("POST", "/v1.0/publish/pubsub-kafka/reminders")
        .match_header("content-type", "text/plain; charset=utf-8")
        .match_query(Matcher::UrlEncoded(
            "metadata.partitionKey".into(),
            "u".into(),
        ))
        .match_body("remind me")
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let client = client(&server.url(), CapturedLogs::default().logger());

    client
        .publish_json(
            "pubsub-kafka",
            "task-updates",
            &json!({"task_id": "t-9", "action": "created"}),
            &PublishOptions::new(),
        )
        .await
        .unwrap();
    client
        .publish_bytes(
            "pubsub-kafka",
            "reminders",
            "text/plain; charset=utf-8",
            "remind me",
            &PublishOptions::new().with_partition_key("u"),
        )
        .await
        .unwrap();
    json_mock.assert_async().await;
    text_mock.assert_async().await;
}

/// Publishes one event to a sidecar answering `status` with `body` and returns the error.
async fn rejected_with(status: usize, body: &str) -> PublishError {
    let mut server = sidecar().await;
    let _mock = server
        .mock("POST", "/v1.0/publish/pubsub-kafka/task-events")
        .match_query(Matcher::Any)
        .with_status(status)
        .with_body(body)
        .expect(1)
        .create_async()
        .await;
    client(&server.url(), CapturedLogs::default().logger())
        .publish("pubsub-kafka", "task-events", &event("evt-3", "u"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn forbidden_not_found_and_server_errors_are_told_apart() {
    let forbidden = rejected_with(
        403,
        r#"{"errorCode":"ERR_PUBSUB_FORBIDDEN","message":"topic task-events is not allowed for app id x"}"#,
    )
    .await;
    assert!(forbidden.is_forbidden() && !forbidden.is_not_found());
    assert!(!forbidden.is_retryable());
    assert_eq!(forbidden.error_code(), Some("ERR_PUBSUB_FORBIDDEN"));
    assert!(forbidden.body().unwrap().contains("not allowed"));
    assert_eq!(forbidden.class(), FailureClass::Deployment);

    let not_found = rejected_with(
        404,
        r#"{"errorCode":"ERR_PUBSUB_NOT_FOUND","message":"pubsub pubsub-kafka not found"}"#,
    )
    .await;
    assert!(not_found.is_not_found() && !not_found.is_forbidden());
    assert!(!not_found.is_retryable());
    assert_eq!(not_found.class(), FailureClass::Deployment);

    let server_error = rejected_with(500, &"x".repeat(20_000)).await;
    assert_eq!(server_error.status().map(|s| s.as_u16()), Some(500));
    assert!(server_error.is_retryable());
    assert_eq!(server_error.class(), FailureClass::Unavailable);
    assert!(server_error.body().unwrap().len() <= 1024 + 3);

    let throttled = rejected_with(429, "slow down").await;
    assert!(throttled.is_retryable());

    let redirect = rejected_with(302, "").await;
    assert!(matches!(redirect, PublishError::Rejected { .. }));
    assert!(!redirect.is_retryable());
}

#[tokio::test]
async fn a_success_with_an_odd_body_is_still_a_success() {
    let mut server = sidecar().await;
    let _mock = server
        .mock("POST", "/v1.0/publish/p/t")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(vec![0xff, 0xfe, 0x00])
        .expect(1)
        .create_async()
        .await;
    client(&server.url(), CapturedLogs::default().logger())
        .publish("p", "t", &event("evt-4", "u"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_connect_error() {
    let url = format!("http://127.0.0.1:{}", refused_port());
    let err = client(&url, CapturedLogs::default().logger())
        .publish("pubsub-kafka", "task-events", &event("evt-5", "u"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.class(), FailureClass::Unavailable);
    let chain = ErrorChain(&err).to_string();
    assert!(
        chain.starts_with(&format!("could not connect to the dapr sidecar at {url}")),
        "{chain}"
    );
}

#[tokio::test]
async fn a_sidecar_slower_than_the_deadline_times_out_on_time() {
    let url = silent_sidecar().await;
    let client = PubSubClient::new(
        ClientConfig::new(&url)
            .unwrap()
            .with_request_timeout(Duration::from_millis(300)),
        None,
    );

    let started = Instant::now();
    let err = client
        .publish("pubsub-kafka", "task-events", &event("evt-6", "u"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );

    // A per-call deadline overrides the client's.
    let started = Instant::now();
    let err = client
        .publish_with(
            "pubsub-kafka",
            "task-events",
            &event("evt-7", "u"),
            &PublishOptions::new().with_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::Timeout { timeout } if timeout == Duration::from_millis(100))
    );
    assert!(
        started.elapsed() < Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_header_input_fails_before_anything_is_sent() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", Matcher::Any)
        .expect(0)
        .create_async()
        .await;
    let client = client(&server.url(), CapturedLogs::default().logger());
    let err = client
        .publish_with(
            "p",
            "t",
            &event("evt-8", "u"),
            &PublishOptions::new().with_traceparent("bad\nvalue"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::InvalidRequest { .. }),
        "{err:?}"
    );
    let err = client
        .publish_bytes("p", "t", "text/plain\r\n", "x", &PublishOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::InvalidRequest { .. }),
        "{err:?}"
    );
    mock.assert_async().await;
}
