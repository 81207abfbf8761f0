//! Bad inputs users send: each gets the right 4xx envelope, never a 5xx, and publishes nothing.

use actix_web::http::header;
use actix_web::test::TestRequest;
use serde_json::json;

use crate::db_test;
use crate::support::{Backend, TestApp};

async fn malformed_and_mistyped_bodies_are_422(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let task = app.create_task(&user, json!({"title": "t"})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    app.memory.clear();
    let bearer = format!("Bearer {}", user.token);
    let raw = |method: &str, path: &str, body: &'static str| {
        TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path)
            .insert_header((header::AUTHORIZATION, bearer.clone()))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body)
    };
    let task_path = format!("/api/v1/tasks/{id}");
    for (method, path, body) in [
        ("POST", "/api/v1/tasks", "{\"title\": "),
        ("POST", "/api/v1/tasks", "not json"),
        ("POST", "/api/v1/tasks", ""),
        ("POST", "/api/v1/tasks", "[\"title\"]"),
        ("POST", "/api/v1/tasks", "{\"title\": 42}"),
        ("POST", "/api/v1/tasks", "{\"title\": null}"),
        ("POST", "/api/v1/tasks", "{\"title\": [\"a\"]}"),
        (
            "POST",
            "/api/v1/tasks",
            "{\"title\": \"ok\", \"due_date\": 5}",
        ),
        ("POST", "/api/v1/tasks", "{}"),
        ("PATCH", task_path.as_str(), "{\"completed\": \"yes\"}"),
        ("PATCH", task_path.as_str(), "{\"completed\": 1}"),
        ("PATCH", task_path.as_str(), "{\"title\": false}"),
        ("PATCH", task_path.as_str(), "{\"due_date\": {}}"),
        ("PATCH", task_path.as_str(), "{bad"),
        ("POST", "/api/v1/auth/register", "{\"email\": "),
        ("POST", "/api/v1/auth/login", "nope"),
    ] {
        let answer = app.call(raw(method, path, body)).await;
        assert_eq!(
            answer.status.as_u16(),
            422,
            "{method} {path} {body:?}: {}",
            answer.text
        );
        answer.assert_error(422, "VALIDATION_ERROR");
    }
    assert!(app.memory.events().is_empty());
}
db_test!(
    malformed_and_mistyped_bodies_are_422,
    super::malformed_and_mistyped_bodies_are_422
);

#[actix_web::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::new(Backend::Sqlite).await;
    let user = app.register().await;
    let huge = format!("{{\"title\": \"{}\"}}", "x".repeat(64 * 1024));
    let answer = app
        .call(
            TestRequest::post()
                .uri("/api/v1/tasks")
                .insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(huge),
        )
        .await;
    answer.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(app.memory.events().is_empty());
}

#[actix_web::test]
async fn unauthenticated_requests_are_401_before_body_checks() {
    let app = TestApp::new(Backend::Sqlite).await;
    let answer = app
        .call(
            TestRequest::post()
                .uri("/api/v1/tasks")
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload("{broken"),
        )
        .await;
    answer.assert_error(401, "AUTHENTICATION_ERROR");
    app.request("GET", "/api/v1/tasks/not-a-uuid", None, None)
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
}
