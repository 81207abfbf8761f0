//! `EVENT_DELIVERY=outbox`: events are stored with the change and delivered by the relay once the sidecar is
//! back, with the same event ids; failures back off and move rows aside.

use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::test::TestRequest;
use serde_json::json;

use task_store::OutboxMessage;

use crate::db_test;
use crate::support::{Backend, Mode, Options, Sidecar, TestApp, sidecar::free_port};

/// Polls the outbox every 20 ms until `done` holds for its rows (failing after `within`, with `what` and the
/// rows); returns those rows.
async fn wait_for_rows(
    app: &TestApp,
    within: Duration,
    what: &str,
    done: impl Fn(&[OutboxMessage]) -> bool,
) -> Vec<OutboxMessage> {
    let started = Instant::now();
    loop {
        let rows = app.state.store.outbox_rows().await.unwrap();
        if done(&rows) {
            return rows;
        }
        assert!(started.elapsed() < within, "{what}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_delivers_after_the_sidecar_comes_back_with_the_same_ids(backend: Backend) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let app = TestApp::with(Options::new(backend).outbox(&url)).await;
    let user = app.register().await;
    // The first request carries a W3C trace: the relay must forward it with that request's events.
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut first_task_id = None;
    for i in 0..3 {
        let started = Instant::now();
        let mut req = TestRequest::post()
            .uri("/api/v1/tasks")
            .insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)))
            .set_json(json!({"title": format!("t{i}"), "due_date": "2030-01-01"}));
        if i == 0 {
            req = req.insert_header(("traceparent", TRACEPARENT));
        }
        let answer = app.call(req).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        if i == 0 {
            first_task_id = answer.body["id"].as_str().map(str::to_owned);
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    // The sidecar is down: the events wait in the outbox.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = app.state.store.outbox_rows().await.unwrap();
    assert_eq!(stored.len(), 9, "{stored:?}");
    let mut stored_ids: Vec<String> = stored.iter().map(|row| row.id.to_string()).collect();
    stored_ids.sort();
    assert!(
        stored.iter().any(|row| row.attempts > 0),
        "the relay tried and failed"
    );

    let sidecar = Sidecar::start_on(port, Mode::Accept);
    let got = sidecar.wait_for(9).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered, stored_ids, "the same event ids are delivered");
    for r in &got {
        assert_eq!(
            r.partition_key.as_deref(),
            Some(user.id.to_string().as_str())
        );
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
    }
    let order: Vec<&str> = got
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &order[..3],
        ["task.created", "reminder.scheduled", "sync.task"],
        "a user's events keep their order"
    );
    for r in &got {
        let traced = r.body["subject"].as_str() == first_task_id.as_deref();
        let expected = traced.then_some(TRACEPARENT);
        assert_eq!(r.traceparent.as_deref(), expected, "{}", r.body);
    }
    wait_for_rows(
        &app,
        Duration::from_secs(5),
        "delivered rows are deleted",
        <[_]>::is_empty,
    )
    .await;
    let metrics = app.request("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains("outbox_events_published_total 9"),
        "{}",
        metrics.text
    );
    app.shutdown(Duration::from_secs(1)).await;
    sidecar.stop().await;
}
db_test!(
    outbox_delivers_after_the_sidecar_comes_back_with_the_same_ids,
    super::outbox_delivers_after_the_sidecar_comes_back_with_the_same_ids
);

