//! The `/mcp` transport: authentication before the MCP layer (401 envelope), stateless operation, any deployment
//! host name, correlation ids from the request headers, and the current protocol revision.

use actix_web::http::StatusCode;
use rmcp::model::ProtocolVersion;
use serde_json::json;

use crate::support::{Answer, McpApp, call, http, initialize_request, mcp_headers, ok};

/// `POST /mcp` over TCP with `headers` and a JSON-RPC `body`.
fn post(app: &McpApp, headers: &[(&str, String)], body: &serde_json::Value) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    http(app.port, "POST", "/mcp", &headers, Some(&body.to_string()))
}

fn without_token() -> Vec<(&'static str, String)> {
    vec![
        ("Accept", "application/json, text/event-stream".to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ]
}

#[actix_web::test]
async fn requests_without_a_valid_token_get_the_api_401_envelope() {
    let app = McpApp::start().await;
    let user = app.user().await;

    let missing = post(&app, &without_token(), &initialize_request());
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{}", missing.text);
    assert_eq!(missing.body["error"]["code"], "AUTHENTICATION_ERROR");
    assert_eq!(missing.body["error"]["message"], "Not authenticated");
    assert!(missing.body["error"]["details"].is_array());
    assert_eq!(missing.headers.get("www-authenticate").unwrap(), "Bearer");

    for bad in ["garbage", &format!("{}x", user.token)] {
        let mut headers = without_token();
        headers.push(("Authorization", format!("Bearer {bad}")));
        let answer = post(&app, &headers, &initialize_request());
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert_eq!(answer.body["error"]["code"], "AUTHENTICATION_ERROR");
    }

    let Err(err) = app.client_with(None, &[]).await else {
        panic!("a client without a token cannot connect");
    };
    assert!(!err.is_empty());
    assert!(app.take_events().is_empty());
    app.stop().await;
}

#[actix_web::test]
async fn the_auth_cookie_works_like_the_bearer_header() {
    let app = McpApp::start().await;
    let user = app.user().await;
    let mut headers = without_token();
    headers.push(("Cookie", format!("auth_token={}", user.token)));
    let answer = post(&app, &headers, &initialize_request());
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.body["result"]["serverInfo"]["name"], "pakaura-tasks",
        "{:?} {}",
        answer.headers, answer.text
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_server_is_stateless_and_accepts_deployment_host_names() {
    let app = McpApp::start().await;
    let user = app.user().await;

    // A real deployment's host name (rmcp alone would answer 403 to anything but loopback).
    let mut headers = mcp_headers(&user.token);
    headers.push(("Host", "tasks.example.com".to_owned()));
    let answer = post(&app, &headers, &initialize_request());
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["result"]["protocolVersion"], "2025-11-25");
    assert!(
        answer.headers.get("mcp-session-id").is_none(),
        "stateless: no session is created"
    );
    assert!(answer.headers.get("x-correlation-id").is_some());

    // No session needed for the next request: a tools/list on its own works (any replica can answer it).
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let mut headers = mcp_headers(&user.token);
    headers.push(("MCP-Protocol-Version", "2025-11-25".to_owned()));
    let answer = post(&app, &headers, &list);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.body["result"]["tools"].as_array().map(Vec::len),
        Some(7),
        "{}",
        answer.text
    );

    // No standalone SSE stream or session deletion in stateless mode.
    let bearer = format!("Bearer {}", user.token);
    let get = http(
        app.port,
        "GET",
        "/mcp",
        &[("Authorization", &bearer), ("Accept", "text/event-stream")],
        None,
    );
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED, "{}", get.text);
    app.stop().await;
}

#[actix_web::test]
async fn events_carry_the_correlation_id_of_the_http_request() {
    let app = McpApp::start().await;
    let user = app.user().await;

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let client = app
        .client_with(Some(&user.token), &[("traceparent", traceparent)])
        .await
        .expect("connect");
    ok(&call(&client, "add_task", json!({"title": "traced"})).await);
    let events = app.take_events();
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(
            event.body["correlationid"],
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
        );
        assert_eq!(
            event.body["traceid"],
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
        );
    }
    client.cancel().await.expect("close the client");

    let given = uuid::Uuid::new_v4().to_string();
    let client = app
        .client_with(Some(&user.token), &[("x-correlation-id", &given)])
        .await
        .expect("connect");
    ok(&call(&client, "add_task", json!({"title": "correlated"})).await);
    let events = app.take_events();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.body["correlationid"] == given.as_str())
    );
    client.cancel().await.expect("close the client");
    app.stop().await;
}

#[actix_web::test]
async fn the_current_protocol_revision_works_without_initialize() {
    let app = McpApp::start().await;
    let user = app.user().await;
    let client = app.client_latest(&user).await;
    assert_eq!(
        client.peer_info().expect("discovered").protocol_version,
        ProtocolVersion::LATEST
    );

    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 7);
    let task = ok(&call(
        &client,
        "add_task",
        json!({"title": "modern", "due_date": "2032-03-04"}),
    )
    .await);
    assert_eq!(task["due_date"], "2032-03-04T00:00:00.000000Z");
    let events = app.take_events();
    let types: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(types, ["task.created", "reminder.scheduled", "sync.task"]);
    assert!(
        events
            .iter()
            .all(|e| e.partition_key == user.id.to_string())
    );
    let listed = ok(&call(&client, "list_tasks", json!({"filter": "incomplete"})).await);
    assert_eq!(listed["tasks"][0]["id"], task["id"]);
    client.cancel().await.expect("close the client");
    app.stop().await;
}
