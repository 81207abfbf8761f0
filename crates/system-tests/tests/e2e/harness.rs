//! The processes and resources the end-to-end tests start: a fresh PostgreSQL database, the `task-api` binary and
//! private `daprd` sidecars, each killed (and its database dropped) when its guard is dropped, even on panic.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use system_tests::{RawPublisher, stack_endpoint};

/// Every endpoint and binary an end-to-end test needs; `None` when one is missing outside CI (the test then says
/// `skipped: …` and passes).
pub(crate) struct Env {
    pub(crate) database_url: String,
    pub(crate) kafka: String,
    pub(crate) dapr: String,
    pub(crate) task_api: PathBuf,
    pub(crate) daprd: PathBuf,
}

impl Env {
    /// Reads the stack's endpoints and locates the binaries.
    pub(crate) fn get() -> Option<Self> {
        let database_url = stack_endpoint("TEST_DATABASE_URL")?;
        let kafka = stack_endpoint("PAKAURA_KAFKA_BOOTSTRAP")?;
        let dapr = stack_endpoint("PAKAURA_DAPR_HTTP_ENDPOINT")?;
        let task_api = required_binary("task-api", task_api_binary())?;
        let daprd = required_binary("daprd", daprd_binary())?;
        Some(Self {
            database_url,
            kafka,
            dapr,
            task_api,
            daprd,
        })
    }
}

/// The skip/CI rule for a binary that could not be found.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why on the test output"
)]
fn required_binary(name: &str, found: Result<PathBuf, String>) -> Option<PathBuf> {
    match found {
        Ok(path) => Some(path),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("no {name} binary, and CI is set: {why}")
        }
        Err(why) => {
            eprintln!("skipped: no {name} binary: {why}");
            None
        }
    }
}

/// `$PAKAURA_TASK_API_BIN`, else `task-api` in the target folder of this test executable
/// (`target/<profile>/deps/e2e-…` → `target/<profile>/task-api`), which `cargo test --workspace` builds.
fn task_api_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PAKAURA_TASK_API_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "PAKAURA_TASK_API_BIN={} is not a file",
                path.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("task-api"))
        .ok_or("the test executable has no grandparent folder")?;
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} does not exist: build it (`cargo build -p task-server`) or set PAKAURA_TASK_API_BIN",
            candidate.display()
        ))
    }
}

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `scripts/daprd <args>`: the one way the repository finds and starts `daprd` (the stack and
/// `examples/run-with-daprd` use it too).
fn daprd_script() -> Command {
    Command::new(repo_root().join("scripts/daprd"))
}

/// The daprd binary `scripts/daprd path` names: `$PAKAURA_DAPRD_BIN`, else the binary of the stack's running daprd,
/// else the newest one the stack built into its cache, else `daprd` on `PATH` or `~/.dapr/bin/daprd`.
fn daprd_binary() -> Result<PathBuf, String> {
    let output = daprd_script()
        .arg("path")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running scripts/daprd path: {e}"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !path.is_empty() {
        Ok(PathBuf::from(path))
    } else {
        Err(format!(
            "scripts/daprd path failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding an ephemeral port")
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Killed(Option<Child>);

impl Killed {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds `psql` (on PATH, else in the newest `/usr/lib/postgresql/<v>/bin`, where the stack's PostgreSQL is).
fn psql() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("psql"))
            .find(|p| p.is_file())
    }) {
        return path;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from("psql"))
}

/// Runs one SQL command with `psql` against `url`, returning its unaligned, tuples-only output.
pub(crate) fn sql(url: &str, command: &str) -> anyhow::Result<String> {
    let output = Command::new(psql())
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            command,
        ])
        .output()
        .context("running psql")?;
    ensure!(
        output.status.success(),
        "psql {command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A fresh, empty PostgreSQL database on the server of `TEST_DATABASE_URL` (made by `test-db`, as every other
/// crate's test databases), dropped on drop; `task-api migrate` gives it its schema.
pub(crate) use test_db::TestDatabase as Database;

/// Runs `task-api migrate` on `database_url`.
pub(crate) fn migrate(bin: &Path, database_url: &str) -> anyhow::Result<()> {
    let output = Command::new(bin)
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("LOG_FORMAT", "json")
        .output()
        .context("running task-api migrate")?;
    ensure!(
        output.status.success(),
        "task-api migrate failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A running `task-api serve`, killed with SIGKILL on drop; its log lines are kept for diagnostics.
pub(crate) struct TaskApi {
    child: Killed,
    pub(crate) port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl TaskApi {
    /// Starts `task-api serve` on 127.0.0.1 and a port it picks, with a clean environment plus `env`, and waits for
    /// its "listening on port" log line (60 s at most).
    pub(crate) fn start(bin: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().context("starting task-api")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let child = Killed(Some(child));
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(record) = serde_json::from_str::<serde_json::Value>(&line)
                        && record["msg"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("listening on port"))
                        && let Some(port) = record["port"].as_u64()
                    {
                        let _ = port_tx.send(u16::try_from(port).unwrap_or_default());
                    }
                    lines.lock().expect("log lock").push(line);
                }
            });
        }
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().expect("log lock").push(line);
                }
            });
        }
        let mut server = Self {
            child,
            port: 0,
            lines,
        };
        match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) if port != 0 => server.port = port,
            _ => bail!(
                "task-api did not report its port within 60 s; its output:\n{}",
                server.log_tail(40)
            ),
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last `n` lines of its output.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let lines = self.lines.lock().expect("log lock");
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `kill -9`.
    pub(crate) fn kill(&mut self) {
        self.child.kill();
    }
}

