//! The happy path: every REST mutation for several users through the stack's `daprd` into Kafka, and exactly the
//! expected events come out (SPEC.md §2, §3).

use std::collections::HashSet;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Api, Trace};
use crate::events::{self, Script};
use crate::harness::Env;

const USERS: usize = 3;

/// The correlation of step `n`: alternately none, an `X-Correlation-ID` and a `traceparent`.
fn trace(n: usize) -> Trace {
    match n % 3 {
        0 => Trace::None,
        1 => Trace::CorrelationId(Uuid::new_v4()),
        _ => Trace::W3c(Uuid::new_v4()),
    }
}

/// One user's session: every mutation, plus requests that must publish nothing; returns the expected events.
async fn session(api: &Api, user: &str, token: &str) -> anyhow::Result<Vec<events::Expected>> {
    let mut script = Script::new(user);
    let mut step = 0;
    let mut next = || {
        step += 1;
        trace(step)
    };
    let t = Some(token);
    let call = |status, method, path: String, trace: Trace, body: Option<Value>| {
        let api = api.clone();
        async move {
            let answer = api
                .expect(status, method, &path, t, &trace, body.as_ref())
                .await?;
            let correlation = answer.correlation.clone().unwrap_or_default();
            anyhow::Ok((answer.body, correlation))
        }
    };

    // Create without and with a due date.
    let (a, c) = call(
        201,
        "POST",
        "/api/v1/tasks".into(),
        next(),
        Some(json!({"title": "  first task  "})),
    )
    .await?;
    ensure!(
        a["title"] == json!("first task") && a["due_date"].is_null(),
        "created {a}"
    );
    script.created(&a, &c);
    let a_id = a["id"].as_str().context("task id")?.to_owned();
    let a_path = format!("/api/v1/tasks/{a_id}");
    let body = json!({"title": "second <task> & \"quotes\" ✓", "due_date": "2027-03-01T09:00:00Z"});
    let (b, c) = call(201, "POST", "/api/v1/tasks".into(), next(), Some(body)).await?;
    ensure!(
        !b["due_date"].is_null(),
        "created without its due date: {b}"
    );
    script.created(&b, &c);
    let b_id = b["id"].as_str().context("task id")?.to_owned();
    let b_path = format!("/api/v1/tasks/{b_id}");

    // PATCH the title only.
    let (task, c) = call(
        200,
        "PATCH",
        a_path.clone(),
        next(),
        Some(json!({"title": "renamed"})),
    )
    .await?;
    script.updated(&a_id, &task["title"], json!({"title": "renamed"}), &c);
    script.sync(&a_id, "updated", &c);
    // PATCH completed only.
    let (task, c) = call(
        200,
        "PATCH",
        a_path.clone(),
        next(),
        Some(json!({"completed": true})),
    )
    .await?;
    ensure!(task["completed"] == json!(true), "not completed: {task}");
    script.completion(&a_id, true, &c);
    script.sync(&a_id, "completed", &c);
    // PATCH both.
    let body = json!({"title": "renamed again", "completed": false});
    let (task, c) = call(200, "PATCH", a_path.clone(), next(), Some(body)).await?;
    script.updated(&a_id, &task["title"], json!({"title": "renamed again"}), &c);
    script.completion(&a_id, false, &c);
    script.sync(&a_id, "uncompleted", &c);
    // Due date: set, change, clear.
    let body = json!({"due_date": "2027-04-01T12:00:00Z"});
    let (task, c) = call(200, "PATCH", a_path.clone(), next(), Some(body)).await?;
    script.updated(
        &a_id,
        &task["title"],
        json!({"due_date": task["due_date"]}),
        &c,
    );
    script.reminder(&a_id, "scheduled", &task["due_date"], &c);
    script.sync(&a_id, "updated", &c);
    let body = json!({"due_date": "2027-05-02T08:30:00Z"});
    let (task, c) = call(200, "PATCH", a_path.clone(), next(), Some(body)).await?;
    script.updated(
        &a_id,
        &task["title"],
        json!({"due_date": task["due_date"]}),
        &c,
    );
    script.reminder(&a_id, "rescheduled", &task["due_date"], &c);
    script.sync(&a_id, "updated", &c);
    let (task, c) = call(
        200,
        "PATCH",
        a_path.clone(),
        next(),
        Some(json!({"due_date": null})),
    )
    .await?;
    ensure!(task["due_date"].is_null(), "due date not cleared: {task}");
    script.updated(&a_id, &task["title"], json!({"due_date": null}), &c);
    script.reminder(&a_id, "cancelled", &Value::Null, &c);
    script.sync(&a_id, "updated", &c);
    // No-op PATCHes publish nothing.
    call(
        200,
        "PATCH",
        a_path.clone(),
        next(),
        Some(json!({"title": "renamed again"})),
    )
    .await?;
    call(200, "PATCH", a_path.clone(), next(), Some(json!({}))).await?;
    // Complete / uncomplete.
    let (_, c) = call(200, "POST", format!("{b_path}/complete"), next(), None).await?;
    script.completion(&b_id, true, &c);
    script.sync(&b_id, "completed", &c);
    let (_, c) = call(200, "POST", format!("{b_path}/uncomplete"), next(), None).await?;
    script.completion(&b_id, false, &c);
    script.sync(&b_id, "uncompleted", &c);
    // Failed requests publish nothing.
    let missing = format!("/api/v1/tasks/{}", Uuid::new_v4());
    let api_ = api.clone();
    ensure!(
        api_.call("PATCH", &missing, t, &next(), Some(&json!({"title": "x"})))
            .await?
            .status
            == 404,
        "PATCH of an unknown task is not 404"
    );
    ensure!(
        api_.call(
            "POST",
            "/api/v1/tasks",
            t,
            &next(),
            Some(&json!({"title": "   "}))
        )
        .await?
        .status
            == 422,
        "a blank title is not 422"
    );
    // Delete with a due date, then without.
    let (_, c) = call(200, "DELETE", b_path.clone(), next(), None).await?;
    script.deleted(&b_id, &c);
    script.reminder(&b_id, "cancelled", &Value::Null, &c);
    script.sync(&b_id, "deleted", &c);
    let (_, c) = call(200, "DELETE", a_path.clone(), next(), None).await?;
    script.deleted(&a_id, &c);
    script.sync(&a_id, "deleted", &c);
    Ok(script.events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stderr, reason = "the test output is the report")]
async fn every_rest_mutation_publishes_exactly_the_expected_cloudevents_through_daprd_to_kafka()
-> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    let run = crate::SessionsRun::start(&env, USERS).await?;
    let expected: Vec<events::Expected> = run
        .run_sessions(|api, user, token| async move { session(&api, &user, &token).await })
        .await?
        .into_iter()
        .flatten()
        .collect();
    let received = run.received(expected.len()).await?;
    eprintln!(
        "e2e happy path: {USERS} users, {} events expected, {} records received",
        expected.len(),
        received.len()
    );
    events::check_exact(&expected, &received).with_context(|| run.server.log_tail(30))?;
    let correlations: HashSet<&str> = expected.iter().map(|e| e.correlation.as_str()).collect();
    eprintln!(
        "e2e happy path: all {} events exact, {} requests' correlation ids intact through daprd",
        received.len(),
        correlations.len()
    );
    Ok(())
}
