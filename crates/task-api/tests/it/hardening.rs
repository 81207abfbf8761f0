//! Inputs an attacker or a careless client sends (issue 15): each gets the right 4xx envelope, never a dropped
//! connection, a 5xx or a stored control character; a panic, should one happen, is a 500 envelope.

use std::net::SocketAddr;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use serde_json::{Value, json};

use crate::db_test;
use crate::support::{Answer, Backend, Options, TestApp};

fn raw(method: &str, path: &str, content_type: Option<&str>, body: &str) -> TestRequest {
    let mut req = TestRequest::default()
        .method(method.parse().expect("a method"))
        .uri(path)
        .set_payload(body.to_owned());
    if let Some(content_type) = content_type {
        req = req.insert_header((header::CONTENT_TYPE, content_type));
    }
    req
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
}

#[actix_web::test]
async fn json_bodies_need_a_json_content_type() {
    let app = TestApp::new(Backend::Sqlite).await;
    let user = app.register().await;
    let body = r#"{"title": "cross-site"}"#;
    // What a browser sends cross-site without a preflight (`text/plain`, forms), and no type at all.
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let answer = app
            .call(bearer(
                raw("POST", "/api/v1/tasks", content_type, body),
                &user.token,
            ))
            .await;
        answer.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
        // Login CSRF needs no token: refused too, before any password is checked.
        let login = app
            .call(raw(
                "POST",
                "/api/v1/auth/login",
                content_type,
                &json!({"email": user.email, "password": "password123"}).to_string(),
            ))
            .await;
        login.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
        assert!(
            login.header("set-cookie").is_none(),
            "{content_type:?}: no session"
        );
    }
    assert!(app.memory.events().is_empty());
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.pakaura+json",
    ] {
        let answer = app
            .call(bearer(
                raw("POST", "/api/v1/tasks", Some(content_type), body),
                &user.token,
            ))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{content_type}: {}",
            answer.text
        );
    }
}

async fn bad_characters_are_422(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    for title in [
        "a\u{0}b",
        "\u{0}",
        "red\u{1b}[31m",
        "two\nlines",
        "tab\there",
        "del\u{7f}",
    ] {
        let answer = app
            .request(
                "POST",
                "/api/v1/tasks",
                Some(json!({ "title": title })),
                Some(&user.token),
            )
            .await;
        answer.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(
            answer.body["error"]["details"][0]["field"], "title",
            "{title:?}"
        );
    }
    let task = app.create_task(&user, json!({"title": "fine"})).await;
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("id"));
    app.request(
        "PATCH",
        &path,
        Some(json!({"title": "x\u{0}"})),
        Some(&user.token),
    )
    .await
    .assert_error(422, "VALIDATION_ERROR");
    // No token needed to reach these: a NUL must not get to the database (a 500 on PostgreSQL).
    for route in ["/api/v1/auth/register", "/api/v1/auth/login"] {
        for (email, password) in [
            ("nul\u{0}@example.com", "password123"),
            (user.email.as_str(), "password\u{0}123"),
            ("esc\u{1b}@example.com", "password123"),
        ] {
            let answer = app
                .request(
                    "POST",
                    route,
                    Some(json!({"email": email, "password": password})),
                    None,
                )
                .await;
            answer.assert_error(422, "VALIDATION_ERROR");
        }
    }
    let listed = app
        .request("GET", "/api/v1/tasks", None, Some(&user.token))
        .await;
    assert_eq!(listed.body["count"], 1, "{}", listed.text);
}
db_test!(bad_characters_are_422, super::bad_characters_are_422);

