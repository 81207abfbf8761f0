//! Events in commit order under concurrency and partial failures (SPEC §3.3): several workers hammer the same
//! tasks at once while the sidecar fails a random share of the events (single publishes answered 500, bulk
//! requests answered 500 with `failedEntries` naming a random subset). What the sidecar *accepted*, deduplicated
//! by event id keeping the first copy (what a consumer that drops duplicates by id does), must tell each task's
//! story in commit order: completion events alternate, the last title and completion are what `GET` answers,
//! `sync.task` actions follow the same order, and the `sequence` extension grows.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::sidecar::Received;
use crate::support::{Backend, Mode, Options, Sidecar, TestApp, User};

const TASKS: usize = 3;
const WORKERS: usize = 6;
const STEPS: usize = 12;
/// Percent of events the sidecar fails.
const FAILURE_PERCENT: u8 = 30;

/// Creates the tasks the workers share.
async fn create_tasks(app: &TestApp, user: &User) -> Vec<String> {
    let mut task_ids = Vec::new();
    for n in 0..TASKS {
        let task = app
            .create_task(user, json!({"title": format!("task {n}")}))
            .await;
        task_ids.push(task["id"].as_str().unwrap().to_owned());
    }
    task_ids
}

/// Runs the workers against `apps` (replicas of one service, taken in turn): each step picks a task and does a
/// PATCH with a unique title, a complete, or an uncomplete. Returns the titles set (all PATCHes succeed).
async fn hammer(apps: &[&TestApp], user: &User, task_ids: &[String], round: usize) -> Vec<String> {
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        workers.push(async move {
            let mut titles = Vec::new();
            for step in 0..STEPS {
                let id = &task_ids[(worker + 2 * step) % task_ids.len()];
                let app = apps[(worker + step) % apps.len()];
                let (method, path, body) = match (worker + step) % 3 {
                    0 => {
                        let title = format!("r{round}-w{worker}-s{step}");
                        titles.push(title.clone());
                        (
                            "PATCH",
                            format!("/api/v1/tasks/{id}"),
                            Some(json!({"title": title})),
                        )
                    }
                    1 => ("POST", format!("/api/v1/tasks/{id}/complete"), None),
                    _ => ("POST", format!("/api/v1/tasks/{id}/uncomplete"), None),
                };
                let answer = app.request(method, &path, body, Some(&user.token)).await;
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "{method} {path}: {}",
                    answer.text
                );
            }
            titles
        });
    }
    futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The accepted events, first copy of each id only, grouped by task (subject) in acceptance order.
fn first_copies_by_task(accepted: &[Received]) -> BTreeMap<String, Vec<Value>> {
    let mut seen = HashSet::new();
    let mut by_task: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for received in accepted {
        let id = received.body["id"].as_str().unwrap().to_owned();
        if seen.insert(id) {
            let subject = received.body["subject"].as_str().unwrap().to_owned();
            by_task
                .entry(subject)
                .or_default()
                .push(received.body.clone());
        }
    }
    by_task
}

