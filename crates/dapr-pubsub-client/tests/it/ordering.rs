//! Order per partition key under partial failures, reservations (commit-order hand-off), and the
//! stable bulk route with its fallback, against a mockito sidecar.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dapr_pubsub_client::{BulkEntry, Dispatcher, DispatcherConfig, PublishOptions, Reservation};
use mockito::Matcher;
use serde_json::{Value, json};

use crate::support::{BULK, CapturedLogs, SINGLE, client, discard, event, sidecar, submit_keyed};

const ALPHA_BULK: &str = "/v1.0-alpha1/publish/bulk/pubsub-kafka/task-events";

type Accepted = Arc<Mutex<Vec<String>>>;

/// Records the ids of a single publish body as accepted.
fn accept_single(
    accepted: &Accepted,
) -> impl Fn(&mockito::Request) -> Vec<u8> + Send + Sync + 'static {
    let accepted = Arc::clone(accepted);
    move |request: &mockito::Request| {
        let body: Value = serde_json::from_slice(request.body().unwrap()).unwrap();
        accepted
            .lock()
            .unwrap()
            .push(body["id"].as_str().unwrap().to_owned());
        Vec::new()
    }
}

/// Records the entries of a bulk body as accepted, except `failing`, which the answer lists as
/// failed.
fn accept_bulk(
    accepted: &Accepted,
    failing: &'static str,
) -> impl Fn(&mockito::Request) -> Vec<u8> + Send + Sync + 'static {
    let accepted = Arc::clone(accepted);
    move |request: &mockito::Request| {
        let body: Value = serde_json::from_slice(request.body().unwrap()).unwrap();
        for entry in body.as_array().unwrap() {
            let id = entry["entryId"].as_str().unwrap();
            if id != failing {
                accepted.lock().unwrap().push(id.to_owned());
            }
        }
        if failing.is_empty() {
            Vec::new()
        } else {
            format!(
                r#"{{"failedEntries":[{{"entryId":"{failing}","error":"kafka: Failed to deliver 1 messages"}}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}}"#
            )
            .into_bytes()
        }
    }
}

#[tokio::test]
async fn a_partially_failed_bulk_entry_is_never_overtaken_by_a_later_event_of_its_key() {
    let mut server = sidecar().await;
    let accepted = Accepted::default();
    // The first bulk request that carries b1 fails b1 only (Dapr's partial failure).
    let partial = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .match_body(Matcher::Regex(r#""entryId":"b1""#.into()))
        .with_status(500)
        .with_header("content-type", "application/json")
        .with_body_from_request(accept_bulk(&accepted, "b1"))
        .expect(1)
        .create_async()
        .await;
    let bulk = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(accept_bulk(&accepted, ""))
        .expect(0)
        .create_async()
        .await;
    // Then a2 alone (b1 waits for its retry, b2 and b3 behind it), b1, b2, b3: single publishes.
    let single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(accept_single(&accepted))
        .expect(4)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        DispatcherConfig::new()
            .with_concurrency(1)
            .with_max_batch(10)
            .with_backoff(Duration::from_millis(20), Duration::from_millis(20)),
        None,
    );
    // Queued before the lane runs (current-thread runtime).
    submit_keyed(
        &dispatcher,
        &[
            ("a1", "user-a"),
            ("b1", "user-b"),
            ("b2", "user-b"),
            ("a2", "user-a"),
            ("b3", "user-b"),
        ],
    );
    let report = dispatcher.shutdown(Duration::from_secs(10)).await;
    partial.assert_async().await;
    bulk.assert_async().await;
    single.assert_async().await;

    assert!(report.is_complete(), "{report:?}");
    let accepted = accepted.lock().unwrap().clone();
    let of_key = |prefix: char| -> Vec<&str> {
        accepted
            .iter()
            .filter(|id| id.starts_with(prefix))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(of_key('b'), ["b1", "b2", "b3"], "accepted: {accepted:?}");
    assert_eq!(of_key('a'), ["a1", "a2"], "accepted: {accepted:?}");
    // user-a kept flowing while b1 waited for its retry.
    let position = |id: &str| accepted.iter().position(|seen| seen == id).unwrap();
    assert!(position("a2") < position("b1"), "accepted: {accepted:?}");
    let metrics = report.metrics;
    assert_eq!(
        (metrics.published, metrics.retried, metrics.failed),
        (5, 1, 0)
    );
}

#[tokio::test]
async fn events_reach_the_sidecar_in_reservation_order_whatever_order_they_are_filled_in() {
    let mut server = sidecar().await;
    let accepted = Accepted::default();
    let _single = server
        .mock("POST", SINGLE)
        .match_query(Matcher::Any)
        .with_status(204)
        .with_body_from_request(accept_single(&accepted))
        .expect(4)
        .create_async()
        .await;
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        DispatcherConfig::new().with_concurrency(1),
        None,
    );
    let add = |reservation: &mut Reservation, id: &str| {
        reservation
            .add(
                "pubsub-kafka",
                "task-events",
                &event(id, "user-r"),
                PublishOptions::new(),
                vec![("task_id", "task-1".to_owned())],
            )
            .unwrap();
    };
    // Change A commits before change B: A's place is taken first.
    let mut first = dispatcher.reserve("user-r").unwrap();
    let mut second = dispatcher.reserve("user-r").unwrap();
    let abandoned = dispatcher.reserve("user-r").unwrap();
    assert_eq!(
        dispatcher.metrics().queue_depth,
        3,
        "a place counts as queued"
    );
    // B is filled first, and another key's event is submitted meanwhile.
    add(&mut second, "B");
    second.submit();
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("X", "user-x"),
            PublishOptions::new(),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *accepted.lock().unwrap(),
        ["X"],
        "B waits behind A's place; other keys do not"
    );
    add(&mut first, "A");
    first.submit();
    // A rolled-back change drops its place: the key's next event does not wait for it.
    drop(abandoned);
    dispatcher
        .submit(
            "pubsub-kafka",
            "task-events",
            &event("C", "user-r"),
            PublishOptions::new(),
        )
        .unwrap();
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(*accepted.lock().unwrap(), ["X", "A", "B", "C"]);
    let metrics = report.metrics;
    assert_eq!((metrics.submitted, metrics.published), (4, 4));
    assert_eq!((metrics.queue_depth, metrics.in_flight), (0, 0));
}