async fn due_dates_out_of_range_are_422_and_in_range_ones_rfc3339(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    for due in [
        "9999-12-31T23:30:00-01:00",
        "0000-01-01T00:30:00+01:00",
        "0001-01-01",
        "1969-12-31T23:59:59Z",
    ] {
        let answer = app
            .request(
                "POST",
                "/api/v1/tasks",
                Some(json!({"title": "x", "due_date": due})),
                Some(&user.token),
            )
            .await;
        answer.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(
            answer.body["error"]["details"][0]["field"], "due_date",
            "{due}"
        );
    }
    for (due, written) in [
        ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59.000000Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000000Z"),
    ] {
        let task = app
            .create_task(&user, json!({"title": "edge", "due_date": due}))
            .await;
        let got = task["due_date"].as_str().expect("a due date");
        assert!(
            time::OffsetDateTime::parse(got, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{due} -> {got}"
        );
        assert_eq!(&got[..19], &written[..19], "{due} -> {got}");
    }
    let events = app.memory.events().len();
    assert!(events > 0);
}
db_test!(
    due_dates_out_of_range_are_422_and_in_range_ones_rfc3339,
    super::due_dates_out_of_range_are_422_and_in_range_ones_rfc3339
);

#[actix_web::test]
async fn a_panicking_handler_is_a_500_envelope_not_a_dropped_connection() {
    let app = TestApp::new(Backend::Sqlite).await;
    let service = test::init_service(task_api::app(app.state.clone()).route(
        "/test-only/panic",
        web::get().to(|| async {
            if true {
                panic!("boom: secret detail");
            }
            "unreachable"
        }),
    ))
    .await;
    let result = test::try_call_service(
        &service,
        TestRequest::get()
            .uri("/test-only/panic")
            .insert_header(("x-correlation-id", "7d444840-9dc0-11d1-b245-5ffdce74fad2"))
            .to_request(),
    )
    .await;
    // An error out of the app is rendered by actix's dispatcher with `error_response`, as here.
    let res = match result {
        Ok(res) => res.into_parts().1.map_into_boxed_body(),
        Err(err) => err.error_response().map_into_boxed_body(),
    };
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok()),
        Some("7d444840-9dc0-11d1-b245-5ffdce74fad2")
    );
    let bytes = actix_web::body::to_bytes(res.into_body())
        .await
        .expect("a body");
    let body: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    assert!(!body.to_string().contains("secret"), "{body}");
    // The service keeps answering.
    let res = test::call_service(&service, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn metric_labels_come_from_a_closed_set() {
    let app = TestApp::new(Backend::Sqlite).await;
    for method in ["FROBNICATE", "X-ATTACK-1", "X-ATTACK-2"] {
        app.call(
            TestRequest::default()
                .method(method.parse().expect("a method"))
                .uri("/healthz"),
        )
        .await;
    }
    app.request("GET", "/no/such/route/12345", None, None).await;
    let text = app.request("GET", "/metrics", None, None).await.text;
    assert!(
        !text.contains("FROBNICATE") && !text.contains("X-ATTACK"),
        "{text}"
    );
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(!text.contains("12345"), "{text}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
}

#[actix_web::test]
async fn undeclared_methods_are_405_with_allow() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (method, path, allow) in [
        ("PUT", "/api/v1/tasks", "GET, POST"),
        (
            "POST",
            "/api/v1/tasks/00000000-0000-0000-0000-000000000000",
            "GET, PATCH, DELETE",
        ),
        (
            "GET",
            "/api/v1/tasks/00000000-0000-0000-0000-000000000000/complete",
            "POST",
        ),
        ("GET", "/api/v1/auth/login", "POST"),
        ("DELETE", "/api/v1/auth/me", "GET"),
        ("POST", "/api/v1/health", "GET"),
        ("DELETE", "/healthz", "GET"),
        ("POST", "/readyz", "GET"),
        ("PUT", "/metrics", "GET"),
        ("TRACE", "/api/v1/tasks", "GET, POST"),
    ] {
        let answer = app.request(method, path, None, None).await;
        answer.assert_error(405, "METHOD_NOT_ALLOWED");
        assert_eq!(
            answer.header("allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
    }
}

async fn logout_from(app: &TestApp, peer: &str) -> Answer {
    let peer: SocketAddr = peer.parse().expect("a socket address");
    app.call(
        TestRequest::post()
            .uri("/api/v1/auth/logout")
            .peer_addr(peer),
    )
    .await
}

#[actix_web::test]
async fn ipv6_clients_share_one_auth_limit_per_64() {
    let app = TestApp::with(Options {
        auth_per_minute: 2,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    // Rotating the interface identifier inside one /64 does not buy more requests.
    assert_eq!(
        logout_from(&app, "[2001:db8:1:2::1]:1000").await.status,
        StatusCode::OK
    );
    assert_eq!(
        logout_from(&app, "[2001:db8:1:2:dead:beef:0:7]:1000")
            .await
            .status,
        StatusCode::OK
    );
    let limited = logout_from(&app, "[2001:db8:1:2:ffff::9]:1000").await;
    limited.assert_error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    // The next /64 is another client.
    assert_eq!(
        logout_from(&app, "[2001:db8:1:3::1]:1000").await.status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn task_routes_are_limited_per_user_by_the_scope_middleware() {
    let app = TestApp::with(Options {
        tasks_per_minute: 2,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let alice = app.register().await;
    let bob = app.register().await;
    for _ in 0..2 {
        let answer = app
            .request("GET", "/api/v1/tasks", None, Some(&alice.token))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    // Every task route shares the user's limit, including a malformed id and an unknown method.
    let limited = app
        .request("GET", "/api/v1/tasks/not-a-uuid", None, Some(&alice.token))
        .await;
    limited.assert_error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    let answer = app
        .request("GET", "/api/v1/tasks", None, Some(&bob.token))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "bob has his own limit");
    // Without a token: 401, not counted against anyone.
    app.request("GET", "/api/v1/tasks", None, None)
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
}

/// `POST /mcp` (an `initialize` call) with `token`, if any.
async fn mcp_post(app: &TestApp, token: Option<&str>) -> Answer {
    let mut req = TestRequest::post()
        .uri("/mcp")
        .insert_header((header::ACCEPT, "application/json, text/event-stream"))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}})
            .to_string(),
        );
    if let Some(token) = token {
        req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
    }
    app.call(req).await
}

#[actix_web::test]
async fn mcp_shares_the_per_user_limit_of_the_task_routes() {
    let app = TestApp::with(Options {
        tasks_per_minute: 2,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let alice = app.register().await;
    let bob = app.register().await;
    let answer = app
        .request("GET", "/api/v1/tasks", None, Some(&alice.token))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // Past the limit and the authentication, the MCP layer answers (what it makes of a raw test request does
    // not matter here).
    let passed = |answer: &Answer| {
        answer.status != StatusCode::TOO_MANY_REQUESTS && answer.status != StatusCode::UNAUTHORIZED
    };
    let first = mcp_post(&app, Some(&alice.token)).await;
    assert!(passed(&first), "{}: {}", first.status, first.text);
    // The task routes and /mcp take from one limit per user.
    let limited = mcp_post(&app, Some(&alice.token)).await;
    limited.assert_error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    app.request("GET", "/api/v1/tasks", None, Some(&alice.token))
        .await
        .assert_error(429, "RATE_LIMITED");
    let other = mcp_post(&app, Some(&bob.token)).await;
    assert!(passed(&other), "bob has his own limit: {}", other.text);
    // Without a token: 401, not counted against anyone.
    mcp_post(&app, None)
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
}

#[actix_web::test]
async fn only_register_login_and_logout_take_from_the_address_limit() {
    let app = TestApp::with(Options {
        auth_per_minute: 1,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    // Test requests have no peer address: they all count as one client, whose one request this is.
    let user = app.register().await;
    app.request("POST", "/api/v1/auth/logout", None, None)
        .await
        .assert_error(429, "RATE_LIMITED");
    app.request(
        "POST",
        "/api/v1/auth/login",
        Some(json!({"email": user.email, "password": "password123"})),
        None,
    )
    .await
    .assert_error(429, "RATE_LIMITED");
    let me = app
        .request("GET", "/api/v1/auth/me", None, Some(&user.token))
        .await;
    assert_eq!(me.status, StatusCode::OK, "/me is not limited: {}", me.text);
    app.request("GET", "/api/v1/auth/unknown", None, None)
        .await
        .assert_error(404, "NOT_FOUND");
}