#[actix_web::test]
async fn outbox_rows_are_written_in_the_transaction_and_failed_requests_write_none() {
    let port = free_port();
    let app =
        TestApp::with(Options::new(Backend::Sqlite).outbox(&format!("http://127.0.0.1:{port}")))
            .await;
    let alice = app.register().await;
    let bob = app.register().await;
    let task = app.create_task(&alice, json!({"title": "a"})).await;
    let id = task["id"].as_str().unwrap();
    let forbidden = app
        .request(
            "DELETE",
            &format!("/api/v1/tasks/{id}"),
            None,
            Some(&bob.token),
        )
        .await;
    forbidden.assert_error(403, "AUTHORIZATION_ERROR");
    let rows = app.state.store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let payload: serde_json::Value = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(payload["type"], "task.created");
    assert_eq!(payload["id"], rows[0].id.to_string());
    assert_eq!(rows[0].topic, "task-events");
    assert_eq!(rows[1].topic, "task-updates");
    assert_eq!(rows[0].partition_key, alice.id.to_string());
    app.shutdown(Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn a_rejected_event_is_retried_then_moves_aside_after_the_attempt_limit() {
    let sidecar = Sidecar::start(Mode::RejectEvent);
    let mut options = Options::new(Backend::Sqlite).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_millis(200);
    options.outbox_max_attempts = 3;
    let app = TestApp::with(options).await;
    let user = app.register().await;
    app.create_task(&user, json!({"title": "doomed"})).await;
    let rows = wait_for_rows(&app, Duration::from_secs(10), "rows move aside", |rows| {
        rows.iter().all(|row| row.failed_at.is_some())
    })
    .await;
    assert!(rows.iter().all(|row| row.attempts == 3), "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.last_error.as_deref().is_some_and(|e| e.contains("400"))),
        "{rows:?}"
    );
    let received = sidecar.received();
    let first = received[0].body["id"].clone();
    assert_eq!(
        received.iter().filter(|r| r.body["id"] == first).count(),
        3,
        "each attempt keeps the id"
    );
    let metrics = app.request("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains("outbox_events_moved_aside_total"),
        "{}",
        metrics.text
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}

/// The ids of `received`, per topic, in the order they came.
fn ids_per_topic(
    received: &[crate::support::sidecar::Received],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut per_topic = std::collections::BTreeMap::<String, Vec<String>>::new();
    for event in received {
        per_topic
            .entry(event.topic.clone())
            .or_default()
            .push(event.body["id"].as_str().unwrap().to_owned());
    }
    per_topic
}

async fn a_sidecar_refusing_the_deployment_is_an_outage_that_moves_nothing_aside(backend: Backend) {
    // 403 "topic not allowed" describes the deployment, not the event: fixing the deployment must deliver
    // everything, however many attempts the refusal lasted.
    let sidecar = Sidecar::start(Mode::Reject);
    let mut options = Options::new(backend).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_millis(200);
    options.outbox_max_attempts = 2;
    let app = TestApp::with(options).await;
    let user = app.register().await;
    for n in 0..3 {
        app.create_task(&user, json!({"title": format!("refused {n}")}))
            .await;
    }
    wait_for_rows(
        &app,
        Duration::from_secs(15),
        "the relay keeps retrying past max_attempts, moving nothing aside",
        |rows| {
            assert!(
                rows.iter().all(|row| row.failed_at.is_none()),
                "nothing is moved aside for a 403: {rows:?}"
            );
            rows.iter().any(|row| row.attempts > 3)
        },
    )
    .await;
    let rows = app.state.store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    let status = app
        .state
        .store
        .outbox_status(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(status.moved_aside, 0);
    assert_eq!(status.backlog.pending, 6);
    let mut expected = std::collections::BTreeMap::<String, Vec<String>>::new();
    for row in &rows {
        expected
            .entry(row.topic.clone())
            .or_default()
            .push(row.id.to_string());
    }
    let refused = sidecar.received().len();
    sidecar.set_mode(Mode::Accept);
    wait_for_rows(
        &app,
        Duration::from_secs(15),
        "delivered once the deployment is fixed",
        <[_]>::is_empty,
    )
    .await;
    // A request refused just before the switch is retried: what came after the last refusal was accepted.
    let received = sidecar.received();
    let accepted = &received[received.len() - rows.len()..];
    assert!(
        received.len() - rows.len() >= refused,
        "none accepted twice"
    );
    assert_eq!(
        ids_per_topic(accepted),
        expected,
        "every event accepted once, in commit order per topic"
    );
    let metrics = app.request("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains("outbox_events_moved_aside_total 0"),
        "{}",
        metrics.text
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}
db_test!(
    a_sidecar_refusing_the_deployment_is_an_outage_that_moves_nothing_aside,
    super::a_sidecar_refusing_the_deployment_is_an_outage_that_moves_nothing_aside
);

#[actix_web::test]
async fn a_failing_broker_never_moves_rows_aside_and_they_are_delivered_when_it_recovers() {
    // Dapr answers 500 when Kafka is unreachable: an outage, not a bad event, however long it lasts.
    let sidecar = Sidecar::start(Mode::Fail);
    let mut options = Options::new(Backend::Sqlite).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_millis(200);
    options.outbox_max_attempts = 2;
    let app = TestApp::with(options).await;
    let user = app.register().await;
    app.create_task(&user, json!({"title": "survives the outage"}))
        .await;
    wait_for_rows(
        &app,
        Duration::from_secs(10),
        "the relay keeps retrying past max_attempts, moving nothing aside",
        |rows| {
            assert!(
                rows.iter().all(|row| row.failed_at.is_none()),
                "nothing is moved aside for a 500: {rows:?}"
            );
            rows.iter().any(|row| row.attempts > 4)
        },
    )
    .await;
    let ids: Vec<String> = app
        .state
        .store
        .outbox_rows()
        .await
        .unwrap()
        .iter()
        .map(|row| row.id.to_string())
        .collect();
    sidecar.set_mode(Mode::Accept);
    wait_for_rows(
        &app,
        Duration::from_secs(10),
        "delivered once the broker is back",
        <[_]>::is_empty,
    )
    .await;
    // A request answered 500 just before the switch is retried: the last ones received were accepted.
    let received = sidecar.received();
    let accepted: Vec<String> = received[received.len() - ids.len()..]
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        accepted, ids,
        "the same events, in order, each accepted once"
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}

#[actix_web::test]
async fn a_backlog_of_several_users_is_delivered_in_order_per_user() {
    let sidecar = Sidecar::start(Mode::Fail);
    let mut options = Options::new(Backend::Sqlite).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_millis(200);
    let app = TestApp::with(options).await;
    // Five users with one task each, and a sixth with two: ten rows on two topics.
    let mut users = Vec::new();
    for i in 0..5 {
        let user = app.register().await;
        app.create_task(&user, json!({"title": format!("t{i}")}))
            .await;
        users.push(user);
    }
    app.create_task(&users[0], json!({"title": "t5"})).await;
    let stored = wait_for_rows(&app, Duration::from_secs(5), "the relay tried", |rows| {
        rows.iter().any(|row| row.attempts > 0)
    })
    .await;
    assert_eq!(stored.len(), 12);
    let failed_before = sidecar.received().len();

    sidecar.set_mode(Mode::Accept);
    wait_for_rows(&app, Duration::from_secs(10), "delivered", <[_]>::is_empty).await;
    let received = sidecar.received();
    // Requests answered 500 before the switch may include some of these ids: take what came after.
    // Users whose rows are due together share bulk requests (one event per user and topic in each: see the
    // planner's tests); whether they are due together depends on their retry times.
    let accepted: Vec<_> = received[failed_before..].iter().collect();
    assert_eq!(accepted.len(), 12, "each event accepted once");
    for topic in ["task-events", "task-updates"] {
        for user in &users {
            let key = user.id.to_string();
            let ids: Vec<String> = accepted
                .iter()
                .filter(|r| r.topic == topic && r.partition_key.as_deref() == Some(key.as_str()))
                .map(|r| r.body["id"].as_str().unwrap().to_owned())
                .collect();
            let expected: Vec<String> = stored
                .iter()
                .filter(|row| row.topic == topic && row.partition_key == key)
                .map(|row| row.id.to_string())
                .collect();
            assert!(
                ids.ends_with(&expected),
                "{topic}/{key}: every event, in order: {ids:?} vs {expected:?}"
            );
        }
    }
    for r in &accepted {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
    }
    let metrics = app.request("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains("outbox_events_published_total 12"),
        "{}",
        metrics.text
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.parse().ok())?
    })
}

async fn metrics_export_the_backlog_and_the_oldest_pending_age(backend: Backend) {
    let sidecar = Sidecar::start(Mode::Fail);
    let mut options = Options::new(backend).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_millis(200);
    let app = TestApp::with(options).await;
    let before = app.request("GET", "/metrics", None, None).await;
    assert_eq!(
        metric(&before.text, "events_outbox_backlog"),
        Some(0.0),
        "{}",
        before.text
    );
    assert_eq!(
        metric(&before.text, "events_outbox_oldest_pending_age_seconds"),
        Some(0.0)
    );
    let user = app.register().await;
    app.create_task(&user, json!({"title": "waits"})).await;
    app.create_task(&user, json!({"title": "waits too"})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stuck = app.request("GET", "/metrics", None, None).await;
    assert_eq!(
        metric(&stuck.text, "events_outbox_backlog"),
        Some(4.0),
        "{}",
        stuck.text
    );
    let age = metric(&stuck.text, "events_outbox_oldest_pending_age_seconds").unwrap();
    assert!((1.0..30.0).contains(&age), "{age}");
    sidecar.set_mode(Mode::Accept);
    wait_for_rows(&app, Duration::from_secs(10), "delivered", <[_]>::is_empty).await;
    let drained = app.request("GET", "/metrics", None, None).await;
    assert_eq!(metric(&drained.text, "events_outbox_backlog"), Some(0.0));
    assert_eq!(
        metric(&drained.text, "events_outbox_oldest_pending_age_seconds"),
        Some(0.0)
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}
db_test!(
    metrics_export_the_backlog_and_the_oldest_pending_age,
    super::metrics_export_the_backlog_and_the_oldest_pending_age
);

async fn a_relay_whose_rows_were_taken_over_deletes_none_of_them(backend: Backend) {
    // Relay A publishes slowly; meanwhile another relay takes its rows over (as if A had been paused past its
    // lease): A's delete after the publish must leave them to the new holder, and A counts them as fenced.
    let sidecar = Sidecar::start(Mode::Slow);
    let mut options = Options::new(backend).outbox(&sidecar.url());
    options.publish_timeout = Duration::from_secs(2);
    let app = TestApp::with(options).await;
    let user = app.register().await;
    app.create_task(&user, json!({"title": "taken over"})).await;
    sidecar.wait_for(1).await;
    let relay_b = app
        .state
        .store
        .claim_outbox(
            10,
            Duration::from_secs(30),
            time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(relay_b.messages.len(), 2, "{relay_b:?}");
    let started = Instant::now();
    loop {
        let metrics = app.request("GET", "/metrics", None, None).await;
        if metric(&metrics.text, "outbox_settles_fenced_total") == Some(2.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "relay A counts the rows it was fenced off from: {}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = app.state.store.outbox_rows().await.unwrap();
    assert_eq!(
        rows.len(),
        2,
        "relay A deleted rows relay B holds: {rows:?}"
    );
    assert!(
        rows.iter().all(|row| row.lease_id == Some(relay_b.lease)),
        "{rows:?}"
    );
    let settled = app
        .state
        .store
        .mark_outbox_delivered(
            relay_b.lease,
            &rows.iter().map(|row| row.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(settled.settled, 2, "relay B settles its own claim");
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}
db_test!(
    a_relay_whose_rows_were_taken_over_deletes_none_of_them,
    super::a_relay_whose_rows_were_taken_over_deletes_none_of_them
);

/// A relay of its own (not spawned) over `app`'s store, publishing to `sidecar` with the default outbox settings
/// but `linger`.
fn relay_over(app: &TestApp, sidecar: &Sidecar, linger: Duration) -> task_api::outbox::OutboxRelay {
    let client = dapr_pubsub_client::PubSubClient::new(
        dapr_pubsub_client::ClientConfig::new(&sidecar.url()).unwrap(),
        crate::support::logger(),
    );
    let config = task_api::config::OutboxConfig {
        linger,
        ..task_api::config::OutboxConfig::defaults_for_tests()
    };
    task_api::outbox::OutboxRelay::new(
        app.state.store.clone(),
        client,
        "pubsub",
        config,
        Duration::from_secs(2),
        &crate::support::logger(),
    )
}

/// `count` outbox rows of partition key `key` on one topic, in order.
fn backlog_of(key: &str, count: usize) -> Vec<task_store::NewOutboxMessage> {
    (0..count)
        .map(|index| {
            let id = uuid::Uuid::new_v4();
            task_store::NewOutboxMessage {
                id,
                topic: "task-events".to_owned(),
                partition_key: key.to_owned(),
                payload: json!({"specversion": "1.0", "id": id.to_string(), "source": "test",
                    "type": "task.updated", "data": {"index": index}})
                .to_string(),
                traceparent: None,
            }
        })
        .collect()
}

async fn one_claim_delivers_all_of_a_keys_claimed_rows_in_order(backend: Backend) {
    // One busy key: the rows one claim hands out go out one wave after another until all are delivered (the
    // lease bounds each publish, not how many), instead of four and the rest waiting for further claims.
    let sidecar = Sidecar::start(Mode::Accept);
    let app = TestApp::new(backend).await;
    let relay = relay_over(&app, &sidecar, Duration::from_millis(5));
    let backlog = backlog_of("busy", 10);
    app.state.store.enqueue_outbox(&backlog).await.unwrap();

    let round = relay.run_once().await;
    assert_eq!(round.claimed, 10);
    let ids: Vec<String> = sidecar
        .received()
        .iter()
        .map(|r| r.body["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = backlog.iter().map(|row| row.id.to_string()).collect();
    assert_eq!(ids, expected, "every claimed row, in order, in one round");
    assert!(
        app.state.store.outbox_rows().await.unwrap().is_empty(),
        "and settled"
    );
    assert_eq!(relay.counters().published(), 10);
    sidecar.stop().await;
}
db_test!(
    one_claim_delivers_all_of_a_keys_claimed_rows_in_order,
    super::one_claim_delivers_all_of_a_keys_claimed_rows_in_order
);

async fn the_last_rounds_delivered_rows_are_settled_within_the_shutdown_deadline(backend: Backend) {
    // The spawned relay deletes a round's delivered rows with its next claim; with a long linger that claim is
    // far off, so the rows wait for it, and the shutdown settles them instead of leaving them to be sent again.
    let sidecar = Sidecar::start(Mode::Accept);
    let app = TestApp::new(backend).await;
    let relay = relay_over(&app, &sidecar, Duration::from_secs(30));
    let counters = relay.counters();
    app.state
        .store
        .enqueue_outbox(&backlog_of("k", 3))
        .await
        .unwrap();
    let handle = relay.spawn();
    sidecar.wait_for(3).await;
    let rows = app.state.store.outbox_rows().await.unwrap();
    assert_eq!(
        rows.len(),
        3,
        "delivered, waiting for the next claim to delete them: {rows:?}"
    );
    let started = Instant::now();
    handle.shutdown(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        app.state.store.outbox_rows().await.unwrap().is_empty(),
        "settled at shutdown"
    );
    assert_eq!(counters.published(), 3);
    assert_eq!(sidecar.received().len(), 3, "each sent once");
    sidecar.stop().await;
}
db_test!(
    the_last_rounds_delivered_rows_are_settled_within_the_shutdown_deadline,
    super::the_last_rounds_delivered_rows_are_settled_within_the_shutdown_deadline
);
