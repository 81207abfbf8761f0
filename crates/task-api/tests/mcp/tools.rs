//! The seven tools through rmcp's client: schemas, results, the events they publish (the same as REST's), user
//! isolation and tool errors.

use std::collections::BTreeSet;

use actix_web::test::TestRequest;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Client, Event, McpApp, User, call, kinds, ok, tool_error};

const TOOLS: [&str; 7] = [
    "add_task",
    "clear_completed",
    "complete_task",
    "delete_task",
    "list_tasks",
    "uncomplete_task",
    "update_task",
];

#[actix_web::test]
async fn the_seven_tools_are_listed_with_schemas_and_descriptions() {
    let app = McpApp::start().await;
    let user = app.user().await;
    let client = app.client(&user).await;

    let info = client.peer_info().expect("the server answered initialize");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("pakaura-tasks")
    );
    assert!(info.capabilities.tools.is_some());
    assert!(
        info.instructions
            .as_deref()
            .is_some_and(|i| i.contains("list_tasks"))
    );

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOLS);
    for tool in &tools {
        assert!(
            tool.description.as_deref().is_some_and(|d| d.len() > 30),
            "{} has no useful description",
            tool.name
        );
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        let output = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no output schema", tool.name));
        assert_eq!(output.get("type"), Some(&json!("object")), "{}", tool.name);
        assert!(tool.annotations.is_some(), "{}", tool.name);
    }
    let schema = |name: &str| {
        Value::Object((*tools.iter().find(|t| t.name == name).unwrap().input_schema).clone())
    };
    assert_eq!(schema("add_task")["required"], json!(["title"]));
    assert!(schema("add_task")["properties"]["due_date"].is_object());
    assert!(
        schema("list_tasks").to_string().contains("incomplete"),
        "{}",
        schema("list_tasks")
    );
    assert_eq!(schema("update_task")["required"], json!(["task_id"]));
    for name in ["complete_task", "uncomplete_task", "delete_task"] {
        assert_eq!(schema(name)["required"], json!(["task_id"]), "{name}");
    }
    assert!(schema("clear_completed").get("required").is_none());
    let list = tools.iter().find(|t| t.name == "list_tasks").unwrap();
    assert_eq!(
        list.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    let delete = tools.iter().find(|t| t.name == "delete_task").unwrap();
    assert_eq!(
        delete.annotations.as_ref().unwrap().destructive_hint,
        Some(true)
    );
    client.cancel().await.expect("close the client");
    app.stop().await;
}

/// Checks the envelope of the events of one call and returns their correlation id.
#[track_caller]
fn check_call_events(events: &[Event], user: &User, task_id: &str) -> String {
    assert!(!events.is_empty(), "the call published nothing");
    let correlation = events[0].body["correlationid"]
        .as_str()
        .expect("correlationid")
        .to_owned();
    for event in events {
        let body = &event.body;
        assert_eq!(event.partition_key, user.id.to_string(), "{body}");
        assert_eq!(body["partitionkey"], user.id.to_string(), "{body}");
        assert_eq!(
            body["correlationid"], correlation,
            "one correlation id per tool call: {body}"
        );
        assert_eq!(body["traceid"], correlation, "{body}");
        assert_eq!(body["subject"], task_id, "{body}");
        assert_eq!(body["source"], "pakaura/api");
        assert_eq!(body["data"]["user_id"], user.id.to_string(), "{body}");
        assert_eq!(body["data"]["task_id"], task_id, "{body}");
    }
    correlation
}

/// `(type, topic, sorted data keys)` of each event: what must match between MCP and REST.
fn shape(events: &[Event]) -> Vec<(String, String, BTreeSet<String>)> {
    events
        .iter()
        .map(|e| {
            let keys = e.body["data"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            (e.kind().to_owned(), e.topic.clone(), keys)
        })
        .collect()
}

/// The same change made through REST, in process.
async fn rest(app: &McpApp, user: &User, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut req = TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path)
        .insert_header(("authorization", format!("Bearer {}", user.token)));
    if let Some(body) = body {
        req = req.set_json(body);
    }
    let answer = app.raw(req).await;
    assert!(
        answer.status.is_success(),
        "{method} {path}: {}",
        answer.text
    );
    answer.body
}

