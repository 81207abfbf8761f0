//! Background delivery against a mockito sidecar: retries, order per key, queue full, shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dapr_pubsub_client::{Dispatcher, DispatcherConfig, PublishOptions, SubmitError};
use mockito::Matcher;
use serde_json::json;

use crate::support::{CapturedLogs, client, discard, event, refused_port, sidecar, silent_sidecar};

const PATH: &str = "/v1.0/publish/pubsub-kafka/task-events";

fn fast_retries(lanes: usize) -> DispatcherConfig {
    DispatcherConfig::new()
        .with_concurrency(lanes)
        .with_max_attempts(4)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

#[tokio::test]
async fn retries_a_server_error_with_the_same_event_bytes_then_succeeds() {
    let mut server = sidecar().await;
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let record = |bodies: &Arc<Mutex<Vec<Vec<u8>>>>| {
        let bodies = Arc::clone(bodies);
        move |request: &mockito::Request| {
            bodies.lock().unwrap().push(request.body().unwrap().clone());
            Vec::new()
        }
    };
    let failing = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "evt-retry"})))
        .with_status(500)
        .with_body_from_request(record(&bodies))
        .expect(2)
        .create_async()
        .await;
    let succeeding = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "evt-retry"})))
        .match_query(Matcher::UrlEncoded(
            "metadata.partitionKey".into(),
            "user-9".into(),
        ))
        .with_status(204)
        .with_body_from_request(record(&bodies))
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), logs.logger()),
        fast_retries(2),
        logs.logger(),
    );

    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("evt-retry", "user-9"),
            PublishOptions::new(),
        )
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;

    assert!(report.is_complete() && !report.timed_out);
    failing.assert_async().await;
    succeeding.assert_async().await;
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|body| *body == bodies[0]),
        "every attempt sends the same bytes"
    );
    let metrics = report.metrics;
    assert_eq!(
        (metrics.published, metrics.retried, metrics.failed),
        (1, 2, 0)
    );
    assert_eq!(metrics.latency.count(), 3);
    assert_eq!(metrics.queue_depth, 0);

    let records = logs.records();
    let retry_lines: Vec<_> = records
        .iter()
        .filter(|r| r.message.contains("retrying"))
        .collect();
    assert_eq!(retry_lines.len(), 2);
    // The sidecar answered with an error: ERROR (no answer at all would be a WARN).
    assert!(retry_lines.iter().all(|r| r.level == slog::Level::Error
        && r.kv["event_id"] == "evt-retry"
        && r.kv["status"] == "500"
        && r.kv["partition_key"] == "user-9"));
}

#[tokio::test]
async fn a_rejection_is_not_retried_and_is_logged_as_an_error() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .with_status(403)
        .with_body(r#"{"errorCode":"ERR_PUBSUB_FORBIDDEN"}"#)
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), logs.logger()),
        fast_retries(1),
        logs.logger(),
    );
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("evt-403", "u"),
            PublishOptions::new(),
        )
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    mock.assert_async().await;
    assert_eq!((report.metrics.failed, report.metrics.retried), (1, 0));
    let gave_up = logs
        .records()
        .into_iter()
        .find(|r| r.message.starts_with("gave up"))
        .expect("a failure log line");
    assert_eq!(gave_up.level, slog::Level::Error);
    assert_eq!(gave_up.kv["status"], "403");
    assert!(gave_up.kv["body"].contains("ERR_PUBSUB_FORBIDDEN"));
    assert_eq!(gave_up.kv["event_type"], "task.created");
}

#[tokio::test]
async fn retries_stop_at_the_limit_and_a_refused_connection_logs_a_warning() {
    let url = format!("http://127.0.0.1:{}", refused_port());
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(client(&url, logs.logger()), fast_retries(1), logs.logger());
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("evt-refused", "u"),
            PublishOptions::new(),
        )
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (
            report.metrics.failed,
            report.metrics.retried,
            report.metrics.published
        ),
        (1, 3, 0)
    );
    let gave_up = logs
        .records()
        .into_iter()
        .find(|r| r.message.starts_with("gave up"))
        .expect("a failure log line");
    assert_eq!(gave_up.level, slog::Level::Warning);
    assert!(
        gave_up.kv["error"].contains("could not connect"),
        "{:?}",
        gave_up.kv
    );
    assert_eq!(gave_up.kv["attempts"], "4");
}

