//! `load-bench`: measures what event publishing costs task-api's mutating requests. It starts the release
//! `task-api` once per configuration (publishing off; fire-and-forget and outbox against a sidecar stand-in that
//! answers 204 at once; the same two against one that never answers), drives them in interleaved short rounds from
//! its own HTTP/1.1 load generator, and writes a Markdown report with p50, p99, max, requests/s and ratios against
//! publishing off. See `docs/BENCHMARKS.md` and `scripts/bench-api`.

mod histogram;
mod load;
mod report;
mod server;
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use slog::{Drain, Logger, info, o, warn};

use crate::load::Outcome;
use crate::report::{Machine, ModeResult, Run};
use crate::server::Server;
use crate::sink::Sinks;

/// Command line of `load-bench`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Benchmark task-api's mutating requests with event publishing off and on"
)]
struct Cli {
    /// The `task-api` binary to run (build it with `cargo build --release -p task-server`).
    #[arg(long)]
    binary: PathBuf,
    /// Measured seconds per configuration, split evenly over the rounds.
    #[arg(long, default_value_t = 10.0)]
    seconds_per_config: f64,
    /// Rounds; every round runs each configuration once, in an order rotated by one each round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Unmeasured warm-up seconds per configuration before the first round.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Also run against PostgreSQL: the URL of a role that may create databases (TEST_DATABASE_URL).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Skip the SQLite run (only with --postgres-url).
    #[arg(long)]
    no_sqlite: bool,
    /// Folder for the SQLite files and the servers' logs.
    #[arg(long, default_value = ".stack/bench")]
    work_dir: PathBuf,
    /// Where to write the Markdown report (also printed on stdout).
    #[arg(long)]
    report: Option<PathBuf>,
    /// LOG_LEVEL of the task-api processes.
    #[arg(long, default_value = "warn")]
    server_log_level: String,
    /// More environment for every task-api process, as KEY=VALUE (repeatable), e.g. EVENT_BATCH_MAX=1.
    #[arg(long = "server-env", value_parser = parse_env_pair)]
    server_env: Vec<(String, String)>,
}

/// `KEY=VALUE` as a pair; the key must be a plain environment variable name.
fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{key:?} is not an environment variable name (A-Z, 0-9, _)"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Where a configuration's sidecar stand-in is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sidecar {
    /// Publishing off: no sidecar.
    None,
    /// Answers 204 at once.
    Ok,
    /// Accepts connections and never answers.
    Hanging,
}

/// One configuration of the server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mode {
    /// Short name, used in file names.
    pub(crate) key: &'static str,
    /// DAPR_ENABLED.
    pub(crate) publishing: bool,
    /// EVENT_DELIVERY.
    pub(crate) delivery: &'static str,
    /// The sidecar stand-in it publishes to.
    pub(crate) sidecar: Sidecar,
}

/// The five configurations, publishing off first (the baseline of every ratio).
pub(crate) const MODES: [Mode; 5] = [
    Mode {
        key: "off",
        publishing: false,
        delivery: "fire-and-forget",
        sidecar: Sidecar::None,
    },
    Mode {
        key: "ff-204",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Ok,
    },
    Mode {
        key: "outbox-204",
        publishing: true,
        delivery: "outbox",
        sidecar: Sidecar::Ok,
    },
    Mode {
        key: "ff-hang",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Hanging,
    },
    Mode {
        key: "outbox-hang",
        publishing: true,
        delivery: "outbox",
        sidecar: Sidecar::Hanging,
    },
];

/// The 1-minute load average, when readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A running configuration.
struct Running {
    mode: Mode,
    server: Server,
    sinks: Sinks,
    token: Arc<str>,
    warmup_ok: u64,
    measured: Outcome,
    rounds: Vec<f64>,
}

