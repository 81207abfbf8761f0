//! Starting and stopping one `task-api serve` process per configuration, on a free loopback port, and preparing a
//! private PostgreSQL database for it when the benchmark runs against PostgreSQL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use tokio::process::{Child, Command};

use crate::load::request_once;

/// A running `task-api serve`.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its combined stdout and stderr.
    pub(crate) log: PathBuf,
}

/// CPU time (user + system, all threads) that process `pid` used so far, from `/proc/<pid>/stat`; `None` where
/// there is no such file (not Linux, or the process is gone).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

/// `utime + stime` of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the command name, which is in
/// parentheses and may itself contain spaces or parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 where that fails, the value on every common
/// Linux build).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// A loopback port free at the time of asking.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `task-api migrate` with `env` (PostgreSQL is not migrated at start).
pub(crate) async fn migrate(
    binary: &Path,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<()> {
    let output =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(binary)
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(output.try_clone()?)
        .stderr(output)
        .status()
        .await?;
    if !status.success() {
        bail!("task-api migrate failed ({status}); see {}", log.display());
    }
    Ok(())
}

impl Server {
    /// The CPU time the server used so far (see [`cpu_seconds`]).
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        self.child.id().and_then(cpu_seconds)
    }

    /// Starts `binary serve` with `env` plus HOST/PORT, and waits until `/healthz` answers 200.
    pub(crate) async fn start(
        binary: &Path,
        env: &[(String, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "task-api exited at start ({status}); see {}",
                    server.log.display()
                );
            }
            if let Ok((StatusCode::OK, _, _)) =
                request_once(server.addr, Method::GET, "/healthz", None, None).await
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "task-api not ready after 60 s; see {}",
                    server.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers a fresh user and returns its token (the `auth_token` cookie).
    pub(crate) async fn register(&self, email: &str) -> anyhow::Result<String> {
        let body = format!(r#"{{"email":"{email}","password":"bench-password-1"}}"#);
        let (status, headers, response) = request_once(
            self.addr,
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(body),
        )
        .await?;
        if status != StatusCode::CREATED {
            bail!(
                "register answered {status}: {}",
                String::from_utf8_lossy(&response)
            );
        }
        headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| cookie.strip_prefix("auth_token="))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
            .context("register set no auth_token cookie")
    }

    /// The event-related lines of `/metrics` (counters of published, failed, dropped and pending events).
    pub(crate) async fn event_metrics(&self) -> Vec<String> {
        match request_once(self.addr, Method::GET, "/metrics", None, None).await {
            Ok((StatusCode::OK, _, body)) => String::from_utf8_lossy(&body)
                .lines()
                .filter(|line| {
                    !line.starts_with('#') && (line.contains("event") || line.contains("outbox"))
                })
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then kills.
    pub(crate) async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_odd_command_names() {
        let line =
            "4242 (task (api) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_ticks(line), Some(325));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_cpu_time_is_read() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        let used = cpu_seconds(std::process::id()).expect("/proc is there on Linux");
        assert!(used > 0.0, "{used}");
    }
}
