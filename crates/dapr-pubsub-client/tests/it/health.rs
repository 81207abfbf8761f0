//! Readiness: `health` and `wait_until_ready` against `/v1.0/healthz/outbound`.

use std::time::{Duration, Instant};

use crate::support::{CapturedLogs, client, refused_port, sidecar};

#[tokio::test]
async fn wait_until_ready_polls_until_the_sidecar_answers_2xx() {
    let mut server = sidecar().await;
    let not_ready = server
        .mock("GET", "/v1.0/healthz/outbound")
        .with_status(500)
        .expect(2)
        .create_async()
        .await;
    let ready = server
        .mock("GET", "/v1.0/healthz/outbound")
        .with_status(204)
        .expect(1)
        .create_async()
        .await;
    let client = client(&server.url(), CapturedLogs::default().logger());

    client
        .wait_until_ready(Duration::from_secs(5))
        .await
        .unwrap();
    not_ready.assert_async().await;
    ready.assert_async().await;
}

#[tokio::test]
async fn health_reports_a_not_ready_sidecar_as_rejected() {
    let mut server = sidecar().await;
    let _mock = server
        .mock("GET", "/v1.0/healthz/outbound")
        .with_status(500)
        .with_body(r#"{"errorCode":"ERR_HEALTH_NOT_READY"}"#)
        .expect(1)
        .create_async()
        .await;
    let err = client(&server.url(), CapturedLogs::default().logger())
        .health()
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("ERR_HEALTH_NOT_READY"));
}

#[tokio::test]
async fn wait_until_ready_gives_up_at_the_deadline_with_the_last_error() {
    let url = format!("http://127.0.0.1:{}", refused_port());
    let started = Instant::now();
    let err = client(&url, CapturedLogs::default().logger())
        .wait_until_ready(Duration::from_millis(300))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}
