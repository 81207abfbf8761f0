//! Events through the real dispatcher to a recording sidecar: every row of SPEC §3.3 with exact types, topics,
//! partition keys, envelope attributes and one correlation id per request; failures of the sidecar never reach
//! the client.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::TestRequest;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db_test;
use crate::support::{
    Answer, Backend, Mode, Options, Received, Sidecar, TestApp, User, sidecar::free_port,
};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_UUID: &str = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";

async fn dapr_app(backend: Backend, sidecar: &Sidecar) -> TestApp {
    TestApp::with(Options::new(backend).dapr(&sidecar.url())).await
}

/// Sends a mutation with a `traceparent` and returns the answer.
async fn mutate(
    app: &TestApp,
    user: &User,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path)
        .insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)))
        .insert_header(("traceparent", TRACEPARENT));
    if let Some(body) = body {
        req = req.set_json(body);
    }
    app.call(req).await
}

/// Checks the envelope of every received event of one request and returns `(type, topic, data)` triples.
#[track_caller]
fn check_request_events(
    received: &[Received],
    user: &User,
    task_id: &str,
) -> Vec<(String, String, Value)> {
    // The `sequence` extension: 20 digits, growing through the request's events in the order they are listed.
    let sequences: Vec<&str> = received
        .iter()
        .map(|r| r.body["sequence"].as_str().expect("a string sequence"))
        .collect();
    for sequence in &sequences {
        assert!(
            sequence.len() == 20 && sequence.bytes().all(|b| b.is_ascii_digit()),
            "{sequence:?}"
        );
    }
    let mut sorted = sequences.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        sequences.len(),
        "distinct sequences: {sequences:?}"
    );
    received
        .iter()
        .map(|r| {
            let body = &r.body;
            assert_eq!(r.pubsub, "pubsub-kafka");
            assert_eq!(
                r.content_type.as_deref(),
                Some("application/cloudevents+json")
            );
            assert_eq!(
                r.partition_key.as_deref(),
                Some(user.id.to_string().as_str()),
                "{r:?}"
            );
            assert_eq!(r.traceparent.as_deref(), Some(TRACEPARENT));
            assert_eq!(r.api_token.as_deref(), Some("sidecar-token"));
            assert_eq!(body["specversion"], "1.0");
            assert_eq!(
                Uuid::parse_str(body["id"].as_str().unwrap())
                    .unwrap()
                    .get_version_num(),
                4
            );
            assert_eq!(body["source"], "pakaura/api");
            assert_eq!(body["subject"], task_id);
            assert_eq!(body["datacontenttype"], "application/json");
            assert!(body["time"].as_str().unwrap().ends_with('Z'));
            assert_eq!(body["traceid"], TRACE_UUID);
            assert_eq!(body["correlationid"], TRACE_UUID);
            // The CloudEvents distributed-tracing extension: the request's trace context travels in the event.
            assert_eq!(body["traceparent"], TRACEPARENT);
            assert_eq!(body["partitionkey"], user.id.to_string());
            for (key, value) in body.as_object().unwrap() {
                assert!(!value.is_null(), "attribute {key} is null");
            }
            let data = &body["data"];
            assert_eq!(data["task_id"], task_id);
            assert_eq!(data["user_id"], user.id.to_string());
            assert!(data["timestamp"].is_string());
            (
                body["type"].as_str().unwrap().to_owned(),
                r.topic.clone(),
                data.clone(),
            )
        })
        .collect()
}

fn types_and_topics(events: &[(String, String, Value)]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|(ty, topic, _)| (ty.as_str(), topic.as_str()))
        .collect()
}