/// Runs the five configurations against one database backend and returns the measured results.
async fn run_backend(
    cli: &Cli,
    log: &Logger,
    backend: &str,
    loads: &mut Vec<f64>,
) -> anyhow::Result<Run> {
    let mut running = Vec::new();
    for (index, mode) in MODES.iter().enumerate() {
        let sinks = Sinks::start()?;
        let database_url = match backend {
            "postgresql" => {
                let base = cli.postgres_url.as_deref().context("no PostgreSQL url")?;
                let name = format!("pakaura_bench_{index}_{}", mode.key.replace('-', "_"));
                server::psql(
                    base,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await?;
                server::psql(base, &format!("CREATE DATABASE {name}")).await?;
                server::with_database(base, &name)?
            }
            _ => {
                let file =
                    std::path::absolute(cli.work_dir.join(format!("sqlite-{}.db", mode.key)))?;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
                format!("sqlite://{}", file.display())
            }
        };
        let sidecar = match mode.sidecar {
            Sidecar::Hanging => sinks.hanging_addr,
            Sidecar::Ok | Sidecar::None => sinks.ok_addr,
        };
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url),
            (
                "JWT_SECRET",
                "load-bench-secret-load-bench-secret".to_owned(),
            ),
            ("DAPR_ENABLED", mode.publishing.to_string()),
            ("DAPR_HTTP_ENDPOINT", format!("http://{sidecar}")),
            ("EVENT_DELIVERY", mode.delivery.to_owned()),
            ("RATE_LIMIT_TASKS_PER_MINUTE", "1000000000".to_owned()),
            ("RATE_LIMIT_AUTH_PER_MINUTE", "1000000000".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECONDS", "3".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("LOG_LEVEL", cli.server_log_level.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .chain(cli.server_env.iter().cloned())
        .collect();
        if backend == "postgresql" {
            let migrate_log = cli
                .work_dir
                .join(format!("{backend}-{}-migrate.log", mode.key));
            server::migrate(&cli.binary, &env, &migrate_log).await?;
        }
        let server_log = cli.work_dir.join(format!("{backend}-{}.log", mode.key));
        let server = Server::start(&cli.binary, &env, server_log).await?;
        let token: Arc<str> = server
            .register(&format!("bench-{}@example.com", mode.key))
            .await?
            .into();
        info!(log, "server ready"; "backend" => backend, "mode" => mode.key, "addr" => %server.addr);
        running.push(Running {
            mode: *mode,
            server,
            sinks,
            token,
            warmup_ok: 0,
            measured: Outcome::default(),
            rounds: Vec::new(),
        });
    }

    let warmup = Duration::from_secs_f64(cli.warmup_seconds);
    for entry in &mut running {
        let outcome = load::run(
            entry.server.addr,
            entry.token.clone(),
            cli.connections,
            warmup,
        )
        .await;
        entry.warmup_ok = outcome.ok;
    }
    let round = Duration::from_secs_f64(cli.seconds_per_config / f64::from(cli.rounds.max(1)));
    for number in 0..cli.rounds.max(1) {
        for offset in 0..running.len() {
            let index = (number as usize + offset) % running.len();
            let entry = &mut running[index];
            let outcome = load::run(
                entry.server.addr,
                entry.token.clone(),
                cli.connections,
                round,
            )
            .await;
            entry.rounds.push(outcome.throughput());
            entry.measured.merge(outcome);
        }
        loads.extend(load_average());
        info!(log, "round done"; "backend" => backend, "round" => number + 1, "load" => ?load_average());
    }

    // Let queued and outbox events reach the sink before counting them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut results = Vec::new();
    for entry in running {
        let metrics = entry.server.event_metrics().await;
        let (events_at_sink, hanging_connections) = match entry.mode.sidecar {
            Sidecar::Ok => (Some(entry.sinks.ok.events.load(Ordering::Relaxed)), None),
            Sidecar::Hanging => (
                None,
                Some(entry.sinks.hanging.requests.load(Ordering::Relaxed)),
            ),
            Sidecar::None => (None, None),
        };
        if let Some(error) = &entry.measured.first_error {
            warn!(log, "requests failed"; "mode" => entry.mode.key, "errors" => entry.measured.errors, "first" => error);
        }
        let cpu_seconds = entry.server.cpu_seconds();
        entry.server.stop(Duration::from_secs(10)).await;
        results.push(ModeResult {
            mode: entry.mode,
            outcome: entry.measured,
            rounds: entry.rounds,
            warmup_ok: entry.warmup_ok,
            events_at_sink,
            hanging_connections,
            metrics,
            cpu_seconds,
        });
    }
    if backend == "postgresql"
        && let Some(base) = cli.postgres_url.as_deref()
    {
        for (index, mode) in MODES.iter().enumerate() {
            let name = format!("pakaura_bench_{index}_{}", mode.key.replace('-', "_"));
            let _ = server::psql(
                base,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
    Ok(Run {
        backend: backend.to_owned(),
        modes: results,
    })
}

async fn run(cli: Cli, log: Logger) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("creating {}", cli.work_dir.display()))?;
    let mut machine = Machine::probe(std::env::args().collect::<Vec<_>>().join(" "));
    let mut loads = Vec::new();
    let mut runs = Vec::new();
    if !cli.no_sqlite {
        runs.push(run_backend(&cli, &log, "sqlite", &mut loads).await?);
    }
    if cli.postgres_url.is_some() {
        runs.push(run_backend(&cli, &log, "postgresql", &mut loads).await?);
    }
    machine.finish(load_average(), &loads);
    let text = report::render(&cli_summary(&cli), &machine, &runs);
    if let Some(path) = &cli.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        info!(log, "report written"; "path" => %path.display());
    }
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// The settings line of the report.
fn cli_summary(cli: &Cli) -> String {
    format!(
        "{} connections; {} s measured per configuration in {} interleaved rounds of {:.1} s (order rotated each \
         round) after {} s warm-up each; server LOG_LEVEL={}{}",
        cli.connections,
        cli.seconds_per_config,
        cli.rounds,
        cli.seconds_per_config / f64::from(cli.rounds.max(1)),
        cli.warmup_seconds,
        cli.server_log_level,
        cli.server_env
            .iter()
            .map(|(key, value)| format!(", {key}={value}"))
            .collect::<String>(),
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let log = Logger::root(
        slog_term::FullFormat::new(decorator).build().fuse(),
        o!("app" => "load-bench"),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            slog::error!(log, "cannot start the runtime"; "error" => %error);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, log.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            slog::error!(log, "benchmark failed"; "error" => format!("{error:#}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_env_pair;

    #[test]
    fn server_env_pairs_need_a_plain_name_and_an_equals_sign() {
        assert_eq!(
            parse_env_pair("EVENT_BATCH_MAX=1"),
            Ok(("EVENT_BATCH_MAX".to_owned(), "1".to_owned()))
        );
        assert_eq!(
            parse_env_pair("A=b=c"),
            Ok(("A".to_owned(), "b=c".to_owned()))
        );
        assert!(parse_env_pair("EVENT_BATCH_MAX").is_err());
        assert!(parse_env_pair("=1").is_err());
        assert!(parse_env_pair("lower=1").is_err());
    }
}
