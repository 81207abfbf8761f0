//! Property tests: any JSON body to the request parsers and to the HTTP routes gives a success or a 4xx envelope,
//! never a panic or a 5xx; and the OpenAPI document's patterns accept exactly what the parsers accept.

use actix_web::http::header;
use actix_web::test::TestRequest;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use task_api::ApiError;
use task_api::dto::{parse_create, parse_credentials, parse_update};
use task_domain::{Email, TaskTitle};
use utoipa::OpenApi;

use crate::support::{Backend, TestApp};

/// Any string, weighted towards the characters that matter here: controls, whitespace, `@`, `.`, digits, dates.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x20\\x7f-\\xa0\u{2028}@.a-zA-Z0-9:+TZ-]{0,30}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?)?",
    ]
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object with the fields the API reads, each any JSON value or absent, plus noise.
fn body() -> impl Strategy<Value = Value> {
    let field = || prop::option::of(json_value());
    (field(), field(), field(), field(), field(), json_value()).prop_map(
        |(title, due_date, completed, email, password, noise)| {
            let mut object = Map::new();
            for (name, value) in [
                ("title", title),
                ("due_date", due_date),
                ("completed", completed),
                ("email", email),
                ("password", password),
            ] {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            object.insert("noise".to_owned(), noise);
            Value::Object(object)
        },
    )
}

fn is_validation(err: &ApiError) -> bool {
    matches!(err, ApiError::Validation { .. })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_answer_any_json_with_a_value_or_a_validation_error(
        body in prop_oneof![body(), json_value()]
    ) {
        if let Err(err) = parse_create(body.clone()) {
            prop_assert!(is_validation(&err), "{err:?}");
        }
        if let Err(err) = parse_update(body.clone()) {
            prop_assert!(is_validation(&err), "{err:?}");
        }
        if let Err(err) = parse_credentials(body) {
            prop_assert!(is_validation(&err), "{err:?}");
        }
    }

    #[test]
    fn accepted_titles_never_hold_control_characters(raw in text()) {
        if let Ok(input) = parse_create(json!({ "title": raw })) {
            prop_assert!(!input.title.as_str().chars().any(char::is_control));
            prop_assert!(!input.title.as_str().is_empty());
        }
    }
}

/// The `pattern` of `property` in schema `schema` of the OpenAPI document.
fn pattern(schema: &str, property: &str) -> String {
    let doc = serde_json::to_value(task_api::openapi::ApiDoc::openapi())
        .expect("the document serializes");
    doc["components"]["schemas"][schema]["properties"][property]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{schema}.{property} has a pattern"))
        .to_owned()
}

/// `pattern` without its `^`…`$` anchors (proptest's generator produces whole strings and refuses anchors).
fn unanchored(pattern: &str) -> &str {
    pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .expect("an anchored pattern")
}

#[test]
fn documented_patterns_accept_what_the_parsers_accept_and_nothing_else() {
    let title = regex::Regex::new(&pattern("CreateTaskRequest", "title")).expect("a valid regex");
    let email = regex::Regex::new(&pattern("Credentials", "email")).expect("a valid regex");
    let mut runner = TestRunner::new(ProptestConfig::with_cases(2048));
    // Strings the patterns describe are accepted by the parsers (what schemathesis sends as valid)...
    let matching_title = proptest::string::string_regex(unanchored(title.as_str()))
        .expect("a generator for the pattern");
    let matching_email = proptest::string::string_regex(unanchored(email.as_str()))
        .expect("a generator for the pattern");
    runner
        .run(&(matching_title, matching_email), |(t, e)| {
            prop_assert!(TaskTitle::parse(&t).is_ok(), "title {t:?}");
            prop_assert!(
                Email::parse(&e).is_ok() || e.chars().count() > Email::MAX_CHARS,
                "email {e:?}"
            );
            Ok(())
        })
        .expect("valid by the document is valid for the parser");
    // ...and whatever the parsers accept matches the patterns (so refusing the rest is documented).
    runner
        .run(&text(), |raw| {
            prop_assert_eq!(
                TaskTitle::parse(&raw).is_ok(),
                title.is_match(&raw),
                "title {:?}",
                raw
            );
            if raw.chars().count() <= Email::MAX_CHARS
                && raw.to_lowercase().chars().count() == raw.chars().count()
            {
                prop_assert_eq!(
                    Email::parse(&raw).is_ok(),
                    email.is_match(&raw),
                    "email {:?}",
                    raw
                );
            }
            Ok(())
        })
        .expect("the pattern and the parser agree");
}

#[test]
fn the_documented_completed_filter_is_what_the_query_parser_accepts() {
    let doc = serde_json::to_value(task_api::openapi::ApiDoc::openapi())
        .expect("the document serializes");
    let parameters = doc["paths"]["/api/v1/tasks"]["get"]["parameters"]
        .as_array()
        .expect("GET /tasks has parameters");
    let completed = parameters
        .iter()
        .find(|p| p["name"] == "completed")
        .expect("the completed parameter");
    let pattern = regex::Regex::new(completed["schema"]["pattern"].as_str().expect("a pattern"))
        .expect("a valid regex");
    let mut runner = TestRunner::new(ProptestConfig::with_cases(2048));
    let values = prop_oneof![
        text(),
        "[ \\t\u{a0}\u{3000}]{0,2}(true|FALSE|Yes|no|On|off|1|0|maybe)?[ \\t\u{a0}\u{2028}]{0,2}",
    ];
    runner
        .run(&values, |raw| {
            prop_assert_eq!(
                task_api::dto::parse_completed_filter(Some(&raw)).is_ok(),
                pattern.is_match(&raw),
                "{:?}",
                raw
            );
            Ok(())
        })
        .expect("the pattern and the parser agree");
}

#[test]
fn the_document_lists_the_statuses_every_route_can_answer() {
    let doc = serde_json::to_value(task_api::openapi::ApiDoc::openapi())
        .expect("the document serializes");
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .keys()
            .cloned()
            .collect()
    };
    for (path, method, expected) in [
        (
            "/api/v1/tasks",
            "post",
            &["201", "401", "413", "415", "422", "429", "500", "503"][..],
        ),
        (
            "/api/v1/tasks",
            "get",
            &["200", "401", "422", "429", "500", "503"],
        ),
        (
            "/api/v1/tasks/{task_id}",
            "get",
            &["200", "401", "403", "404", "422", "429", "500", "503"],
        ),
        (
            "/api/v1/tasks/{task_id}",
            "patch",
            &[
                "200", "401", "403", "404", "413", "415", "422", "429", "500", "503",
            ],
        ),
        (
            "/api/v1/tasks/{task_id}",
            "delete",
            &["200", "401", "403", "404", "422", "429", "500", "503"],
        ),
        (
            "/api/v1/tasks/{task_id}/complete",
            "post",
            &["200", "401", "403", "404", "422", "429", "500", "503"],
        ),
        (
            "/api/v1/auth/login",
            "post",
            &["200", "401", "413", "415", "422", "429", "500", "503"],
        ),
        (
            "/api/v1/auth/register",
            "post",
            &["201", "409", "413", "415", "422", "429", "500", "503"],
        ),
        ("/api/v1/auth/logout", "post", &["200", "429", "500"]),
        ("/api/v1/auth/me", "get", &["200", "401", "500", "503"]),
    ] {
        let listed = statuses(path, method);
        for status in expected {
            assert!(
                listed.iter().any(|s| s == status),
                "{method} {path} does not list {status}: {listed:?}"
            );
        }
    }
}