async fn every_mutation_publishes_the_events_of_spec_3_3(backend: Backend) {
    let sidecar = Sidecar::start(Mode::Accept);
    let app = dapr_app(backend, &sidecar).await;
    let user = app.register().await;
    let mut seen = 0;
    let step = async |method: &str, path: &str, body: Option<Value>, task_id: Option<&str>| {
        let answer = mutate(&app, &user, method, path, body).await;
        assert!(
            answer.status.is_success(),
            "{method} {path}: {}",
            answer.text
        );
        assert_eq!(
            answer.header("x-correlation-id").as_deref(),
            Some(TRACE_UUID)
        );
        let task_id = task_id
            .map(str::to_owned)
            .unwrap_or_else(|| answer.body["id"].as_str().unwrap().to_owned());
        (answer, task_id)
    };

    // Create without a due date: task.created + sync.task.
    let (created, id) = step(
        "POST",
        "/api/v1/tasks",
        Some(json!({"title": "Buy milk"})),
        None,
    )
    .await;
    let got = sidecar.wait_for(seen + 2).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.created", "task-events"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(
        events[0].2,
        json!({"task_id": id, "user_id": user.id.to_string(), "action": "created", "title": "Buy milk",
            "completed": false, "timestamp": events[0].2["timestamp"]})
    );
    assert_eq!(events[1].2["action"], "created");
    assert!(created.body["due_date"].is_null());
    seen += 2;

    let path = format!("/api/v1/tasks/{id}");
    // Title only: task.updated (changes.title) + sync.task(updated).
    step(
        "PATCH",
        &path,
        Some(json!({"title": "Buy oat milk"})),
        Some(&id),
    )
    .await;
    let got = sidecar.wait_for(seen + 2).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.updated", "task-events"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(events[0].2["changes"], json!({"title": "Buy oat milk"}));
    assert_eq!(events[0].2["title"], "Buy oat milk");
    assert_eq!(events[0].2["action"], "updated");
    assert_eq!(events[1].2["action"], "updated");
    seen += 2;

    // Completed flip only: task.completed (not task.updated) + sync.task(completed).
    step("PATCH", &path, Some(json!({"completed": true})), Some(&id)).await;
    let got = sidecar.wait_for(seen + 2).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.completed", "task-events"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(events[0].2["completed"], true);
    assert_eq!(events[0].2["action"], "completed");
    assert_eq!(events[1].2["action"], "completed");
    seen += 2;

    // Both in one PATCH: task.updated + task.uncompleted + sync.task(uncompleted).
    step(
        "PATCH",
        &path,
        Some(json!({"title": "Milk", "completed": false})),
        Some(&id),
    )
    .await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.updated", "task-events"),
            ("task.uncompleted", "task-events"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(events[2].2["action"], "uncompleted");
    seen += 3;

    // A PATCH that changes nothing: no event.
    step(
        "PATCH",
        &path,
        Some(json!({"title": "Milk", "completed": false})),
        Some(&id),
    )
    .await;
    // Completing an already open task's inverse: uncomplete on an open task changes nothing either.
    step("POST", &format!("{path}/uncomplete"), None, Some(&id)).await;
    sidecar.settle(seen).await;

    // Due date set where there was none: task.updated(changes.due_date) + reminder.scheduled + sync.task.
    step(
        "PATCH",
        &path,
        Some(json!({"due_date": "2030-01-01T08:00:00Z"})),
        Some(&id),
    )
    .await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.updated", "task-events"),
            ("reminder.scheduled", "reminders"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(
        events[0].2["changes"],
        json!({"due_date": "2030-01-01T08:00:00.000000Z"})
    );
    assert_eq!(events[1].2["due_date"], "2030-01-01T08:00:00.000000Z");
    assert_eq!(events[1].2["action"], "scheduled");
    seen += 3;

    // Changed: reminder.rescheduled.
    step(
        "PATCH",
        &path,
        Some(json!({"due_date": "2030-02-01T08:00:00Z"})),
        Some(&id),
    )
    .await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(events[1].0, "reminder.rescheduled");
    assert_eq!(events[1].2["due_date"], "2030-02-01T08:00:00.000000Z");
    seen += 3;

    // Cleared: reminder.cancelled with due_date null.
    step("PATCH", &path, Some(json!({"due_date": null})), Some(&id)).await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(events[1].0, "reminder.cancelled");
    assert!(events[1].2["due_date"].is_null());
    assert_eq!(events[0].2["changes"], json!({"due_date": null}));
    seen += 3;

    // Complete and uncomplete routes. Both requests' events may be queued together and then go out
    // per topic (the two sync.task events in one bulk request): Kafka orders per topic and key only,
    // so that is the order to check.
    step("POST", &format!("{path}/complete"), None, Some(&id)).await;
    step("POST", &format!("{path}/uncomplete"), None, Some(&id)).await;
    let got = sidecar.wait_for(seen + 4).await;
    let events = check_request_events(&got[seen..], &user, &id);
    let mut per_topic = types_and_topics(&events);
    per_topic.sort_by_key(|(_, topic)| *topic);
    assert_eq!(
        per_topic,
        [
            ("task.completed", "task-events"),
            ("task.uncompleted", "task-events"),
            ("sync.task", "task-updates"),
            ("sync.task", "task-updates")
        ]
    );
    seen += 4;

    // Create with a due date: task.created (with due_date) + reminder.scheduled + sync.task.
    let (_, due_id) = step(
        "POST",
        "/api/v1/tasks",
        Some(json!({"title": "Dentist", "due_date": "2030-03-03T10:00:00Z"})),
        None,
    )
    .await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &due_id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.created", "task-events"),
            ("reminder.scheduled", "reminders"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(events[0].2["due_date"], "2030-03-03T10:00:00.000000Z");
    seen += 3;

    // Delete with a due date: task.deleted + reminder.cancelled + sync.task(deleted).
    step(
        "DELETE",
        &format!("/api/v1/tasks/{due_id}"),
        None,
        Some(&due_id),
    )
    .await;
    let got = sidecar.wait_for(seen + 3).await;
    let events = check_request_events(&got[seen..], &user, &due_id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.deleted", "task-events"),
            ("reminder.cancelled", "reminders"),
            ("sync.task", "task-updates")
        ]
    );
    assert_eq!(
        events[0].2.as_object().unwrap().len(),
        4,
        "{:?}",
        events[0].2
    );
    assert_eq!(events[2].2["action"], "deleted");
    seen += 3;

    // Delete without a due date: task.deleted + sync.task.
    step("DELETE", &path, None, Some(&id)).await;
    let got = sidecar.wait_for(seen + 2).await;
    let events = check_request_events(&got[seen..], &user, &id);
    assert_eq!(
        types_and_topics(&events),
        [
            ("task.deleted", "task-events"),
            ("sync.task", "task-updates")
        ]
    );
    seen += 2;

    // Event ids are unique.
    let all = sidecar.settle(seen).await;
    let mut ids: Vec<&str> = all.iter().map(|r| r.body["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), seen);
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}
db_test!(
    every_mutation_publishes_the_events_of_spec_3_3,
    super::every_mutation_publishes_the_events_of_spec_3_3
);

#[actix_web::test]
async fn one_request_shares_one_correlation_id_from_headers_or_a_new_one() {
    let sidecar = Sidecar::start(Mode::Accept);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    let given = Uuid::new_v4();
    let answer = app
        .call(
            TestRequest::post()
                .uri("/api/v1/tasks")
                .insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)))
                .insert_header(("x-request-id", given.to_string()))
                .set_json(json!({"title": "t", "due_date": "2031-01-01"})),
        )
        .await;
    assert_eq!(answer.header("x-correlation-id"), Some(given.to_string()));
    let got = sidecar.wait_for(3).await;
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.body["correlationid"], given.to_string());
        assert_eq!(r.body["traceid"], given.to_string());
        assert!(r.traceparent.is_none());
        assert!(r.body.get("traceparent").is_none(), "{}", r.body);
    }
    let plain = app
        .call(
            TestRequest::post()
                .uri("/api/v1/tasks")
                .insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)))
                .insert_header(("x-correlation-id", "not-a-uuid"))
                .set_json(json!({"title": "u"})),
        )
        .await;
    let fresh = plain.header("x-correlation-id").expect("echoed");
    assert_eq!(Uuid::parse_str(&fresh).unwrap().get_version_num(), 4);
    let got = sidecar.wait_for(5).await;
    assert!(
        got[3..]
            .iter()
            .all(|r| r.body["correlationid"] == fresh.as_str())
    );
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}