#[actix_web::test]
async fn every_tool_returns_json_and_publishes_what_rest_publishes() {
    let app = McpApp::start().await;
    let agent = app.user().await;
    let human = app.user().await;
    let client = app.client(&agent).await;

    // add_task, with a due date: task.created + reminder.scheduled + sync.task.
    let created = ok(&call(
        &client,
        "add_task",
        json!({"title": "  Buy milk  ", "due_date": "2030-01-02T03:04:05+02:00"}),
    )
    .await);
    assert_eq!(created["title"], "Buy milk");
    assert_eq!(created["completed"], false);
    assert_eq!(created["due_date"], "2030-01-02T01:04:05.000000Z");
    let id = created["id"].as_str().expect("id").to_owned();
    Uuid::parse_str(&id).expect("the id is a UUID");
    let mcp_events = app.take_events();
    let mut correlations = vec![check_call_events(&mcp_events, &agent, &id)];
    assert_eq!(
        kinds(&mcp_events),
        [
            ("task.created", "task-events"),
            ("reminder.scheduled", "reminders"),
            ("sync.task", "task-updates")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let rest_task = rest(
        &app,
        &human,
        "POST",
        "/api/v1/tasks",
        Some(json!({"title": "Buy milk", "due_date": "2030-01-02"})),
    )
    .await;
    let rest_id = rest_task["id"].as_str().unwrap().to_owned();
    assert_eq!(shape(&mcp_events), shape(&app.take_events()));

    // Each further change: the MCP call, then the REST equivalent on the human's twin task.
    let steps: Vec<(&str, Value, &str, String, Option<Value>)> = vec![
        (
            "update_task",
            json!({"task_id": id, "title": "Buy oat milk"}),
            "PATCH",
            format!("/api/v1/tasks/{rest_id}"),
            Some(json!({"title": "Buy oat milk"})),
        ),
        (
            "update_task",
            json!({"task_id": id, "due_date": "2030-02-01"}),
            "PATCH",
            format!("/api/v1/tasks/{rest_id}"),
            Some(json!({"due_date": "2030-02-01"})),
        ),
        (
            "update_task",
            json!({"task_id": id, "clear_due_date": true}),
            "PATCH",
            format!("/api/v1/tasks/{rest_id}"),
            Some(json!({"due_date": null})),
        ),
        (
            "complete_task",
            json!({"task_id": id}),
            "POST",
            format!("/api/v1/tasks/{rest_id}/complete"),
            None,
        ),
        (
            "uncomplete_task",
            json!({"task_id": id}),
            "POST",
            format!("/api/v1/tasks/{rest_id}/uncomplete"),
            None,
        ),
        (
            "delete_task",
            json!({"task_id": id}),
            "DELETE",
            format!("/api/v1/tasks/{rest_id}"),
            None,
        ),
    ];
    let mut results = Vec::new();
    for (tool, arguments, method, path, body) in steps {
        let result = ok(&call(&client, tool, arguments).await);
        let mcp_events = app.take_events();
        correlations.push(check_call_events(&mcp_events, &agent, &id));
        rest(&app, &human, method, &path, body).await;
        assert_eq!(
            shape(&mcp_events),
            shape(&app.take_events()),
            "{tool} and {method} {path} differ"
        );
        match tool {
            "update_task" => assert_eq!(result["id"], id.as_str()),
            "delete_task" => {
                assert_eq!(result["message"], "Task deleted successfully");
                assert_eq!(result["task"]["id"], id.as_str());
            }
            _ => assert_eq!(result["completed"], json!(tool == "complete_task")),
        }
        results.push(result);
    }
    let deleted = results.last().expect("the delete result");
    assert_eq!(deleted["task"]["title"], "Buy oat milk");
    assert_eq!(deleted["task"]["due_date"], Value::Null);
    let distinct: BTreeSet<&String> = correlations.iter().collect();
    assert_eq!(
        distinct.len(),
        correlations.len(),
        "each tool call has its own correlation id"
    );

    // list_tasks publishes nothing and filters.
    ok(&call(&client, "add_task", json!({"title": "open"})).await);
    let done = ok(&call(&client, "add_task", json!({"title": "done"})).await);
    ok(&call(&client, "complete_task", json!({"task_id": done["id"]})).await);
    app.take_events();
    let all = ok(&call(&client, "list_tasks", json!({})).await);
    assert_eq!(all["filter"], "all");
    assert_eq!(all["count"], 2);
    assert_eq!(all["tasks"][0]["title"], "done", "newest first");
    let open = ok(&call(&client, "list_tasks", json!({"filter": "incomplete"})).await);
    assert_eq!(open["count"], 1);
    assert_eq!(open["tasks"][0]["title"], "open");
    let completed = ok(&call(&client, "list_tasks", json!({"filter": "completed"})).await);
    assert_eq!(completed["tasks"][0]["id"], done["id"]);
    assert!(app.take_events().is_empty(), "listing publishes nothing");

    client.cancel().await.expect("close the client");
    app.stop().await;
}

#[actix_web::test]
async fn clear_completed_publishes_a_delete_and_a_sync_event_per_removed_task() {
    let app = McpApp::start().await;
    let user = app.user().await;
    let client = app.client(&user).await;
    let mut done_ids = BTreeSet::new();
    for (title, due) in [("one", None), ("two", Some("2031-05-06T07:08:09Z"))] {
        let mut arguments = json!({"title": title});
        if let Some(due) = due {
            arguments["due_date"] = json!(due);
        }
        let task = ok(&call(&client, "add_task", arguments).await);
        ok(&call(&client, "complete_task", json!({"task_id": task["id"]})).await);
        done_ids.insert(task["id"].as_str().unwrap().to_owned());
    }
    let open = ok(&call(&client, "add_task", json!({"title": "still open"})).await);
    app.take_events();

    let cleared = ok(&call(&client, "clear_completed", json!({})).await);
    assert_eq!(cleared["deleted_count"], 2);
    let returned: BTreeSet<String> = cleared["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(returned, done_ids);

    let events = app.take_events();
    let correlation = events[0].body["correlationid"].clone();
    for id in &done_ids {
        let of_task: Vec<Event> = events
            .iter()
            .filter(|e| e.body["subject"] == id.as_str())
            .cloned()
            .collect();
        let types: Vec<&str> = of_task.iter().map(Event::kind).collect();
        assert_eq!(
            types.iter().filter(|t| **t == "task.deleted").count(),
            1,
            "{types:?}"
        );
        assert_eq!(
            types.iter().filter(|t| **t == "sync.task").count(),
            1,
            "{types:?}"
        );
        let sync = of_task.iter().find(|e| e.kind() == "sync.task").unwrap();
        assert_eq!(sync.body["data"]["action"], "deleted");
        assert_eq!(sync.topic, "task-updates");
        for event in &of_task {
            assert_eq!(event.partition_key, user.id.to_string());
            assert_eq!(
                event.body["correlationid"], correlation,
                "one correlation id for the whole call"
            );
        }
    }
    let reminders = events
        .iter()
        .filter(|e| e.kind() == "reminder.cancelled")
        .count();
    assert_eq!(
        reminders, 1,
        "the task with a due date has its reminder cancelled"
    );
    assert_eq!(events.len(), 2 + 2 + 1);

    let left = ok(&call(&client, "list_tasks", json!({})).await);
    assert_eq!(left["count"], 1);
    assert_eq!(left["tasks"][0]["id"], open["id"]);
    let again = ok(&call(&client, "clear_completed", json!({})).await);
    assert_eq!(again["deleted_count"], 0);
    assert!(
        app.take_events().is_empty(),
        "clearing nothing publishes nothing"
    );
    client.cancel().await.expect("close the client");
    app.stop().await;
}

#[actix_web::test]
async fn a_user_cannot_see_or_change_another_users_tasks() {
    let app = McpApp::start().await;
    let alice = app.user().await;
    let mallory = app.user().await;
    let alice_client = app.client(&alice).await;
    let mallory_client: Client = app.client(&mallory).await;

    let task = ok(&call(&alice_client, "add_task", json!({"title": "private"})).await);
    let id = task["id"].clone();
    app.take_events();

    for (tool, arguments) in [
        ("complete_task", json!({"task_id": id})),
        ("uncomplete_task", json!({"task_id": id})),
        ("update_task", json!({"task_id": id, "title": "mine now"})),
        ("delete_task", json!({"task_id": id})),
    ] {
        let text = tool_error(&call(&mallory_client, tool, arguments).await);
        assert!(
            text.starts_with("AUTHORIZATION_ERROR: Access denied"),
            "{tool}: {text}"
        );
    }
    let listed = ok(&call(&mallory_client, "list_tasks", json!({})).await);
    assert_eq!(listed["count"], 0);
    ok(&call(&mallory_client, "clear_completed", json!({})).await);
    assert!(
        app.take_events().is_empty(),
        "a rejected call publishes nothing"
    );

    let still = ok(&call(&alice_client, "list_tasks", json!({})).await);
    assert_eq!(still["tasks"][0]["title"], "private");
    assert_eq!(still["tasks"][0]["completed"], false);
    alice_client.cancel().await.expect("close the client");
    mallory_client.cancel().await.expect("close the client");
    app.stop().await;
}

#[actix_web::test]
async fn bad_input_is_a_tool_error_and_the_session_goes_on() {
    let app = McpApp::start().await;
    let user = app.user().await;
    let client = app.client(&user).await;
    let unknown = Uuid::new_v4().to_string();
    let task = ok(&call(&client, "add_task", json!({"title": "keep"})).await);
    app.take_events();

    let cases = [
        (
            "add_task",
            json!({"title": "   "}),
            "VALIDATION_ERROR: Title must not be empty",
        ),
        (
            "add_task",
            json!({"title": "x".repeat(501)}),
            "VALIDATION_ERROR: Title must be at most 500 characters",
        ),
        (
            "add_task",
            json!({"title": "x", "due_date": "next tuesday"}),
            "due_date must be an RFC 3339 date-time",
        ),
        // Year 10000 once in UTC: this panicked, and the call never answered (issue 15).
        (
            "add_task",
            json!({"title": "x", "due_date": "9999-12-31T23:30:00-01:00"}),
            "due_date must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ),
        (
            "update_task",
            json!({"task_id": task["id"], "due_date": "0000-01-01T00:30:00+01:00"}),
            "due_date must be between",
        ),
        (
            "add_task",
            json!({"title": "bell\u{7}"}),
            "VALIDATION_ERROR: Title must not contain control characters",
        ),
        ("add_task", json!({}), "title"),
        (
            "add_task",
            json!({"title": 5}),
            "failed to deserialize parameters: invalid type",
        ),
        (
            "complete_task",
            json!({"task_id": "42"}),
            "VALIDATION_ERROR: Invalid task id: expected a UUID",
        ),
        (
            "delete_task",
            json!({"task_id": unknown}),
            "NOT_FOUND: Task not found",
        ),
        (
            "uncomplete_task",
            json!({"task_id": unknown}),
            "NOT_FOUND: Task not found",
        ),
        (
            "update_task",
            json!({"task_id": task["id"], "title": ""}),
            "VALIDATION_ERROR: Title must not be empty",
        ),
        (
            "update_task",
            json!({"task_id": task["id"], "due_date": "2030-01-01", "clear_due_date": true}),
            "not both",
        ),
        (
            "update_task",
            json!({"task_id": "not-a-uuid", "title": "x"}),
            "Invalid task id",
        ),
        (
            "list_tasks",
            json!({"filter": "done"}),
            "unknown variant `done`",
        ),
    ];
    for (tool, arguments, expected) in cases {
        let text = tool_error(&call(&client, tool, arguments.clone()).await);
        assert!(text.contains(expected), "{tool} {arguments}: {text}");
    }
    assert!(app.take_events().is_empty(), "failed calls publish nothing");

    let listed = ok(&call(&client, "list_tasks", json!({})).await);
    assert_eq!(
        listed["count"], 1,
        "the session still works after the errors"
    );
    assert_eq!(listed["tasks"][0]["title"], "keep");
    client.cancel().await.expect("close the client");
    app.stop().await;
}