#[tokio::test]
async fn reserve_fails_like_submit_when_the_queue_is_full_or_closed() {
    let server = sidecar().await;
    let dispatcher = Dispatcher::spawn(
        client(&server.url(), discard()),
        DispatcherConfig::new()
            .with_concurrency(1)
            .with_queue_capacity(1),
        None,
    );
    let held = dispatcher.reserve("user-1").unwrap();
    assert!(matches!(
        dispatcher.reserve("user-2"),
        Err(dapr_pubsub_client::SubmitError::QueueFull { capacity: 1 })
    ));
    drop(held);
    let report = dispatcher.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete());
    assert!(matches!(
        dispatcher.reserve("user-1"),
        Err(dapr_pubsub_client::SubmitError::Closed)
    ));
    assert_eq!(report.metrics.queue_depth, 0);
}

fn entries() -> Vec<BulkEntry> {
    vec![
        BulkEntry::json("e-1", &json!({"n": 1}))
            .unwrap()
            .with_partition_key("u1"),
        BulkEntry::json("e-2", &json!({"n": 2}))
            .unwrap()
            .with_partition_key("u2"),
    ]
}

#[tokio::test]
async fn bulk_publish_uses_the_stable_route_and_falls_back_to_alpha_on_an_older_sidecar() {
    let mut server = sidecar().await;
    // An older sidecar: no such route (a 404 that is not a pub/sub error).
    let stable = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(404)
        .with_body(r#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id"}"#)
        .expect(1)
        .create_async()
        .await;
    let alpha = server
        .mock("POST", ALPHA_BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(2)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let client = client(&server.url(), logs.logger());
    for _ in 0..2 {
        let outcome = client
            .publish_bulk(
                "pubsub-kafka",
                "task-events",
                &entries(),
                &PublishOptions::new(),
            )
            .await
            .unwrap();
        assert!(outcome.is_success());
    }
    stable.assert_async().await;
    alpha.assert_async().await;
    let routes: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.starts_with("bulk publishing through"))
        .collect();
    assert_eq!(routes.len(), 1, "logged once");
    assert_eq!(routes[0].level, slog::Level::Info);
    assert_eq!(routes[0].kv["route"], "/v1.0-alpha1/publish/bulk");
}

#[tokio::test]
async fn bulk_publish_keeps_the_stable_route_and_reports_an_unknown_pubsub() {
    let mut server = sidecar().await;
    let stable_ok = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let logs = CapturedLogs::default();
    let client = client(&server.url(), logs.logger());
    client
        .publish_bulk(
            "pubsub-kafka",
            "task-events",
            &entries(),
            &PublishOptions::new(),
        )
        .await
        .unwrap();
    stable_ok.assert_async().await;
    // Dapr's own 404 about the component: an error, not a reason to switch routes.
    let not_found = server
        .mock("POST", BULK)
        .match_query(Matcher::Any)
        .with_status(404)
        .with_body(
            r#"{"errorCode":"ERR_PUBSUB_NOT_FOUND","message":"pubsub pubsub-kafka is not found"}"#,
        )
        .expect(1)
        .create_async()
        .await;
    let alpha = server
        .mock("POST", ALPHA_BULK)
        .match_query(Matcher::Any)
        .with_status(204)
        .expect(0)
        .create_async()
        .await;
    let err = client
        .publish_bulk(
            "pubsub-kafka",
            "task-events",
            &entries(),
            &PublishOptions::new(),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    not_found.assert_async().await;
    alpha.assert_async().await;
    let routes: Vec<_> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.starts_with("bulk publishing through"))
        .map(|r| r.kv["route"].clone())
        .collect();
    assert_eq!(routes, ["/v1.0/publish/bulk"]);
}