#[tokio::test]
async fn events_with_one_partition_key_arrive_in_submit_order_even_across_retries() {
    let mut server = sidecar().await;
    let seen = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    // The third event of key k0 fails once; k0's later events must still come after it.
    let _flaky = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "k0-2"})))
        .with_status(503)
        .expect(1)
        .create_async()
        .await;
    let keys = 6;
    let per_key = 25;
    let recorder = Arc::clone(&seen);
    let _ok = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(move |request| {
            let body: serde_json::Value = serde_json::from_slice(request.body().unwrap()).unwrap();
            let id = body["id"].as_str().unwrap();
            let (key, seq) = id.split_once('-').unwrap();
            recorder
                .lock()
                .unwrap()
                .push((key.to_owned(), seq.parse().unwrap()));
            Vec::new()
        })
        .expect(keys * per_key)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), fast_retries(4), None);

    for seq in 0..per_key {
        for key in 0..keys {
            let key = format!("k{key}");
            dispatcher
                .submit(
                    "pubsub-kafka",
                    "task-events",
                    &event(&format!("{key}-{seq}"), &key),
                    PublishOptions::new(),
                )
                .unwrap();
        }
    }
    let report = dispatcher.shutdown(Duration::from_secs(20)).await;
    assert!(report.is_complete());
    assert_eq!(report.metrics.published, (keys * per_key) as u64);

    let mut per_key_order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, seq) in seen.lock().unwrap().iter() {
        per_key_order.entry(key.clone()).or_default().push(*seq);
    }
    assert_eq!(per_key_order.len(), keys);
    for (key, order) in per_key_order {
        assert_eq!(
            order,
            (0..per_key as u64).collect::<Vec<_>>(),
            "order of {key}"
        );
    }
}

#[tokio::test]
async fn a_full_queue_drops_counts_and_logs_without_blocking() {
    let url = silent_sidecar().await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&url, discard()),
        DispatcherConfig::new()
            .with_concurrency(1)
            .with_queue_capacity(3),
        logs.logger(),
    );

    // The test runtime is single-threaded: no lane runs between these calls.
    let results: Vec<_> = (0..10)
        .map(|i| {
            dispatcher.submit(
                "pubsub-kafka",
                "task-events",
                &event(&format!("e{i}"), "u"),
                PublishOptions::new(),
            )
        })
        .collect();
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(
        results[3..]
            .iter()
            .all(|r| matches!(r, Err(SubmitError::QueueFull { capacity: 3 })))
    );
    let metrics = dispatcher.metrics();
    assert_eq!(
        (metrics.submitted, metrics.dropped, metrics.queue_depth),
        (3, 7, 3)
    );
    let drops: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.starts_with("dropped"))
        .collect();
    assert_eq!(drops.len(), 7);
    assert!(drops.iter().all(|r| r.level == slog::Level::Warning));
    assert_eq!(drops[0].kv["event_id"], "e3");

    // The sidecar never answers: shutdown gives up at its deadline and hands everything back.
    let report = dispatcher.shutdown(Duration::from_millis(300)).await;
    assert!(report.timed_out);
    assert!(
        report.elapsed < Duration::from_secs(3),
        "{:?}",
        report.elapsed
    );
    let mut ids: Vec<_> = report
        .undelivered
        .iter()
        .map(|u| u.event_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["e0", "e1", "e2"]);
    let first = report
        .undelivered
        .iter()
        .find(|u| u.event_id == "e0")
        .unwrap();
    assert_eq!(first.attempts, 1, "e0 was in flight");
    assert_eq!(first.content_type, "application/cloudevents+json");
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["id"], "e0");
    assert_eq!(report.metrics.queue_depth, 0);
    assert_eq!(report.metrics.in_flight, 0);

    // Closed for good.
    assert!(matches!(
        dispatcher.submit(
            "pubsub-kafka",
            "task-events",
            &event("late", "u"),
            PublishOptions::new()
        ),
        Err(SubmitError::Closed)
    ));
}