#[actix_web::test]
async fn any_json_body_on_any_route_is_a_success_or_a_4xx_envelope() {
    let app = TestApp::new(Backend::Sqlite).await;
    let user = app.register().await;
    let task = app.create_task(&user, json!({"title": "target"})).await;
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("an id"));
    let mut runner = TestRunner::new(ProptestConfig::with_cases(64));
    let strategy = prop_oneof![body(), json_value()];
    for case in 0..64 {
        let body = strategy.new_tree(&mut runner).expect("a value").current();
        for (method, path, token) in [
            ("POST", "/api/v1/tasks", true),
            ("PATCH", task_path.as_str(), true),
            ("POST", "/api/v1/auth/login", false),
            ("POST", "/api/v1/auth/register", false),
        ] {
            let mut req = TestRequest::default()
                .method(method.parse().expect("a method"))
                .uri(path)
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(body.to_string());
            if token {
                req = req.insert_header((header::AUTHORIZATION, format!("Bearer {}", user.token)));
            }
            let answer = app.call(req).await;
            let status = answer.status.as_u16();
            assert!(
                status < 500,
                "case {case}: {method} {path} {body} -> {status} {}",
                answer.text
            );
            if status >= 400 {
                assert!(
                    answer.body["error"]["code"].is_string(),
                    "case {case}: {}",
                    answer.text
                );
            }
        }
    }
}
