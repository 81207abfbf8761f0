//! Dispatcher batching against a mockito sidecar: events that queue up on a lane go out as bulk
//! requests carrying at most one event per (topic, partition key), in order per key; failed
//! entries (or whole requests) are retried; a batch of one stays a single publish; metrics count
//! events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dapr_pubsub_client::{
    ClientConfig, Dispatcher, DispatcherConfig, PubSubClient, PublishOptions,
};
use mockito::Matcher;
use serde_json::{Value, json};

use crate::support::{
    BULK, Bodies, CapturedLogs, SINGLE, client, discard, event, record, sidecar, silent_sidecar,
    submit_all,
};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One lane, batches of up to 10, fast retries.
fn batching(max_batch: usize) -> DispatcherConfig {
    DispatcherConfig::new()
        .with_concurrency(1)
        .with_max_batch(max_batch)
        .with_max_attempts(3)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// Submits plain events (no extra options) to `task-events`, each keyed `user-{id}` (so they
/// may share a bulk request), in the order of `ids`.
fn submit_spread(dispatcher: &Dispatcher, ids: &[&str]) {
    for id in ids {
        submit_all(dispatcher, &format!("user-{id}"), &[id]);
    }
}

/// The entry ids of a recorded bulk body.
fn ids(body: &Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["entryId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn queued_events_of_several_keys_go_out_as_one_bulk_request_and_a_key_s_next_event_after_it()
{
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Missing)
        .match_header("content-type", "application/json")
        .match_header("dapr-api-token", "secret-token")
        .match_header("traceparent", TRACEPARENT)
        .with_status(204)
        .with_body_from_request(record(&bodies, ""))
        .expect(1)
        .create_async()
        .await;
    let single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::UrlEncoded(
            "metadata.partitionKey".into(),
            "user-1".into(),
        ))
        .match_header("content-type", "application/cloudevents+json")
        .match_header("dapr-api-token", "secret-token")
        .match_header("traceparent", TRACEPARENT)
        .match_body(Matcher::PartialJson(json!({"id": "u1-b"})))
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let config = ClientConfig::new(&server.url())
        .unwrap()
        .with_api_token("secret-token");
    let dispatcher = Dispatcher::spawn(PubSubClient::new(config, None), batching(10), None);

    // Submitted before the lane runs (current-thread runtime): they queue up. user-1's second
    // event must wait for the outcome of its first.
    let traced = || PublishOptions::new().with_traceparent(TRACEPARENT);
    let sent: Vec<_> = (1..=5)
        .map(|n| event(&format!("u{n}-a"), &format!("user-{n}")))
        .collect();
    dispatcher
        .submit("pubsub-kafka", "task-events", &sent[0], traced())
        .unwrap();
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("u1-b", "user-1"),
            traced(),
        )
        .unwrap();
    for event in &sent[1..] {
        dispatcher
            .submit("pubsub-kafka", "task-events", event, traced())
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;

    bulk.assert_async().await;
    single.assert_async().await;
    assert!(report.is_complete(), "{report:?}");
    let bodies = bodies.lock().unwrap();
    let entries = bodies[0].as_array().unwrap();
    assert_eq!(
        entries.len(),
        5,
        "the first event of each key in one request"
    );
    for (n, (entry, event)) in entries.iter().zip(&sent).enumerate() {
        assert_eq!(
            entry["entryId"],
            event.id(),
            "entry id = event id, in submit order"
        );
        assert_eq!(entry["contentType"], "application/cloudevents+json");
        assert_eq!(entry["event"], serde_json::to_value(event).unwrap());
        assert_eq!(
            entry["metadata"]["partitionKey"],
            format!("user-{}", n + 1),
            "each entry carries its own key"
        );
    }
    let metrics = report.metrics;
    assert_eq!(
        (
            metrics.submitted,
            metrics.published,
            metrics.failed,
            metrics.retried
        ),
        (6, 6, 0, 0)
    );
    assert_eq!((metrics.bulk_requests, metrics.bulk_entries), (1, 5));
    assert_eq!(metrics.latency.count(), 2, "two HTTP exchanges");
    assert_eq!((metrics.queue_depth, metrics.in_flight), (0, 0));
}

#[tokio::test]
async fn batches_carry_one_event_per_key_in_order_and_an_event_that_cannot_join_goes_alone() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request({
            let recorder = record(&bodies, "");
            let order = Arc::clone(&order);
            move |request: &mockito::Request| {
                let body: Value = serde_json::from_slice(request.body().unwrap()).unwrap();
                order.lock().unwrap().extend(ids(&body));
                recorder(request)
            }
        })
        .expect(3)
        .create_async()
        .await;
    let single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request({
            let order = Arc::clone(&order);
            move |request: &mockito::Request| {
                // Raw bytes are not JSON: record them as "raw".
                let id = serde_json::from_slice::<Value>(request.body().unwrap())
                    .ok()
                    .and_then(|body| body["id"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "raw".to_owned());
                order.lock().unwrap().push(id);
                Vec::new()
            }
        })
        .expect(4)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(10), None);
    let submit = |id: &str, key: &str, options: PublishOptions| {
        dispatcher
            .submit("pubsub-kafka", "task-events", &event(id, key), options)
            .unwrap();
    };
    // Two keys interleaved; user-1 also gets an event with other metadata (a TTL), which must
    // not be overtaken, and raw bytes the bulk API cannot carry.
    submit("a1", "user-a", PublishOptions::new());
    submit("b1", "user-b", PublishOptions::new());
    submit("a2", "user-a", PublishOptions::new());
    submit("b2", "user-b", PublishOptions::new());
    submit(
        "a3-ttl",
        "user-a",
        PublishOptions::new().with_ttl(Duration::from_secs(60)),
    );
    submit("b3", "user-b", PublishOptions::new());
    submit("a4", "user-a", PublishOptions::new());
    submit("a5", "user-a", PublishOptions::new());
    dispatcher
        .submit_bytes(
            "pubsub-kafka",
            "task-events",
            "application/octet-stream",
            &b"\x00raw"[..],
            PublishOptions::new().with_partition_key("user-b"),
        )
        .unwrap();
    submit("b4", "user-b", PublishOptions::new());
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;

    bulk.assert_async().await;
    single.assert_async().await;
    assert!(report.is_complete(), "{report:?}");
    let batches: Vec<Vec<String>> = bodies.lock().unwrap().iter().map(ids).collect();
    // One event per key and request; a3-ttl (other metadata) and the raw bytes go alone, and
    // the events of their key wait for them.
    assert_eq!(
        batches,
        vec![
            vec!["a1".to_owned(), "b1".to_owned()],
            vec!["a2".to_owned(), "b2".to_owned()],
            vec!["b3".to_owned(), "a4".to_owned()],
        ]
    );
    let order = order.lock().unwrap().clone();
    let position = |id: &str| order.iter().position(|seen| seen == id).unwrap();
    for keyed in [
        ["a1", "a2", "a3-ttl", "a4", "a5"].as_slice(),
        ["b1", "b2", "b3", "raw", "b4"].as_slice(),
    ] {
        let positions: Vec<_> = keyed.iter().map(|id| position(id)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
    assert_eq!(order.len(), 10, "{order:?}");
    let metrics = report.metrics;
    assert_eq!((metrics.published, metrics.failed), (10, 0));
    assert_eq!((metrics.bulk_requests, metrics.bulk_entries), (3, 6));
}

#[tokio::test]
async fn failed_entries_alone_are_retried_with_the_same_ids_and_bytes() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    // Dapr's partial failure: 500 listing the failed entries.
    let partial = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .match_body(Matcher::Regex(r#"^\[\{"entryId":"p1""#.into()))
        .with_status(500)
        .with_header("content-type", "application/json")
        .with_body_from_request(record(
            &bodies,
            r#"{"failedEntries":[{"entryId":"p2","error":"kafka: Failed to deliver 1 messages"}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}"#,
        ))
        .expect(1)
        .create_async()
        .await;
    // The retry carries p2 only: a single publish.
    let retry = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .match_body(Matcher::PartialJson(json!({"id": "p2"})))
        .with_status(500)
        .with_body_from_request(record(
            &bodies,
            r#"{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}"#,
        ))
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), logs.logger()),
        batching(10),
        logs.logger(),
    );
    submit_spread(&dispatcher, &["p1", "p2", "p3"]);
    // The second retry of p2 succeeds: a mock registered after the first two are used up.
    let last = server
        .mock("POST", SINGLE)
        .match_query(Matcher::UrlEncoded(
            "metadata.partitionKey".into(),
            "user-p2".into(),
        ))
        .match_body(Matcher::PartialJson(json!({"id": "p2"})))
        .with_status(204)
        .with_body_from_request(record(&bodies, ""))
        .expect(1)
        .create_async()
        .await;
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;

    partial.assert_async().await;
    retry.assert_async().await;
    last.assert_async().await;
    assert!(report.is_complete(), "{report:?}");
    let bodies = bodies.lock().unwrap();
    assert_eq!(ids(&bodies[0]), ["p1", "p2", "p3"]);
    assert_eq!(
        bodies[1], bodies[0][1]["event"],
        "the retried event is the very same event (id, bytes)"
    );
    let metrics = report.metrics;
    assert_eq!(
        (metrics.published, metrics.retried, metrics.failed),
        (3, 2, 0),
        "events are counted, not requests"
    );
    assert_eq!((metrics.bulk_requests, metrics.bulk_entries), (1, 3));
    let retries: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.contains("retrying"))
        .collect();
    assert_eq!(retries.len(), 2);
    // The sidecar answered with an error: ERROR.
    assert!(retries.iter().all(|r| r.level == slog::Level::Error
        && r.kv["event_id"] == "p2"
        && r.kv["status"] == "500"));
    assert_eq!(retries[0].kv["bulk_entries"], "3");
}

