//! Health, readiness, metrics, OpenAPI and Swagger UI routes; unknown routes and methods.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;

use crate::db_test;
use crate::support::{Backend, TestApp};

async fn health_answers_healthy_with_the_version(backend: Backend) {
    let app = TestApp::new(backend).await;
    let answer = app.request("GET", "/api/v1/health", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "healthy");
    // The route reports task-api's package version (the workspace version, as is the binary's `--version`).
    assert_eq!(answer.body["version"], env!("CARGO_PKG_VERSION"));
    assert_ne!(
        answer.body["version"], "0.0.0",
        "the workspace version is a real one"
    );
    assert!(answer.header("x-correlation-id").is_some());

    let live = app.request("GET", "/healthz", None, None).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app.request("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["status"], "ready");
}
db_test!(
    health_answers_healthy_with_the_version,
    super::health_answers_healthy_with_the_version
);

#[actix_web::test]
async fn readyz_answers_503_when_the_database_is_unreachable() {
    let mut app = TestApp::new(Backend::Sqlite).await;
    let log = crate::support::logger();
    let mut db = task_store::DbConfig::with_url("postgres://nobody@127.0.0.1:1/none");
    db.wait_timeout_ms = 200;
    db.create_timeout_ms = 200;
    let store = task_store::Store::open(&db, &log)
        .await
        .expect("a PostgreSQL pool opens without connecting");
    let state = app.state.clone();
    let config_state = task_api::state::AppState {
        log: log.clone(),
        auth: state.auth.clone(),
        users: task_api::auth::KnownUsers::new(store.clone(), std::time::Duration::ZERO),
        passwords: state.passwords.clone(),
        store: store.clone(),
        tasks: task_api::service::TaskService::new(
            store,
            task_api::events::EventFactory::new(
                "pakaura/api",
                task_api::config::Topics::defaults_for_tests(),
            ),
            task_api::service::Delivery::Publish(state.publisher.clone()),
        ),
        publisher: state.publisher.clone(),
        metrics: task_api::metrics::Metrics::new(),
        auth_limiter: std::sync::Arc::new(task_api::rate_limit::KeyedLimiter::new(0)),
        task_limiter: std::sync::Arc::new(task_api::rate_limit::KeyedLimiter::new(0)),
        http: state.http.clone(),
    };
    app.state = actix_web::web::Data::new(config_state);
    let answer = app.request("GET", "/readyz", None, None).await;
    answer.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(
        !answer.text.contains("127.0.0.1:1"),
        "no internals leak: {}",
        answer.text
    );
    let live = app.request("GET", "/healthz", None, None).await;
    assert_eq!(live.status, StatusCode::OK);
}

#[actix_web::test]
async fn metrics_expose_request_counts_and_latency() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.request("GET", "/api/v1/health", None, None).await;
    let answer = app.request("GET", "/metrics", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert!(
        answer
            .text
            .contains(r#"http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("http_request_duration_seconds_bucket"),
        "{}",
        answer.text
    );
}

#[actix_web::test]
async fn the_openapi_document_and_swagger_ui_are_served() {
    let app = TestApp::new(Backend::Sqlite).await;
    let doc = app.request("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.text);
    assert!(
        doc.body["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/auth/register",
        "/api/v1/health",
    ] {
        assert!(
            doc.body["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let ui = app.call(TestRequest::get().uri("/docs/")).await;
    assert_eq!(ui.status, StatusCode::OK);
    assert!(
        ui.text.contains("swagger"),
        "{}",
        &ui.text[..ui.text.len().min(200)]
    );
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_with_the_envelope() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.request("GET", "/api/v1/nope", None, None)
        .await
        .assert_error(404, "NOT_FOUND");
    app.request("GET", "/nope", None, None)
        .await
        .assert_error(404, "NOT_FOUND");
    app.request("PUT", "/api/v1/tasks", None, None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    app.request("GET", "/api/v1/auth/login", None, None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
}

#[actix_web::test]
async fn cors_allows_the_frontend_origin_with_credentials() {
    let app = TestApp::new(Backend::Sqlite).await;
    let answer = app
        .call(
            TestRequest::default()
                .method(actix_web::http::Method::OPTIONS)
                .uri("/api/v1/tasks")
                .insert_header(("origin", "http://localhost:3000"))
                .insert_header(("access-control-request-method", "POST")),
        )
        .await;
    assert!(
        answer.status.is_success(),
        "{:?} {}",
        answer.status,
        answer.text
    );
    assert_eq!(
        answer.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
}
