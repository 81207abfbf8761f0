//! Graceful shutdown spends one `SHUTDOWN_TIMEOUT_SECONDS` in total: the HTTP drain and the event drain share
//! it, and the events abandoned at the deadline are logged with their ids.

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::Server;

/// A "sidecar" that accepts connections and never answers, so publishes hang until their timeout.
fn hanging_sidecar() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

#[test]
fn shutdown_shares_one_deadline_between_http_and_events_and_logs_abandoned_ids() {
    let dir = support::temp_dir("shutdown");
    let sidecar = hanging_sidecar();
    let endpoint = format!("http://127.0.0.1:{sidecar}");
    let server = Server::start(
        &dir,
        &[
            ("DAPR_ENABLED", "true"),
            ("DAPR_HTTP_ENDPOINT", &endpoint),
            ("DAPR_PUBLISH_TIMEOUT", "60"),
            ("EVENT_DELIVERY", "fire-and-forget"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "2"),
        ],
    );
    let cookie = server.register("shutdown@example.com");
    for n in 0..3 {
        server.create_task(&cookie, &format!("never published {n}"));
    }
    // A request still in flight at the signal: its body never finishes, so the HTTP drain takes the whole
    // deadline.
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"email\":",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    server.terminate();
    let mut server = server;
    let status = server.child.wait().unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_millis(3500),
        "one 2 s deadline in total, not one for HTTP and one for events: took {took:?}"
    );
    let records = server.records();
    let drain = records
        .iter()
        .find(|r| r["msg"] == "http server stopped; draining events")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert!(
        drain["http_drain_ms"].as_u64().unwrap() >= 1500,
        "the slow request held the HTTP drain: {drain}"
    );
    let abandoned = records
        .iter()
        .find(|r| {
            r["msg"]
                .as_str()
                .is_some_and(|m| m.ends_with("events abandoned at the shutdown deadline"))
        })
        .unwrap_or_else(|| panic!("the abandoned events are logged: {records:#?}"));
    assert_eq!(abandoned["level"], "WARN", "{abandoned}");
    let count = abandoned["abandoned"].as_u64().unwrap();
    assert!(
        count >= 3,
        "every created task's event was queued: {abandoned}"
    );
    let ids: Vec<&str> = abandoned["event_ids"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(ids.len() as u64, count, "{abandoned}");
    assert!(
        ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{abandoned}"
    );
    drop(slow);
    let _ = std::fs::remove_dir_all(&dir);
}