async fn failed_requests_publish_nothing(backend: Backend) {
    let sidecar = Sidecar::start(Mode::Accept);
    let app = dapr_app(backend, &sidecar).await;
    let owner = app.register().await;
    let other = app.register().await;
    let task = app.create_task(&owner, json!({"title": "mine"})).await;
    let id = task["id"].as_str().unwrap();
    sidecar.wait_for(2).await;
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/v1/tasks/{id}"),
            Some(json!({"title": "x"})),
        ),
        ("DELETE", format!("/api/v1/tasks/{id}"), None),
        ("POST", format!("/api/v1/tasks/{id}/complete"), None),
        (
            "POST",
            format!("/api/v1/tasks/{}/complete", Uuid::new_v4()),
            None,
        ),
        (
            "POST",
            "/api/v1/tasks".to_owned(),
            Some(json!({"title": " "})),
        ),
        (
            "PATCH",
            format!("/api/v1/tasks/{id}"),
            Some(json!({"completed": "no"})),
        ),
    ] {
        let answer = mutate(&app, &other, method, &path, body).await;
        assert!(
            answer.status.is_client_error(),
            "{method} {path}: {}",
            answer.text
        );
    }
    sidecar.settle(2).await;
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}
db_test!(
    failed_requests_publish_nothing,
    super::failed_requests_publish_nothing
);

