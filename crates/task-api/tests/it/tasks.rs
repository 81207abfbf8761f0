//! Task routes: every route and status code, ownership, filters, ordering, titles and due dates.

use actix_web::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::db_test;
use crate::support::{Backend, TestApp};

async fn create_get_list_patch_complete_delete(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let created = app
        .create_task(&user, json!({"title": "  Buy milk  "}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["title"], "Buy milk");
    assert_eq!(created["completed"], false);
    assert!(created["due_date"].is_null());
    assert!(created.get("user_id").is_none());
    assert_eq!(created["created_at"], created["updated_at"]);
    let keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    let got = app
        .request(
            "GET",
            &format!("/api/v1/tasks/{id}"),
            None,
            Some(&user.token),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created);

    let patched = app
        .request(
            "PATCH",
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"title": "Buy oat milk"})),
            Some(&user.token),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["title"], "Buy oat milk");

    let done = app
        .request(
            "POST",
            &format!("/api/v1/tasks/{id}/complete"),
            None,
            Some(&user.token),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["completed"], true);
    let undone = app
        .request(
            "POST",
            &format!("/api/v1/tasks/{id}/uncomplete"),
            None,
            Some(&user.token),
        )
        .await;
    assert_eq!(undone.body["completed"], false);

    let deleted = app
        .request(
            "DELETE",
            &format!("/api/v1/tasks/{id}"),
            None,
            Some(&user.token),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        deleted.body,
        json!({"message": "Task deleted successfully"})
    );
    let gone = app
        .request(
            "GET",
            &format!("/api/v1/tasks/{id}"),
            None,
            Some(&user.token),
        )
        .await;
    gone.assert_error(404, "NOT_FOUND");
    assert_eq!(gone.body["error"]["message"], "Task not found");
}
db_test!(
    create_get_list_patch_complete_delete,
    super::create_get_list_patch_complete_delete
);

async fn list_is_newest_first_filtered_and_per_user(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.register().await;
    let bob = app.register().await;
    let first = app.create_task(&alice, json!({"title": "first"})).await;
    let second = app.create_task(&alice, json!({"title": "second"})).await;
    app.create_task(&bob, json!({"title": "bob's"})).await;
    let id = second["id"].as_str().unwrap();
    app.request(
        "POST",
        &format!("/api/v1/tasks/{id}/complete"),
        None,
        Some(&alice.token),
    )
    .await;

    let all = app
        .request("GET", "/api/v1/tasks", None, Some(&alice.token))
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body["count"], 2);
    let titles: Vec<&str> = all.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["second", "first"]);

    let done = app
        .request(
            "GET",
            "/api/v1/tasks?completed=true",
            None,
            Some(&alice.token),
        )
        .await;
    assert_eq!(done.body["count"], 1);
    assert_eq!(done.body["tasks"][0]["id"], second["id"]);
    let open = app
        .request(
            "GET",
            "/api/v1/tasks?completed=false",
            None,
            Some(&alice.token),
        )
        .await;
    assert_eq!(open.body["count"], 1);
    assert_eq!(open.body["tasks"][0]["id"], first["id"]);
    app.request(
        "GET",
        "/api/v1/tasks?completed=maybe",
        None,
        Some(&alice.token),
    )
    .await
    .assert_error(422, "VALIDATION_ERROR");
}
db_test!(
    list_is_newest_first_filtered_and_per_user,
    super::list_is_newest_first_filtered_and_per_user
);

