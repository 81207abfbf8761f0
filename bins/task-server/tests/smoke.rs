//! Smoke test of the real binary: start it with no configuration but a temporary database and port 0, use the
//! API over HTTP, stop it with SIGTERM, and check it shut down cleanly.

mod support;

use std::process::Command;

use support::{Server, http};

#[test]
fn the_binary_serves_with_no_configuration_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("task-api-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Server::start(&dir, &[]);
    let port = server.port;

    let (status, health) = http(port, "GET", "/api/v1/health", &[], None);
    assert_eq!(status, 200, "{health}");
    let body: serde_json::Value = health
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_else(|| panic!("a JSON body: {health}"));
    assert_eq!(body["status"], "healthy", "{health}");
    // The version the binary reports (`task-api --version`) is the one /api/v1/health reports.
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{health}");
    assert_eq!(http(port, "GET", "/readyz", &[], None).0, 200);

    let (status, registered) = http(
        port,
        "POST",
        "/api/v1/auth/register",
        &[],
        Some(r#"{"email":"smoke@example.com","password":"password123"}"#),
    );
    assert_eq!(status, 201, "{registered}");
    let cookie = registered
        .lines()
        .find_map(|line| {
            line.strip_prefix("set-cookie: ")
                .or_else(|| line.strip_prefix("Set-Cookie: "))
        })
        .and_then(|value| value.split(';').next())
        .expect("a cookie")
        .to_owned();
    let (status, created) = http(
        port,
        "POST",
        "/api/v1/tasks",
        &[("Cookie", &cookie)],
        Some(r#"{"title":"from the smoke test"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let (status, metrics) = http(port, "GET", "/metrics", &[], None);
    assert_eq!(status, 200);
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(
        dir.join("pakaura.db").exists(),
        "the embedded database is created in the working directory"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = server.lines.try_iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("task.created")),
        "the event is logged at DEBUG"
    );
    assert!(
        rest.iter().any(|line| line.contains("shutdown complete")),
        "{rest:#?}"
    );
    assert!(
        !rest.iter().any(|line| line.contains("password123")),
        "no passwords in logs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_fails_at_start_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .expect("run task-api");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("TRUSTED_PROXIES", "10.0.0.0/8, ingress")
        .output()
        .expect("run task-api");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TRUSTED_PROXIES") && stderr.contains("\"ingress\""),
        "{stderr}"
    );
}

#[test]
fn help_and_version_work() {
    let help = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("serve") && text.contains("migrate") && text.contains("--config"),
        "{text}"
    );
    let version = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("task-api {}", env!("CARGO_PKG_VERSION"))
    );
}
