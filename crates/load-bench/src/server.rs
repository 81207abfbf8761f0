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

/// `url` with its database name replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").context("database url has no scheme")? + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    Ok(result)
}

/// Runs one SQL statement with `psql` against `url`.
pub(crate) async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .await
        .context("running psql (needed for the PostgreSQL benchmark)")?;
    if !output.status.success() {
        bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:54320/postgres", "bench_1").unwrap(),
            "postgres://postgres@127.0.0.1:54320/bench_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
    }
}