/// Creates tasks against a sidecar in `mode` and checks every request succeeds quickly.
async fn requests_stay_fast(app: &TestApp, user: &User) {
    for i in 0..5 {
        let started = Instant::now();
        let answer = app
            .request(
                "POST",
                "/api/v1/tasks",
                Some(json!({"title": format!("task {i}")})),
                Some(&user.token),
            )
            .await;
        let elapsed = started.elapsed();
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert!(
            elapsed < Duration::from_millis(250),
            "request {i} took {elapsed:?}"
        );
    }
}

#[actix_web::test]
async fn a_hanging_sidecar_changes_no_status_and_adds_no_latency() {
    let sidecar = Sidecar::start(Mode::Hang);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    requests_stay_fast(&app, &user).await;
    let started = Instant::now();
    app.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown respects its deadline"
    );
    sidecar.stop().await;
}

#[actix_web::test]
async fn events_abandoned_at_the_shutdown_deadline_count_as_dropped() {
    let sidecar = Sidecar::start(Mode::Hang);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    for n in 0..3 {
        app.create_task(&user, json!({"title": format!("stuck {n}")}))
            .await;
    }
    let dropped = |state: &task_api::state::AppState| {
        state
            .publisher
            .metrics()
            .into_iter()
            .find(|metric| metric.name == "events_dropped_total")
            .map(|metric| metric.value)
    };
    let state = app.state.clone();
    assert_eq!(dropped(&state), Some(0.0));
    app.shutdown(Duration::from_millis(200)).await;
    let after = dropped(&state).unwrap();
    assert!(
        after >= 3.0,
        "every event still queued or in flight at the deadline is dropped: {after}"
    );
    sidecar.stop().await;
}

#[actix_web::test]
async fn a_failing_sidecar_changes_no_status_and_is_retried_with_the_same_id() {
    let sidecar = Sidecar::start(Mode::Fail);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    requests_stay_fast(&app, &user).await;
    let got = sidecar.wait_for(12).await;
    assert!(
        got.len() >= 12,
        "the dispatcher retries 500s: {}",
        got.len()
    );
    let first_id = &got[0].body["id"];
    assert!(
        got.iter().filter(|r| &r.body["id"] == first_id).count() >= 2,
        "retries keep the event id"
    );
    let metrics = app.request("GET", "/metrics", None, None).await;
    assert!(
        metrics.text.contains("events_retried_total"),
        "{}",
        metrics.text
    );
    app.shutdown(Duration::from_millis(200)).await;
    sidecar.stop().await;
}

