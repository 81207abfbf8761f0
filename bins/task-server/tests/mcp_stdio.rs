//! `task-api mcp-stdio` through a child process of the real binary: a user registered with `serve` on a
//! temporary SQLite database, then newline-delimited JSON-RPC on stdin/stdout (initialize, tools/list,
//! tools/call), with only protocol messages on stdout and the logs, including the built events, on stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "mcp-stdio-test-secret-0123456789abcdef";

/// A fresh folder with the SQLite database of one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "task-api-{name}-{}-{}",
        std::process::id(),
        nanos()
    ));
    std::fs::create_dir_all(&dir).expect("create the temporary folder");
    dir
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The binary with a clean environment on the database in `dir`.
fn binary(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_task-api"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("pakaura.db").display()),
        )
        .env("JWT_SECRET", SECRET)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug");
    command
}

/// Lines of a child's output, read on a thread.
fn lines(reader: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Registers a user through `task-api serve` on the database in `dir` and returns its id.
fn register_user(dir: &Path) -> String {
    let mut server = binary(dir)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn task-api serve");
    let logs = lines(server.stdout.take().unwrap());
    let port = loop {
        let line = logs
            .recv_timeout(Duration::from_secs(120))
            .expect("the server logs that it listens");
        let record: Value = serde_json::from_str(&line).unwrap_or_default();
        if record["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on port"))
        {
            break record["port"].as_u64().expect("port field") as u16;
        }
    };
    let body = json!({"email": "agent-owner@example.com", "password": "password123"}).to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "POST /api/v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let (_, json_body) = answer.split_once("\r\n\r\n").expect("a body");
    let user: Value = serde_json::from_str(json_body).expect("the user JSON");
    user["id"].as_str().expect("the user id").to_owned()
}

/// A running `mcp-stdio` child and its pipes.
struct McpChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    protocol_lines: Vec<String>,
}

impl Drop for McpChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl McpChild {
    fn start(dir: &Path, user_id: &str) -> Self {
        let mut child = binary(dir)
            .args(["mcp-stdio", "--user-id", user_id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn task-api mcp-stdio");
        let stdin = child.stdin.take();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            stderr,
            protocol_lines: Vec::new(),
        }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").expect("write to the child's stdin");
        stdin.flush().unwrap();
    }

    /// Sends a request and returns the response with the same id.
    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "no answer to {method}; stderr: {}",
                        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
                    )
                });
            self.protocol_lines.push(line.clone());
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("stdout line is not JSON: {line}"));
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        let response = self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        );
        response["result"].clone()
    }

    /// Closes stdin and waits for the exit.
    fn finish(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-stdio did not exit after stdin closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn mcp_stdio_serves_the_tools_for_the_given_user_and_keeps_stdout_for_the_protocol() {
    let dir = temp_dir("mcp-stdio");
    let user_id = register_user(&dir);
    let mut mcp = McpChild::start(&dir, &user_id);

    let init = mcp.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "stdio-test", "version": "0"}}),
    );
    assert_eq!(
        init["result"]["serverInfo"]["name"], "pakaura-tasks",
        "{init}"
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    mcp.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let tools = mcp.request(2, "tools/list", json!({}));
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "add_task",
            "clear_completed",
            "complete_task",
            "delete_task",
            "list_tasks",
            "uncomplete_task",
            "update_task"
        ]
    );

    let added = mcp.call(
        3,
        "add_task",
        json!({"title": " From the terminal ", "due_date": "2030-06-01"}),
    );
    assert_eq!(added["isError"], false, "{added}");
    let task = added["structuredContent"].clone();
    assert_eq!(task["title"], "From the terminal");
    assert_eq!(task["due_date"], "2030-06-01T00:00:00.000000Z");
    let text: Value =
        serde_json::from_str(added["content"][0]["text"].as_str().expect("a text item")).unwrap();
    assert_eq!(text, task);
    let task_id = task["id"].as_str().unwrap().to_owned();

    let completed = mcp.call(4, "complete_task", json!({"task_id": task_id}));
    assert_eq!(
        completed["structuredContent"]["completed"], true,
        "{completed}"
    );
    let bad = mcp.call(5, "delete_task", json!({"task_id": "nope"}));
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Invalid task id"),
        "{bad}"
    );
    let cleared = mcp.call(6, "clear_completed", json!({}));
    assert_eq!(
        cleared["structuredContent"]["deleted_count"], 1,
        "{cleared}"
    );
    let listed = mcp.call(7, "list_tasks", json!({"filter": "all"}));
    assert_eq!(listed["structuredContent"]["count"], 0, "{listed}");

    let status = mcp.finish();
    assert!(status.success(), "mcp-stdio exited with {status}");
    mcp.protocol_lines.extend(mcp.stdout.try_iter());
    for line in &mcp.protocol_lines {
        let message: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("non-protocol stdout: {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }

    // The logs (stderr) show the events built for the user, one correlation id per tool call.
    let logs: Vec<Value> = mcp
        .stderr
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let events: Vec<(String, String, Value)> = logs
        .iter()
        .filter(|r| {
            r["msg"]
                .as_str()
                .is_some_and(|m| m.ends_with("built (publishing disabled)"))
        })
        .map(|r| {
            let event: Value = serde_json::from_str(r["event"].as_str().expect("event JSON"))
                .expect("event parses");
            (
                r["event_type"].as_str().unwrap().to_owned(),
                r["correlation_id"].as_str().unwrap().to_owned(),
                event,
            )
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "task.created",
            "reminder.scheduled",
            "sync.task",
            "task.completed",
            "sync.task",
            "task.deleted",
            "reminder.cancelled",
            "sync.task"
        ],
        "{logs:?}"
    );
    for (_, correlation, event) in &events {
        assert_eq!(event["partitionkey"], user_id.as_str());
        assert_eq!(event["data"]["user_id"], user_id.as_str());
        assert_eq!(event["subject"], task_id.as_str());
        assert_eq!(event["correlationid"], correlation.as_str());
    }
    let calls: Vec<&str> = events.iter().map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(calls[0], calls[2]);
    assert_ne!(
        calls[2], calls[3],
        "each tool call has its own correlation id"
    );
    assert_ne!(calls[4], calls[5]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mcp_stdio_refuses_an_unknown_user() {
    let dir = temp_dir("mcp-stdio-unknown");
    let output = binary(&dir)
        .args([
            "mcp-stdio",
            "--user-id",
            "6f1d8a36-5a43-4f55-9a8e-0c8f7e2b1d11",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run task-api mcp-stdio");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no user with id 6f1d8a36-5a43-4f55-9a8e-0c8f7e2b1d11"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "stdout is for the protocol only: {}",
        String::from_utf8_lossy(&output.stdout)
    );

    let output = binary(&dir)
        .args(["mcp-stdio", "--user-id", "me"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a UUID"));
    let _ = std::fs::remove_dir_all(&dir);
}