/// The checks of the module doc, for one task's first copies against its state from `GET`.
fn check_task_story(task_id: &str, events: &[Value], stored: &Value) {
    let ty = |event: &Value| event["type"].as_str().unwrap().to_owned();
    let story: Vec<String> = events.iter().map(ty).collect();

    // The sequence grows in acceptance order, per topic (each topic is its own Kafka partition stream).
    for topic_type in [false, true] {
        let sequences: Vec<&str> = events
            .iter()
            .filter(|event| (ty(event) == "sync.task") == topic_type)
            .map(|event| {
                event["sequence"]
                    .as_str()
                    .expect("every event has a sequence")
            })
            .collect();
        assert!(
            sequences.windows(2).all(|pair| pair[0] < pair[1]),
            "task {task_id}: sequences out of order: {sequences:?}\n{story:?}"
        );
    }

    // Completion events strictly alternate, starting with `task.completed` (tasks are created open).
    let completions: Vec<&str> = events
        .iter()
        .filter_map(|event| match event["type"].as_str().unwrap() {
            "task.completed" => Some("completed"),
            "task.uncompleted" => Some("uncompleted"),
            _ => None,
        })
        .collect();
    for (n, completion) in completions.iter().enumerate() {
        let expected = if n % 2 == 0 {
            "completed"
        } else {
            "uncompleted"
        };
        assert_eq!(
            *completion, expected,
            "task {task_id}: completion events do not alternate: {completions:?}"
        );
    }
    let completed_now = completions.last() == Some(&"completed");
    assert_eq!(
        stored["completed"].as_bool(),
        Some(completed_now),
        "task {task_id}: the last completion event disagrees with GET: {completions:?}"
    );

    // The last title event is the stored title.
    let last_title = events
        .iter()
        .filter(|event| {
            matches!(
                event["type"].as_str(),
                Some("task.created" | "task.updated")
            )
        })
        .filter_map(|event| event["data"]["title"].as_str())
        .next_back();
    assert_eq!(
        last_title,
        stored["title"].as_str(),
        "task {task_id}: the last title event disagrees with GET"
    );

    // `sync.task` actions follow the same order as the task events.
    let task_actions: Vec<&str> = events
        .iter()
        .filter(|event| event["type"].as_str().unwrap().starts_with("task."))
        .map(|event| event["data"]["action"].as_str().unwrap())
        .collect();
    let sync_actions: Vec<&str> = events
        .iter()
        .filter(|event| event["type"] == "sync.task")
        .map(|event| event["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        sync_actions, task_actions,
        "task {task_id}: sync.task actions do not follow the task events"
    );
}

/// Waits until delivery is done: the outbox is empty, or every event the dispatcher took is published, given up
/// or dropped (the last two must not happen here).
async fn settle(app: &TestApp, outbox: bool, within: Duration) {
    let started = Instant::now();
    loop {
        let done = if outbox {
            app.state.store.outbox_rows().await.unwrap().is_empty()
        } else {
            let submitted = app.metric("events_submitted_total").await;
            let published = app.metric("events_published_total").await;
            let failed = app.metric("events_failed_total").await;
            let dropped = app.metric("events_dropped_total").await;
            assert_eq!(
                (failed, dropped),
                (0.0, 0.0),
                "nothing is given up or dropped here"
            );
            submitted > 0.0 && published == submitted
        };
        if done {
            return;
        }
        assert!(
            started.elapsed() < within,
            "delivery did not settle within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn concurrent_changes_under_partial_failures_arrive_in_commit_order(
    backend: Backend,
    outbox: bool,
) {
    let sidecar = Sidecar::start(Mode::Flaky(FAILURE_PERCENT));
    let mut options = Options::new(backend);
    // Retry until delivered: the test checks order, not what giving up drops.
    options.outbox_max_attempts = 1_000;
    options.dispatcher_max_attempts = 1_000;
    let options = if outbox {
        options.outbox(&sidecar.url())
    } else {
        options.dapr(&sidecar.url())
    };
    let app = TestApp::with(options).await;
    let user = app.register().await;
    let task_ids = create_tasks(&app, &user).await;
    let titles = hammer(&[&app], &user, &task_ids, 0).await;
    settle(&app, outbox, Duration::from_secs(60)).await;
    check_stories(&app, &user, &task_ids, &titles, &sidecar.accepted()).await;
    app.shutdown(Duration::from_secs(5)).await;
}

/// The checks of the module doc over everything `accepted`, against the tasks as `GET` answers them.
async fn check_stories(
    app: &TestApp,
    user: &User,
    task_ids: &[String],
    titles: &[String],
    accepted: &[Received],
) {
    let by_task = first_copies_by_task(accepted);
    for task_id in task_ids {
        let stored = app
            .request(
                "GET",
                &format!("/api/v1/tasks/{task_id}"),
                None,
                Some(&user.token),
            )
            .await;
        assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
        let events = by_task.get(task_id).expect("events of every task");
        check_task_story(task_id, events, &stored.body);
    }

    // Every successful PATCH's title was accepted exactly once after deduplication by id.
    let accepted_titles: Vec<&str> = by_task
        .values()
        .flatten()
        .filter(|event| event["type"] == "task.updated")
        .filter_map(|event| event["data"]["changes"]["title"].as_str())
        .collect();
    for title in titles {
        let count = accepted_titles.iter().filter(|got| *got == title).count();
        assert_eq!(count, 1, "title {title} accepted {count} times after dedup");
    }
}

/// Outbox mode with two replicas on one database, requests alternating between them; one replica is killed
/// mid-load (its relay stops wherever it is, leases held) and a new one takes its place.
async fn outbox_replicas(backend: Backend) {
    let sidecar = Sidecar::start(Mode::Flaky(FAILURE_PERCENT));
    let mut options = Options::new(backend).outbox(&sidecar.url());
    options.outbox_max_attempts = 1_000;
    let first = TestApp::with(options.clone()).await;
    let second = TestApp::with(options.clone().replica_of(&first)).await;
    let user = first.register().await;
    let task_ids = create_tasks(&first, &user).await;
    let mut titles = hammer(&[&first, &second], &user, &task_ids, 0).await;
    second.kill();
    let third = TestApp::with(options.replica_of(&first)).await;
    titles.extend(hammer(&[&third, &first], &user, &task_ids, 1).await);
    settle(&first, true, Duration::from_secs(60)).await;
    check_stories(&first, &user, &task_ids, &titles, &sidecar.accepted()).await;
    third.shutdown(Duration::from_secs(5)).await;
    first.shutdown(Duration::from_secs(5)).await;
}

async fn fire_and_forget(backend: Backend) {
    concurrent_changes_under_partial_failures_arrive_in_commit_order(backend, false).await;
}

async fn outbox(backend: Backend) {
    concurrent_changes_under_partial_failures_arrive_in_commit_order(backend, true).await;
}

db_test!(
    fire_and_forget_keeps_commit_order_under_partial_failures,
    super::fire_and_forget
);
db_test!(
    outbox_keeps_commit_order_under_partial_failures,
    super::outbox
);
db_test!(
    outbox_replicas_keep_commit_order_when_one_is_killed,
    super::outbox_replicas
);
