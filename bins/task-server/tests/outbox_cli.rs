//! `task-api outbox status|list|replay` against a SQLite file seeded through the store: pending rows, a
//! retrying key, moved-aside rows; text by default, JSON with `--json`.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use slog::{Logger, o};
use task_store::{DbConfig, NewOutboxMessage, Store};
use time::OffsetDateTime;
use uuid::Uuid;

fn message(partition_key: &str, topic: &str) -> NewOutboxMessage {
    NewOutboxMessage {
        id: Uuid::new_v4(),
        topic: topic.to_owned(),
        partition_key: partition_key.to_owned(),
        payload: "{}".to_owned(),
        traceparent: None,
    }
}

/// Seeds `url`: user-a's two rows moved aside (a 400 about the event), user-b's row waiting for a retry after
/// a 500, user-c's row fresh. Returns the moved-aside ids, oldest first.
fn seed(url: &str) -> Vec<Uuid> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = Logger::root(slog::Discard, o!());
        let config = DbConfig {
            url: url.to_owned(),
            ..DbConfig::default()
        };
        let store = Store::open(&config, &log).await.unwrap();
        let rows = [
            message("user-a", "task-events"),
            message("user-b", "task-events"),
            message("user-a", "task-updates"),
            message("user-c", "task-events"),
        ];
        store.enqueue_outbox(&rows).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let lease = Duration::from_secs(30);
        let claim = store.claim_outbox(2, lease, now).await.unwrap();
        let rejected = "the dapr sidecar rejected the request with status 400 Bad Request";
        store
            .record_outbox_failure(claim.lease, rows[0].id, rejected, now, 1, now)
            .await
            .unwrap();
        let retry_at = now + Duration::from_secs(3600);
        store
            .record_outbox_failure(claim.lease, rows[1].id, "status 500", retry_at, 20, now)
            .await
            .unwrap();
        let claim = store.claim_outbox(1, lease, now).await.unwrap();
        assert_eq!(claim.messages[0].id, rows[2].id);
        store
            .record_outbox_failure(claim.lease, rows[2].id, rejected, now, 1, now)
            .await
            .unwrap();
        store.close();
        vec![rows[0].id, rows[2].id]
    })
}

/// Runs `task-api outbox <args>` on `url` and returns its stdout (asserting it succeeded).
fn outbox(dir: &Path, url: &str, args: &[&str]) -> String {
    let output = support::command(dir, &[("DATABASE_URL", url), ("LOG_FORMAT", "json")])
        .arg("outbox")
        .args(args)
        .output()
        .expect("run task-api outbox");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("JSON on stdout ({err}): {text}"))
}

#[test]
fn status_list_and_replay_show_and_requeue_the_outbox() {
    let dir = support::temp_dir("outbox-cli");
    let url = format!("sqlite://{}", dir.join("outbox.db").display());
    let moved = seed(&url);

    let status = json(&outbox(&dir, &url, &["status", "--json"]));
    assert_eq!(status["backlog"], 2, "{status}");
    assert_eq!(
        status["blocked_keys"], 1,
        "user-b waits for its retry: {status}"
    );
    assert_eq!(status["moved_aside"], 2, "{status}");
    let age = status["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&age), "{status}");
    assert!(status["oldest_pending_at"].is_string(), "{status}");

    let text = outbox(&dir, &url, &["status"]);
    assert!(
        text.contains("backlog:        2 event(s) waiting"),
        "{text}"
    );
    assert!(text.contains("blocked keys:   1"), "{text}");
    assert!(text.contains("moved aside:    2"), "{text}");

    let aside = json(&outbox(&dir, &url, &["list", "--moved-aside", "--json"]));
    let aside = aside.as_array().unwrap();
    let ids: Vec<&str> = aside
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [moved[0].to_string(), moved[1].to_string()]);
    assert_eq!(aside[0]["partition_key"], "user-a");
    assert_eq!(aside[0]["topic"], "task-events");
    assert_eq!(aside[0]["attempts"], 1);
    assert!(aside[0]["last_error"].as_str().unwrap().contains("400"));
    assert!(aside[0]["moved_aside_at"].is_string());
    assert!(aside[0]["age_seconds"].as_f64().is_some());

    let pending = json(&outbox(&dir, &url, &["list", "--json", "--limit", "1"]));
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["partition_key"], "user-b");
    assert!(pending[0]["last_error"].as_str().unwrap().contains("500"));

    let table = outbox(&dir, &url, &["list", "--moved-aside"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["id", "topic", "key", "attempts", "age", "last error"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains(&moved[0].to_string()) && table.contains("user-a"),
        "{table}"
    );
    assert_eq!(lines.count(), 2, "{table}");

    let one = outbox(&dir, &url, &["replay", "--id", &moved[1].to_string()]);
    assert!(one.contains("re-queued 1 moved-aside event(s)"), "{one}");
    let status = json(&outbox(&dir, &url, &["status", "--json"]));
    assert_eq!(status["moved_aside"], 1, "{status}");
    assert_eq!(status["backlog"], 3, "{status}");
    let all = json(&outbox(&dir, &url, &["replay", "--all", "--json"]));
    assert_eq!(all["replayed"], 1, "{all}");
    let pending = json(&outbox(&dir, &url, &["list", "--json"]));
    assert_eq!(pending.as_array().unwrap().len(), 4, "{pending}");
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["attempts"] == 0 || row["partition_key"] == "user-b"),
        "replayed rows start their attempts over: {pending}"
    );
    assert_eq!(
        outbox(&dir, &url, &["list", "--moved-aside"]).trim(),
        "no moved-aside events"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_needs_all_or_an_id() {
    let dir = support::temp_dir("outbox-cli-replay");
    let url = format!("sqlite://{}", dir.join("outbox.db").display());
    let output = support::command(&dir, &[("DATABASE_URL", &url)])
        .args(["outbox", "replay"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a bare replay re-queues nothing");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--all") && stderr.contains("--id"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
