//! The MCP tools end to end: two users drive every mutating tool over `POST /mcp` (raw JSON-RPC, docs/MCP.md)
//! of the real binary, and exactly the events of SPEC.md §3.3 come out of Kafka through the stack's `daprd`.

use std::collections::HashSet;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Api, Trace};
use crate::events::{self, Script};
use crate::harness::Env;

const USERS: usize = 2;

/// What one user's session expects: the events, and the correlation id of its `clear_completed` call.
struct Session {
    events: Vec<events::Expected>,
    clear_correlation: String,
}

/// The id of a task JSON.
fn id_of(task: &Value) -> anyhow::Result<String> {
    Ok(task["id"]
        .as_str()
        .with_context(|| format!("no task id in {task}"))?
        .to_owned())
}

/// One user's tool calls; returns the expected events.
async fn session(api: &Api, user: &str, token: &str) -> anyhow::Result<Session> {
    let mut script = Script::new(user);
    // Most calls name their correlation with `X-Correlation-ID`; one uses `traceparent`, one neither.
    let given = || Trace::CorrelationId(Uuid::new_v4());
    let tool = |trace: Trace, name: &'static str, arguments: Value| {
        let api = api.clone();
        async move { api.tool(token, &trace, name, arguments).await }
    };

    // add_task without and with a due date.
    let (a, c) = tool(given(), "add_task", json!({"title": "  mcp first  "})).await?;
    ensure!(
        a["title"] == json!("mcp first")
            && a["due_date"].is_null()
            && a["completed"] == json!(false),
        "add_task: {a}"
    );
    script.created(&a, &c);
    let a_id = id_of(&a)?;
    let arguments = json!({"title": "mcp second ✓", "due_date": "2027-06-01T10:00:00Z"});
    let (b, c) = tool(Trace::W3c(Uuid::new_v4()), "add_task", arguments).await?;
    ensure!(
        b["due_date"] == json!("2027-06-01T10:00:00.000000Z"),
        "add_task lost its due date: {b}"
    );
    script.created(&b, &c);
    let b_id = id_of(&b)?;

    // update_task: the title.
    let arguments = json!({"task_id": a_id, "title": "mcp renamed"});
    let (task, c) = tool(given(), "update_task", arguments).await?;
    ensure!(task["title"] == json!("mcp renamed"), "update_task: {task}");
    script.updated(&a_id, &task["title"], json!({"title": "mcp renamed"}), &c);
    script.sync(&a_id, "updated", &c);

    // complete_task / uncomplete_task.
    let (task, c) = tool(given(), "complete_task", json!({"task_id": a_id})).await?;
    ensure!(task["completed"] == json!(true), "complete_task: {task}");
    script.completion(&a_id, true, &c);
    script.sync(&a_id, "completed", &c);
    let (task, c) = tool(Trace::None, "uncomplete_task", json!({"task_id": a_id})).await?;
    ensure!(task["completed"] == json!(false), "uncomplete_task: {task}");
    script.completion(&a_id, false, &c);
    script.sync(&a_id, "uncompleted", &c);

    // delete_task of a third task.
    let (d, c) = tool(given(), "add_task", json!({"title": "mcp doomed"})).await?;
    script.created(&d, &c);
    let d_id = id_of(&d)?;
    let (deleted, c) = tool(given(), "delete_task", json!({"task_id": d_id})).await?;
    ensure!(
        deleted["task"]["id"] == json!(d_id) && deleted["message"].is_string(),
        "delete_task: {deleted}"
    );
    script.deleted(&d_id, &c);
    script.sync(&d_id, "deleted", &c);

    // Complete both remaining tasks; completing one again publishes nothing.
    for id in [&a_id, &b_id] {
        let (_, c) = tool(given(), "complete_task", json!({"task_id": id})).await?;
        script.completion(id, true, &c);
        script.sync(id, "completed", &c);
    }
    let (task, _) = tool(given(), "complete_task", json!({"task_id": a_id})).await?;
    ensure!(
        task["completed"] == json!(true),
        "complete_task again: {task}"
    );

    // clear_completed removes both, all under the call's one correlation id.
    let clear = Uuid::new_v4();
    let (cleared, c) = tool(Trace::CorrelationId(clear), "clear_completed", json!({})).await?;
    ensure!(
        c == clear.to_string(),
        "clear_completed: correlation {c}, sent {clear}"
    );
    ensure!(
        cleared["deleted_count"] == json!(2),
        "clear_completed: {cleared}"
    );
    let removed = cleared["deleted"]
        .as_array()
        .with_context(|| format!("clear_completed: no deleted list: {cleared}"))?;
    let removed_ids: HashSet<String> = removed.iter().map(id_of).collect::<Result<_, _>>()?;
    ensure!(
        removed_ids == HashSet::from([a_id.clone(), b_id.clone()]),
        "clear_completed removed {removed_ids:?}, expected {a_id} and {b_id}"
    );
    // The events follow the order of the removed tasks.
    for task in removed {
        let id = id_of(task)?;
        script.deleted(&id, &c);
        if !task["due_date"].is_null() {
            script.reminder(&id, "cancelled", &Value::Null, &c);
        }
        script.sync(&id, "deleted", &c);
    }

    // Nothing is left, and listing publishes nothing.
    let (listed, _) = tool(given(), "list_tasks", json!({})).await?;
    ensure!(
        listed["count"] == json!(0),
        "tasks left after clear_completed: {listed}"
    );
    Ok(Session {
        events: script.events,
        clear_correlation: c,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stderr, reason = "the test output is the report")]
async fn every_mcp_tool_call_publishes_exactly_the_expected_cloudevents_through_daprd_to_kafka()
-> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    let run = crate::SessionsRun::start(&env, USERS).await?;
    let mut expected = Vec::new();
    let mut clears = Vec::new();
    for session in run
        .run_sessions(|api, user, token| async move { session(&api, &user, &token).await })
        .await?
    {
        expected.extend(session.events);
        clears.push(session.clear_correlation);
    }
    let received = run.received(expected.len()).await?;
    eprintln!(
        "e2e mcp: {USERS} users, {} events expected, {} records received",
        expected.len(),
        received.len()
    );
    events::check_exact(&expected, &received).with_context(|| run.server.log_tail(30))?;
    // Each clear_completed call: its five events (two deletes, one reminder, two syncs) share its id.
    for clear in &clears {
        let shared = received
            .iter()
            .filter(|r| r.raw["correlationid"] == json!(clear) && r.raw["traceid"] == json!(clear))
            .count();
        ensure!(
            shared == 5,
            "clear_completed {clear}: {shared} events carry its correlation id, expected 5"
        );
    }
    let correlations: HashSet<&str> = expected.iter().map(|e| e.correlation.as_str()).collect();
    eprintln!(
        "e2e mcp: all {} events exact, {} tool calls' correlation ids intact through daprd",
        received.len(),
        correlations.len()
    );
    Ok(())
}