async fn another_users_task_is_forbidden_and_publishes_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.register().await;
    let mallory = app.register().await;
    let task = app
        .create_task(
            &alice,
            json!({"title": "private", "due_date": "2030-01-01T00:00:00Z"}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    app.memory.clear();
    for (method, path, body) in [
        ("GET", format!("/api/v1/tasks/{id}"), None),
        (
            "PATCH",
            format!("/api/v1/tasks/{id}"),
            Some(json!({"title": "mine now"})),
        ),
        ("DELETE", format!("/api/v1/tasks/{id}"), None),
        ("POST", format!("/api/v1/tasks/{id}/complete"), None),
        ("POST", format!("/api/v1/tasks/{id}/uncomplete"), None),
    ] {
        let answer = app.request(method, &path, body, Some(&mallory.token)).await;
        answer.assert_error(403, "AUTHORIZATION_ERROR");
        assert_eq!(answer.body["error"]["message"], "Access denied");
    }
    assert!(app.memory.events().is_empty(), "{:?}", app.memory.events());
    let still = app
        .request(
            "GET",
            &format!("/api/v1/tasks/{id}"),
            None,
            Some(&alice.token),
        )
        .await;
    assert_eq!(still.body, task);
}
db_test!(
    another_users_task_is_forbidden_and_publishes_nothing,
    super::another_users_task_is_forbidden_and_publishes_nothing
);

async fn unknown_ids_are_404_and_malformed_ids_422(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let unknown = Uuid::new_v4();
    for (method, path) in [
        ("GET", format!("/api/v1/tasks/{unknown}")),
        ("PATCH", format!("/api/v1/tasks/{unknown}")),
        ("DELETE", format!("/api/v1/tasks/{unknown}")),
        ("POST", format!("/api/v1/tasks/{unknown}/complete")),
        ("POST", format!("/api/v1/tasks/{unknown}/uncomplete")),
    ] {
        let body = (method == "PATCH").then(|| json!({"title": "x"}));
        app.request(method, &path, body, Some(&user.token))
            .await
            .assert_error(404, "NOT_FOUND");
    }
    for bad in [
        "not-a-uuid",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        "%20",
    ] {
        let answer = app
            .request(
                "GET",
                &format!("/api/v1/tasks/{bad}"),
                None,
                Some(&user.token),
            )
            .await;
        answer.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(answer.body["error"]["details"][0]["field"], "task_id");
        app.request(
            "POST",
            &format!("/api/v1/tasks/{bad}/complete"),
            None,
            Some(&user.token),
        )
        .await
        .assert_error(422, "VALIDATION_ERROR");
    }
    assert!(
        app.memory
            .events()
            .iter()
            .all(|e| e.event_type() != "task.deleted")
    );
}
db_test!(
    unknown_ids_are_404_and_malformed_ids_422,
    super::unknown_ids_are_404_and_malformed_ids_422
);

async fn titles_are_trimmed_and_limited_to_500_characters(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let exactly = "é".repeat(500);
    let created = app
        .create_task(&user, json!({"title": format!("  {exactly}  ")}))
        .await;
    assert_eq!(created["title"].as_str().unwrap().chars().count(), 500);
    let unicode = app
        .create_task(&user, json!({"title": "买牛奶 🥛 — café"}))
        .await;
    assert_eq!(unicode["title"], "买牛奶 🥛 — café");
    for title in [
        json!(""),
        json!("   "),
        json!("\n\t"),
        json!("x".repeat(501)),
        json!("é".repeat(501)),
    ] {
        let answer = app
            .request(
                "POST",
                "/api/v1/tasks",
                Some(json!({"title": title})),
                Some(&user.token),
            )
            .await;
        answer.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(answer.body["error"]["details"][0]["field"], "title");
    }
    let id = created["id"].as_str().unwrap();
    app.request(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"title": "  "})),
        Some(&user.token),
    )
    .await
    .assert_error(422, "VALIDATION_ERROR");
    app.request(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"title": "y".repeat(501)})),
        Some(&user.token),
    )
    .await
    .assert_error(422, "VALIDATION_ERROR");
}
db_test!(
    titles_are_trimmed_and_limited_to_500_characters,
    super::titles_are_trimmed_and_limited_to_500_characters
);

async fn due_dates_are_set_changed_and_cleared(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let task = app
        .create_task(
            &user,
            json!({"title": "pay rent", "due_date": "2030-05-01T09:30:00+02:00"}),
        )
        .await;
    assert_eq!(task["due_date"], "2030-05-01T07:30:00.000000Z");
    let id = task["id"].as_str().unwrap();
    let moved = app
        .request(
            "PATCH",
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"due_date": "2030-06-01T00:00:00Z"})),
            Some(&user.token),
        )
        .await;
    assert_eq!(moved.body["due_date"], "2030-06-01T00:00:00.000000Z");
    let cleared = app
        .request(
            "PATCH",
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"due_date": null})),
            Some(&user.token),
        )
        .await;
    assert!(cleared.body["due_date"].is_null(), "{}", cleared.text);
    let bad = app
        .request(
            "PATCH",
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"due_date": "tomorrow"})),
            Some(&user.token),
        )
        .await;
    bad.assert_error(422, "VALIDATION_ERROR");
    assert_eq!(bad.body["error"]["details"][0]["field"], "due_date");
}
db_test!(
    due_dates_are_set_changed_and_cleared,
    super::due_dates_are_set_changed_and_cleared
);

#[actix_web::test]
async fn clear_completed_removes_only_completed_tasks_of_the_user() {
    let app = TestApp::new(Backend::Sqlite).await;
    let alice = app.register().await;
    let bob = app.register().await;
    let keep = app.create_task(&alice, json!({"title": "keep"})).await;
    let done = app
        .create_task(&alice, json!({"title": "done", "due_date": "2030-01-01"}))
        .await;
    let bobs = app.create_task(&bob, json!({"title": "bob done"})).await;
    for (user, task) in [(&alice, &done), (&bob, &bobs)] {
        let id = task["id"].as_str().unwrap();
        app.request(
            "POST",
            &format!("/api/v1/tasks/{id}/complete"),
            None,
            Some(&user.token),
        )
        .await;
    }
    app.memory.clear();
    let ctx = task_api::RequestContext::detached(&crate::support::logger());
    let removed = app
        .state
        .tasks
        .clear_completed(task_domain::UserId::from_uuid(alice.id), &ctx)
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].id().to_string(), done["id"].as_str().unwrap());
    let types: Vec<String> = app
        .memory
        .events()
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect();
    assert_eq!(types, ["task.deleted", "reminder.cancelled", "sync.task"]);
    let left = app
        .request("GET", "/api/v1/tasks", None, Some(&alice.token))
        .await;
    assert_eq!(left.body["tasks"][0]["id"], keep["id"]);
    assert_eq!(
        app.request("GET", "/api/v1/tasks", None, Some(&bob.token))
            .await
            .body["count"],
        1
    );
}