#[tokio::test]
async fn a_whole_request_failure_retries_the_whole_batch_and_gives_up_at_the_limit() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    // A 503 without an entry list: the request failed as a whole.
    let failing = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(503)
        .with_body_from_request(record(&bodies, r#"{"errorCode":"ERR_UNAVAILABLE"}"#))
        .expect(3)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), logs.logger()),
        batching(10),
        logs.logger(),
    );
    submit_spread(&dispatcher, &["w1", "w2", "w3"]);
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;

    failing.assert_async().await;
    assert!(
        report.is_complete(),
        "given up on, not undelivered: {report:?}"
    );
    let bodies = bodies.lock().unwrap();
    assert!(
        bodies
            .iter()
            .all(|body| *body == bodies[0] && ids(body) == ["w1", "w2", "w3"]),
        "every attempt resends the whole batch unchanged"
    );
    let metrics = report.metrics;
    assert_eq!(
        (metrics.published, metrics.retried, metrics.failed),
        (0, 6, 3)
    );
    assert_eq!((metrics.bulk_requests, metrics.bulk_entries), (3, 9));
    let gave_up: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.starts_with("gave up"))
        .collect();
    assert_eq!(gave_up.len(), 3, "one line per event");
    assert!(gave_up.iter().all(|r| r.level == slog::Level::Error
        && r.kv["status"] == "503"
        && r.kv["attempts"] == "3"));
}