#[actix_web::test]
async fn a_missing_sidecar_changes_no_status() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let app = TestApp::with(Options::new(Backend::Sqlite).dapr(&url)).await;
    let user = app.register().await;
    requests_stay_fast(&app, &user).await;
    app.shutdown(Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn events_of_one_user_arrive_in_order() {
    let sidecar = Sidecar::start(Mode::Accept);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    let task = app.create_task(&user, json!({"title": "flip"})).await;
    let id = task["id"].as_str().unwrap();
    for i in 0..10 {
        let action = if i % 2 == 0 { "complete" } else { "uncomplete" };
        app.request(
            "POST",
            &format!("/api/v1/tasks/{id}/{action}"),
            None,
            Some(&user.token),
        )
        .await;
    }
    let got = sidecar.wait_for(22).await;
    let task_events: Vec<&str> = got
        .iter()
        .filter(|r| r.topic == "task-events")
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    let mut expected = vec!["task.created"];
    for i in 0..10 {
        expected.push(if i % 2 == 0 {
            "task.completed"
        } else {
            "task.uncompleted"
        });
    }
    assert_eq!(task_events, expected);
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}

#[actix_web::test]
async fn queued_events_of_several_users_share_bulk_requests_and_keep_each_user_s_order() {
    let sidecar = Sidecar::start(Mode::Accept);
    let mut options = Options::new(Backend::Sqlite).dapr(&sidecar.url());
    // A lane waits for the following requests' events, so that they queue up behind the first.
    options.batch_linger = Duration::from_millis(300);
    let app = TestApp::with(options).await;
    // More users than lanes (8), so that some share a lane and can share its bulk requests (one event per user
    // and topic in each).
    let mut users = Vec::new();
    for _ in 0..12 {
        users.push(app.register().await);
    }
    let mut tasks = Vec::new();
    for user in &users {
        tasks.push(app.create_task(user, json!({"title": "batched"})).await);
    }
    let id = tasks[0]["id"].as_str().unwrap();
    for action in ["complete", "uncomplete", "complete"] {
        let answer = app
            .request(
                "POST",
                &format!("/api/v1/tasks/{id}/{action}"),
                None,
                Some(&users[0].token),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let expected = users.len() * 2 + 6;
    let got = sidecar.wait_for(expected).await;
    assert_eq!(got.len(), expected, "each event once");
    let types = |topic: &str, user: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r.topic == topic && r.partition_key.as_deref() == Some(user))
            .map(|r| r.body["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = users[0].id.to_string();
    assert_eq!(
        types("task-events", &first),
        [
            "task.created",
            "task.completed",
            "task.uncompleted",
            "task.completed"
        ]
    );
    assert_eq!(types("task-updates", &first), ["sync.task"; 4]);
    for user in &users[1..] {
        let key = user.id.to_string();
        assert_eq!(types("task-events", &key), ["task.created"]);
        assert_eq!(types("task-updates", &key), ["sync.task"]);
    }
    assert!(
        got.iter().any(|r| r.bulk),
        "some events shared a bulk request: {:?}",
        got.iter().map(|r| r.bulk).collect::<Vec<_>>()
    );
    for r in &got {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
    }
    let metrics = app.request("GET", "/metrics", None, None).await;
    let bulk_requests = metrics
        .text
        .lines()
        .find_map(|line| line.strip_prefix("events_bulk_requests_total "))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(bulk_requests >= 1.0, "{}", metrics.text);
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}

#[actix_web::test]
async fn events_validate_as_cloudevents_in_the_official_sdk() {
    let sidecar = Sidecar::start(Mode::Accept);
    let app = dapr_app(Backend::Sqlite, &sidecar).await;
    let user = app.register().await;
    app.create_task(
        &user,
        json!({"title": "sdk", "due_date": "2030-01-01T00:00:00Z"}),
    )
    .await;
    let got = sidecar.wait_for(3).await;
    for r in &got {
        let event: cloudevents::Event =
            serde_json::from_value(r.body.clone()).expect("parses in cloudevents-sdk");
        use cloudevents::AttributesReader;
        assert_eq!(event.id(), r.body["id"].as_str().unwrap());
        assert_eq!(event.specversion(), cloudevents::event::SpecVersion::V10);
        assert_eq!(event.subject(), r.body["subject"].as_str());
    }
    app.shutdown(Duration::from_secs(2)).await;
    sidecar.stop().await;
}
