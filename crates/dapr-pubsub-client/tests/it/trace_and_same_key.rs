//! Batching across traces when each event carries its own trace context (the CloudEvents
//! distributed-tracing extension), and the opt-in same-key batches with their detector of broken
//! order, against a mockito sidecar.

use std::time::Duration;

use cloudevents_model::CloudEvent;
use dapr_pubsub_client::{Dispatcher, DispatcherConfig, PublishOptions};
use mockito::Matcher;
use serde_json::json;

use crate::support::{
    BULK, Bodies, CapturedLogs, SINGLE, client, discard, event, record, sidecar, submit_all,
    submit_keyed,
};

fn trace(n: u32) -> String {
    format!("00-{n:0>32}-00f067aa0ba902b7-01")
}

/// One lane, batches of up to 10, fast retries.
fn batching() -> DispatcherConfig {
    DispatcherConfig::new()
        .with_concurrency(1)
        .with_max_batch(10)
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// A task-like event of `key` carrying `traceparent` as its distributed-tracing extension.
fn traced_event(id: &str, key: &str, traceparent: &str) -> CloudEvent {
    CloudEvent::builder(id, "pakaura/api", "task.created")
        .subject("task-1")
        .json_data(&json!({"task_id": "task-1"}))
        .extension("partitionkey", key)
        .extension("traceparent", traceparent)
        .build()
        .unwrap()
}

#[tokio::test]
async fn events_carrying_their_trace_context_share_a_bulk_request_across_traces() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    // No trace context header: the events differ, each keeps its own in the event and as entry
    // metadata (which the Kafka component writes as a record header).
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Missing)
        .match_header("traceparent", Matcher::Missing)
        .with_status(204)
        .with_body_from_request(record(&bodies, ""))
        .expect(1)
        .create_async()
        .await;
    let single = server.mock("POST", SINGLE).expect(0).create_async().await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(), None);
    for n in 1..=3 {
        let traceparent = trace(n);
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &traced_event(&format!("t{n}"), &format!("user-{n}"), &traceparent),
                PublishOptions::new().with_traceparent(traceparent.clone()),
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    single.assert_async().await;
    let bodies = bodies.lock().unwrap();
    let entries = bodies[0].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for (n, entry) in (1..=3).zip(entries) {
        assert_eq!(entry["entryId"], json!(format!("t{n}")));
        assert_eq!(entry["event"]["traceparent"], json!(trace(n)));
        assert_eq!(
            entry["metadata"],
            json!({"partitionKey": format!("user-{n}"), "traceparent": trace(n)})
        );
    }
    assert_eq!(
        (report.metrics.published, report.metrics.bulk_requests),
        (3, 1)
    );
}

#[tokio::test]
async fn a_shared_trace_keeps_its_header_and_a_single_publish_sends_header_and_metadata() {
    let mut server = sidecar().await;
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Missing)
        .match_header("traceparent", trace(7).as_str())
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::AllOf(vec![
            Matcher::UrlEncoded("metadata.partitionKey".into(), "user-x".into()),
            Matcher::UrlEncoded("metadata.traceparent".into(), trace(8)),
        ]))
        .match_header("traceparent", trace(8).as_str())
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(), None);
    for (id, key) in [("s1", "user-1"), ("s2", "user-2")] {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &traced_event(id, key, &trace(7)),
                PublishOptions::new().with_traceparent(trace(7)),
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(), None);
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &traced_event("x", "user-x", &trace(8)),
            PublishOptions::new().with_traceparent(trace(8)),
        )
        .unwrap();
    let second = dispatcher.shutdown(Duration::from_secs(10)).await;
    single.assert_async().await;
    assert_eq!((report.metrics.published, second.metrics.published), (2, 1));
}

#[tokio::test]
async fn without_the_opt_in_one_key_sends_one_event_per_request() {
    let mut server = sidecar().await;
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .expect(0)
        .create_async()
        .await;
    let single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(4)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(), None);
    for id in ["a", "b", "c", "d"] {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(id, "user-1"),
                PublishOptions::new(),
            )
            .unwrap();
    }
    dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    single.assert_async().await;
}

#[tokio::test]
async fn with_the_opt_in_one_key_s_queued_events_go_out_as_one_bulk_request_in_order() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(record(&bodies, ""))
        .expect(1)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        batching().with_same_key_batches(true),
        None,
    );
    // Submitted before the lane runs (current-thread runtime): they queue up.
    submit_all(&dispatcher, "user-1", &["a", "b", "c", "d"]);
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    let ids: Vec<String> = bodies.lock().unwrap()[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["entryId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(
        (
            report.metrics.published,
            report.metrics.bulk_requests,
            report.metrics.overtaken
        ),
        (4, 1, 0)
    );
}

#[tokio::test]
async fn the_detector_counts_and_logs_a_failed_entry_overtaken_by_a_later_event_of_its_key() {
    let mut server = sidecar().await;
    // Kafka refused a (too large, say) while b of the same key went through.
    let partial = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(500)
        .with_header("content-type", "application/json")
        .with_body(
            r#"{"failedEntries":[{"entryId":"a","error":"kafka: message too large"}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}"#,
        )
        .expect(1)
        .create_async()
        .await;
    let retry = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "a"})))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        batching().with_same_key_batches(true),
        logs.logger(),
    );
    submit_keyed(
        &dispatcher,
        &[("a", "user-1"), ("b", "user-1"), ("c", "user-2")],
    );
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    partial.assert_async().await;
    retry.assert_async().await;
    assert_eq!((report.metrics.published, report.metrics.overtaken), (3, 1));
    let warnings: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|record| record.message.contains("overtaken"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", logs.dump());
    assert_eq!(warnings[0].level, slog::Level::Warning);
    assert_eq!(warnings[0].kv["failed_event_ids"], "a");
    assert_eq!(warnings[0].kv["published_after_event_ids"], "b");
    assert_eq!(warnings[0].kv["partition_key"], "user-1");
}