#[tokio::test]
async fn shutdown_drains_everything_queued_within_the_deadline() {
    let mut server = sidecar().await;
    let events = 200;
    let mock = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(events)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), fast_retries(8), None);
    for i in 0..events {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(&format!("d{i}"), &format!("user-{}", i % 13)),
                PublishOptions::new(),
            )
            .unwrap();
    }
    let raw = dispatcher.submit_bytes(
        "pubsub-kafka",
        "task-events",
        "text/plain\n",
        "x",
        PublishOptions::new(),
    );
    assert!(matches!(raw, Err(SubmitError::InvalidContentType)));

    let report = dispatcher.shutdown(Duration::from_secs(20)).await;
    assert!(report.is_complete() && !report.timed_out);
    assert_eq!(report.metrics.published, events as u64);
    assert_eq!(report.metrics.submitted, events as u64);
    assert_eq!(report.metrics.latency.count(), events as u64);
    mock.assert_async().await;
    // A second shutdown is harmless.
    assert!(
        dispatcher
            .shutdown(Duration::from_millis(10))
            .await
            .is_complete()
    );
}

#[tokio::test]
async fn a_dropped_dispatcher_still_delivers_what_it_was_given() {
    let mut server = sidecar().await;
    let mock = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(5)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), fast_retries(2), None);
    for i in 0..5 {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(&format!("drop-{i}"), "u"),
                PublishOptions::new(),
            )
            .unwrap();
    }
    drop(dispatcher);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !mock.matched_async().await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    mock.assert_async().await;
}

#[tokio::test]
async fn a_timed_out_shutdown_with_idle_lanes_hands_back_the_stuck_events() {
    // Most lanes are idle and finish at once, a few hang on a silent sidecar: the shutdown must wait out the
    // deadline, stop the stuck lanes and return, whatever order the lanes finish in.
    let url = silent_sidecar().await;
    let dispatcher = Dispatcher::spawn(
        client(&url, discard()),
        DispatcherConfig::new().with_concurrency(8),
        discard(),
    );
    for key in ["a", "b", "c"] {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(&format!("stuck-{key}"), key),
                PublishOptions::new().with_partition_key(key),
            )
            .unwrap();
    }
    tokio::task::yield_now().await;

    let report = dispatcher.shutdown(Duration::from_millis(300)).await;
    assert!(report.timed_out);
    let mut ids: Vec<_> = report
        .undelivered
        .iter()
        .map(|u| u.event_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["stuck-a", "stuck-b", "stuck-c"]);
}

#[tokio::test]
async fn delivery_log_lines_carry_the_submitter_s_fields_at_the_level_of_the_outcome() {
    let mut server = sidecar().await;
    let _rejected = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "evt-bad"})))
        .with_status(400)
        .with_body(r#"{"errorCode":"ERR_PUBSUB_CLOUD_EVENTS_SER","message":"bad event"}"#)
        .expect(1)
        .create_async()
        .await;
    let _accepted = server
        .mock("POST", PATH)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "evt-good"})))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        fast_retries(1),
        logs.logger(),
    );
    for id in ["evt-bad", "evt-good"] {
        dispatcher
            .submit_with_log_fields(
                "pubsub-kafka",
                "task-events",
                &event(id, "user-1"),
                PublishOptions::new(),
                vec![
                    ("task_id", format!("task-of-{id}")),
                    ("correlation_id", "c-1".to_owned()),
                ],
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.metrics.published, report.metrics.failed), (1, 1));

    let records = logs.records();
    let about = |id: &str| -> Vec<_> {
        records
            .iter()
            .filter(|r| r.kv.get("event_id").map(String::as_str) == Some(id))
            .collect()
    };
    let bad = about("evt-bad");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].message.starts_with("gave up"), "{bad:?}");
    assert_eq!(bad[0].level, slog::Level::Error, "a non-2xx answer");
    assert_eq!(bad[0].kv["status"], "400");
    assert!(bad[0].kv["body"].contains("bad event"));
    assert_eq!(bad[0].kv["task_id"], "task-of-evt-bad");
    assert_eq!(bad[0].kv["correlation_id"], "c-1");
    assert_eq!(bad[0].kv["event_type"], "task.created");
    assert_eq!(bad[0].kv["topic"], "task-events");
    let good = about("evt-good");
    assert_eq!(good.len(), 1, "{good:?}");
    assert_eq!(good[0].level, slog::Level::Debug, "a 2xx answer");
    assert_eq!(good[0].kv["task_id"], "task-of-evt-good");
}
