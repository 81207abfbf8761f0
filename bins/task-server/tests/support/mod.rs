//! Running the real binary in tests: a server process with its JSON log lines, and one-shot HTTP requests.

#![allow(dead_code, reason = "each test crate uses part of it")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Sends one HTTP/1.1 request and returns (status, headers+body text).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// The `task-api` binary with a clean environment (`PATH` only), run in `dir`, with these variables.
pub(crate) fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_task-api"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A running server; killed and reaped on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// The log lines after the "listening" line, as they come.
    pub(crate) lines: mpsc::Receiver<String>,
    /// The log lines up to and including the "listening" line.
    pub(crate) startup: Vec<String>,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `task-api serve` on a free loopback port with JSON logs and `env`, once it logs that it listens.
    pub(crate) fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut all = vec![
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "debug"),
        ];
        all.extend_from_slice(env);
        let child = command(dir, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn task-api");
        let (tx, lines) = mpsc::channel();
        // Owned by the guard from here on, so a failed wait still kills and reaps the process.
        let mut server = Server {
            child,
            lines,
            startup: Vec::new(),
            port: 0,
        };
        let stdout = server.child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while server.port == 0 {
            let line = server
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("the server logs that it listens: {:#?}", server.startup)
                });
            let record: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            server.startup.push(line);
            if record["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on port"))
            {
                server.port = record["port"].as_u64().expect("port field") as u16;
            }
        }
        server
    }

    /// Registers a user and returns its session cookie.
    pub(crate) fn register(&self, email: &str) -> String {
        let body = format!(r#"{{"email":"{email}","password":"password123"}}"#);
        let (status, registered) =
            http(self.port, "POST", "/api/v1/auth/register", &[], Some(&body));
        assert_eq!(status, 201, "{registered}");
        registered
            .lines()
            .find_map(|line| {
                line.strip_prefix("set-cookie: ")
                    .or_else(|| line.strip_prefix("Set-Cookie: "))
            })
            .and_then(|value| value.split(';').next())
            .expect("a cookie")
            .to_owned()
    }

    /// Creates a task and returns its id.
    pub(crate) fn create_task(&self, cookie: &str, title: &str) -> String {
        let body = format!(r#"{{"title":"{title}"}}"#);
        let (status, created) = http(
            self.port,
            "POST",
            "/api/v1/tasks",
            &[("Cookie", cookie)],
            Some(&body),
        );
        assert_eq!(status, 201, "{created}");
        let json: serde_json::Value = created
            .split_once("\r\n\r\n")
            .and_then(|(_, body)| serde_json::from_str(body).ok())
            .unwrap_or_else(|| panic!("a JSON body: {created}"));
        json["id"].as_str().expect("an id").to_owned()
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// The log lines up to the end of the output (call after the process exited), parsed.
    pub(crate) fn records(&self) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            if let Ok(record) = serde_json::from_str(&line) {
                records.push(record);
            }
        }
        records
    }
}

/// A fresh temporary folder named after `what`.
pub(crate) fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "task-api-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