/// A private `daprd` (app id `pakaura-api`, the stack's resources) on ports of its own; killed on drop.
pub(crate) struct Daprd {
    bin: PathBuf,
    http_port: u16,
    grpc_port: u16,
    metrics_port: u16,
    log: PathBuf,
    child: Killed,
}

impl Daprd {
    /// Starts one and waits until it is healthy.
    pub(crate) async fn start(bin: &Path) -> anyhow::Result<Self> {
        let http_port = free_port();
        let mut daprd = Self {
            bin: bin.to_owned(),
            http_port,
            grpc_port: free_port(),
            metrics_port: free_port(),
            log: std::env::temp_dir().join(format!("pakaura-e2e-daprd-{http_port}.log")),
            child: Killed(None),
        };
        daprd.restart().await?;
        Ok(daprd)
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) {
        self.child.kill();
    }

    /// (Re)starts it on the same ports and waits until it is healthy (60 s at most).
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.child.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        // `scripts/daprd exec` adds the stack's resources (for the stack's Kafka port) and loopback listeners, then
        // execs this binary in its place, so that the child is daprd itself.
        let child = daprd_script()
            .env("PAKAURA_DAPRD_BIN", &self.bin)
            .args(["exec", "--app-id", "pakaura-api"])
            .args(["--dapr-http-port", &self.http_port.to_string()])
            .args(["--dapr-grpc-port", &self.grpc_port.to_string()])
            .args(["--metrics-port", &self.metrics_port.to_string()])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting scripts/daprd exec ({})", self.bin.display()))?;
        self.child = Killed(Some(child));
        RawPublisher::new(&self.endpoint())
            .wait_until_ready(Duration::from_secs(60))
            .await
            .with_context(|| format!("daprd log: {}", self.log.display()))
    }
}

/// Runs `scripts/stack <args>` (to stop and start the shared stack's Kafka).
pub(crate) fn stack(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(repo_root().join("scripts/stack"))
        .args(args)
        .status()
        .context("running scripts/stack")?;
    ensure!(status.success(), "scripts/stack {args:?} failed: {status}");
    Ok(())
}

/// Brings the stack's Kafka back (`scripts/stack up kafka`) when dropped, so a failing fault test leaves the stack
/// as it found it.
pub(crate) struct KafkaBackUp;

impl Drop for KafkaBackUp {
    fn drop(&mut self) {
        // A drop cannot fail; if this does, the next test that needs Kafka reports it.
        let _ = stack(&["up", "kafka"]);
    }
}

/// Polls `check` every 250 ms until it returns `Some` or `within` has passed.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