#[tokio::test]
async fn a_whole_request_failure_then_success_publishes_every_event_once() {
    let mut server = sidecar().await;
    let bodies = Bodies::default();
    let failing = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(500)
        .with_body_from_request(record(&bodies, "internal error"))
        .expect(1)
        .create_async()
        .await;
    let succeeding = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(record(&bodies, ""))
        .expect(1)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), batching(4), None);
    submit_spread(&dispatcher, &["c1", "c2"]);
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    failing.assert_async().await;
    succeeding.assert_async().await;
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies[0], bodies[1], "the retry resends the same batch");
    let metrics = report.metrics;
    assert_eq!(
        (metrics.published, metrics.retried, metrics.failed),
        (2, 2, 0)
    );
    assert_eq!((metrics.bulk_requests, metrics.bulk_entries), (2, 4));
}

#[tokio::test]
async fn linger_lets_a_batch_wait_for_events_submitted_shortly_after() {
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
        batching(10).with_linger(Duration::from_millis(300)),
        None,
    );
    submit_spread(&dispatcher, &["l1"]);
    // Let the lane take l1 and start lingering, then add l2.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(dispatcher.metrics().published, 0, "still lingering");
    submit_spread(&dispatcher, &["l2"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    assert_eq!(ids(&bodies.lock().unwrap()[0]), ["l1", "l2"]);
    assert_eq!(
        (report.metrics.published, report.metrics.bulk_requests),
        (2, 1)
    );
}

#[tokio::test]
async fn a_timed_out_shutdown_hands_back_the_batch_in_flight_and_the_queue() {
    let url = silent_sidecar().await;
    let dispatcher = Dispatcher::spawn(
        PubSubClient::new(
            ClientConfig::new(&url)
                .unwrap()
                .with_request_timeout(Duration::from_secs(30)),
            None,
        ),
        batching(3),
        None,
    );
    submit_spread(&dispatcher, &["s1", "s2", "s3", "s4", "s5"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        dispatcher.metrics().in_flight,
        3,
        "one batch of three in flight"
    );
    let report = dispatcher.shutdown(Duration::from_millis(200)).await;

    assert!(report.timed_out);
    let mut lost: Vec<_> = report
        .undelivered
        .iter()
        .map(|event| (event.event_id.as_str(), event.attempts))
        .collect();
    lost.sort_unstable();
    assert_eq!(
        lost,
        [("s1", 1), ("s2", 1), ("s3", 1), ("s4", 0), ("s5", 0)],
        "the batch in flight (one attempt) and the queued events (none)"
    );
    assert!(
        report
            .undelivered
            .iter()
            .all(|event| event.content_type == "application/cloudevents+json"
                && event.options.partition_key() == Some(&*format!("user-{}", event.event_id)))
    );
    let metrics = report.metrics;
    assert_eq!((metrics.queue_depth, metrics.in_flight), (0, 0));
    assert_eq!((metrics.published, metrics.failed), (0, 0));
}

#[tokio::test]
async fn events_of_different_traces_are_not_batched_and_keep_their_traceparent() {
    const OTHER_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut server = sidecar().await;
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(0)
        .create_async()
        .await;
    let mut singles = Vec::new();
    for trace in [TRACEPARENT, OTHER_TRACE] {
        singles.push(
            server
                .mock("POST", SINGLE)
                .match_query(Matcher::Any)
                .match_header("traceparent", trace)
                .with_status(204)
                .expect(1)
                .create_async()
                .await,
        );
    }
    // The linger keeps the first event waiting until the second is queued behind it: only the
    // trace context keeps them apart.
    let config = batching(10).with_linger(Duration::from_millis(200));
    let dispatcher = Dispatcher::spawn(client(&server.url(), discard()), config, None);
    for (id, trace) in [("t1", TRACEPARENT), ("t2", OTHER_TRACE)] {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(id, &format!("user-{id}")),
                PublishOptions::new().with_traceparent(trace),
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    bulk.assert_async().await;
    for single in &singles {
        single.assert_async().await;
    }
    assert_eq!(report.metrics.published, 2);
    assert_eq!(report.metrics.bulk_requests, 0);
}

#[tokio::test]
async fn a_lane_with_other_events_waiting_does_not_linger() {
    let mut server = sidecar().await;
    let _single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(3)
        .create_async()
        .await;
    let linger = Duration::from_millis(1000);
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        batching(10).with_linger(linger),
        None,
    );
    // x is alone on the lane: it waits the linger. y and w (other traces, so no batch mates)
    // queue up meanwhile: y must go at once after x, since w is waiting behind it; w, alone
    // again, waits its linger.
    let traced = |id: &str, trace: &str| {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(id, &format!("user-{id}")),
                PublishOptions::new()
                    .with_traceparent(format!("00-{trace:0>32}-00f067aa0ba902b7-01")),
            )
            .unwrap();
    };
    traced("x", "1");
    tokio::time::sleep(linger / 4).await;
    traced("y", "2");
    traced("w", "3");
    tokio::time::sleep(linger + linger / 2 - linger / 4).await;
    assert_eq!(
        dispatcher.metrics().published,
        2,
        "x after its linger, y right after it, w still lingering"
    );
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.metrics.published, 3);
}
