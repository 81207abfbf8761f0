//! `load-bench`: measures what event publishing costs task-api's mutating requests. It starts the release
//! `task-api` once per configuration (publishing off; fire-and-forget and outbox against a sidecar stand-in that
//! answers 204 at once; the same two against one that never answers), drives them in interleaved short rounds from
//! its own HTTP/1.1 load generator, and writes a Markdown report with p50, p99, max, requests/s and ratios against
//! publishing off. See `docs/BENCHMARKS.md` and `scripts/bench-api`.

mod charts;
mod drain;
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

use crate::load::{Outcome, Shape};
use crate::report::{Machine, ModeResult, Run, ShapeResult};
use crate::server::Server;
use crate::sink::{OrderBy, Sinks};

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
    /// An earlier build of `task-api` to measure beside it: its fire-and-forget and outbox configurations run in
    /// the same interleaved rounds as `ff-204-before` and `outbox-204-before`, so a change's cost (for
    /// example what ordering costs) is read side by side in one run.
    #[arg(long)]
    baseline_binary: Option<PathBuf>,
    /// Measured seconds per configuration, split evenly over the rounds.
    #[arg(long, default_value_t = 10.0)]
    seconds_per_config: f64,
    /// Rounds; every round runs each configuration once, in an order rotated by one each round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Unmeasured warm-up seconds per configuration before the first round.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// Concurrent keep-alive connections of the one-user shape (no trace headers).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Users of the ingress shape: one connection each, a new `traceparent` on every request; 0 leaves the
    /// shape out.
    #[arg(long, default_value_t = 64)]
    ingress_users: usize,
    /// Also run against PostgreSQL: the URL of a role that may create databases (TEST_DATABASE_URL).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Also run against a PostgreSQL server that runs with `fsync=on`, `synchronous_commit=on` and
    /// `full_page_writes=on` (scripts/bench-api starts one): the URL of a role that may create databases.
    #[arg(long)]
    postgres_durable_url: Option<String>,
    /// Events in the relay drain backlog (per backend); 0 skips the drain.
    #[arg(long, default_value_t = 100_000)]
    drain_events: usize,
    /// Partition keys (users) the drain backlog is spread over.
    #[arg(long, default_value_t = 1_000)]
    drain_users: usize,
    /// How long the drain may take before it is reported as unfinished.
    #[arg(long, default_value_t = 300.0)]
    drain_timeout_seconds: f64,
    /// Prefix of the image links in the report (e.g. `bench/` when the SVGs are copied to docs/bench/).
    #[arg(long, default_value = "")]
    image_link_prefix: String,
    /// Only the relay drain (no load rounds): to iterate on the relay, or to drain with an earlier build passed
    /// as `--binary`.
    #[arg(long)]
    drain_only: bool,
    /// Skip the SQLite run (only with --postgres-url).
    #[arg(long)]
    no_sqlite: bool,
    /// Folder for the SQLite files and the servers' logs.
    #[arg(long, default_value = ".stack/bench")]
    work_dir: PathBuf,
    /// Where to write the Markdown report (also printed on stdout; default WORK_DIR/report.md); the SVG charts
    /// go next to it, named after it.
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
    /// Run with `--baseline-binary` instead of `--binary`.
    pub(crate) baseline: bool,
    /// More environment of this configuration (before `--server-env`, which may override it).
    pub(crate) env: &'static [(&'static str, &'static str)],
}

impl Mode {
    /// The binary this configuration runs.
    fn binary<'c>(&self, cli: &'c Cli) -> &'c std::path::Path {
        match (&cli.baseline_binary, self.baseline) {
            (Some(baseline), true) => baseline,
            _ => &cli.binary,
        }
    }
}

/// The configurations of `--baseline-binary`: its publishing modes against the answering sidecar.
pub(crate) const BASELINE_MODES: [Mode; 2] = [
    Mode {
        key: "ff-204-before",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Ok,
        baseline: true,
        env: &[],
    },
    Mode {
        key: "outbox-204-before",
        publishing: true,
        delivery: "outbox",
        sidecar: Sidecar::Ok,
        baseline: true,
        env: &[],
    },
];

/// The configurations, publishing off first (the baseline of every ratio).
pub(crate) const MODES: [Mode; 6] = [
    Mode {
        key: "off",
        publishing: false,
        delivery: "fire-and-forget",
        sidecar: Sidecar::None,
        baseline: false,
        env: &[],
    },
    Mode {
        key: "ff-204",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Ok,
        baseline: false,
        env: &[],
    },
    Mode {
        key: "outbox-204",
        publishing: true,
        delivery: "outbox",
        sidecar: Sidecar::Ok,
        baseline: false,
        env: &[],
    },
    Mode {
        key: "ff-hang",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Hanging,
        baseline: false,
        env: &[],
    },
    Mode {
        key: "outbox-hang",
        publishing: true,
        delivery: "outbox",
        sidecar: Sidecar::Hanging,
        baseline: false,
        env: &[],
    },
    // Fire-and-forget with the opt-in same-key bulk requests (EVENT_BATCH_SAME_KEY): a busy user's queued events
    // share a request.
    Mode {
        key: "ff-204-samekey",
        publishing: true,
        delivery: "fire-and-forget",
        sidecar: Sidecar::Ok,
        baseline: false,
        env: &[("EVENT_BATCH_SAME_KEY", "true")],
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

/// A database backend the benchmark runs against.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    /// Name in the report and in file names: `sqlite`, `postgresql`, `postgresql-durable`.
    pub(crate) name: &'static str,
    /// PostgreSQL: the URL of a role that may create databases; `None` for SQLite.
    pub(crate) admin_url: Option<String>,
}

impl Backend {
    /// The modes measured against this backend: the hanging sidecars only where issue 7's goals need them
    /// (not against the durable PostgreSQL, whose goals compare only off, fire-and-forget and outbox).
    fn modes(&self, cli: &Cli) -> Vec<Mode> {
        let baseline: &[Mode] = if cli.baseline_binary.is_some() {
            &BASELINE_MODES
        } else {
            &[]
        };
        MODES
            .iter()
            .filter(|mode| self.name != "postgresql-durable" || mode.sidecar != Sidecar::Hanging)
            .chain(baseline)
            .copied()
            .collect()
    }

    /// A fresh, migrated database named after `tag`, and the URL task-api gets for it.
    async fn fresh_database(
        &self,
        cli: &Cli,
        binary: &std::path::Path,
        tag: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<String> {
        let url = match &self.admin_url {
            Some(base) => {
                let name = self.database_name(tag);
                test_db::drop_database(base, &name).await?;
                test_db::create_database(base, &name).await?;
                test_db::database_url(base, &name)?
            }
            None => {
                let file = std::path::absolute(cli.work_dir.join(format!("sqlite-{tag}.db")))?;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
                format!("sqlite://{}", file.display())
            }
        };
        let mut env = env.to_vec();
        env.push(("DATABASE_URL".to_owned(), url.clone()));
        let log = cli
            .work_dir
            .join(format!("{}-{tag}-migrate.log", self.name));
        server::migrate(binary, &env, &log).await?;
        Ok(url)
    }

    fn database_name(&self, tag: &str) -> String {
        format!("pakaura_bench_{}", tag.replace('-', "_"))
    }

    /// Drops the database of `tag` again (PostgreSQL).
    async fn drop_database(&self, tag: &str) {
        if let Some(base) = &self.admin_url {
            let name = self.database_name(tag);
            let _ = test_db::drop_database(base, &name).await;
        }
    }
}

/// The environment of every task-api process of the benchmark (without DATABASE_URL).
fn server_env(cli: &Cli, mode: &Mode, sidecar: std::net::SocketAddr) -> Vec<(String, String)> {
    [
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
    .chain(
        mode.env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    )
    .chain(cli.server_env.iter().cloned())
    .collect()
}

/// The load shapes of a run: one user without trace headers on `--connections` connections, and
/// `--ingress-users` users, one connection each, with a fresh `traceparent` on every request.
pub(crate) fn shapes(cli: &Cli) -> Vec<Shape> {
    let mut shapes = vec![Shape {
        key: "1-user",
        users: 1,
        connections: cli.connections,
        traceparent: false,
    }];
    if cli.ingress_users > 0 {
        shapes.push(Shape {
            key: "ingress",
            users: cli.ingress_users,
            connections: cli.ingress_users,
            traceparent: true,
        });
    }
    shapes
}

/// A running configuration (one server; every shape runs against it).
struct Running {
    mode: Mode,
    tag: String,
    server: Server,
    sinks: Sinks,
    tokens: Vec<Arc<str>>,
    per_shape: Vec<ShapeTally>,
}

/// What one shape measured against one server.
#[derive(Default)]
struct ShapeTally {
    warmup_ok: u64,
    measured: Outcome,
    rounds: Vec<f64>,
    cpu_seconds: Option<f64>,
}

/// Registers `count` users on `server`, a few at a time (each registration hashes a password).
async fn register_users(
    server: &Server,
    mode: &str,
    count: usize,
) -> anyhow::Result<Vec<Arc<str>>> {
    let mut tokens = Vec::with_capacity(count);
    let emails: Vec<String> = (0..count)
        .map(|n| format!("bench-{mode}-{n}@example.com"))
        .collect();
    for chunk in emails.chunks(4) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|email| server.register(email))).await;
        for token in results {
            tokens.push(Arc::from(token?));
        }
    }
    Ok(tokens)
}

/// Runs `shape` against `entry` for `duration`, counting the server's CPU time over it.
async fn slice(
    entry: &mut Running,
    shape_index: usize,
    shape: Shape,
    duration: Duration,
) -> Outcome {
    entry.sinks.ok.observer.set_label(Some(shape_index));
    let tokens = &entry.tokens[..shape.users.min(entry.tokens.len())];
    let before = entry.server.cpu_seconds();
    let outcome = load::run(entry.server.addr, tokens, shape, duration).await;
    entry.sinks.ok.observer.set_label(None);
    if let (Some(before), Some(after)) = (before, entry.server.cpu_seconds()) {
        let tally = &mut entry.per_shape[shape_index];
        *tally.cpu_seconds.get_or_insert(0.0) += after - before;
    }
    outcome
}

/// Runs every mode and shape against one database backend and returns the measured results.
async fn run_backend(
    cli: &Cli,
    log: &Logger,
    backend: &Backend,
    loads: &mut Vec<f64>,
) -> anyhow::Result<Run> {
    let shapes = shapes(cli);
    let users = shapes.iter().map(|s| s.users).max().unwrap_or(1);
    let mut running = Vec::new();
    for mode in backend.modes(cli) {
        let sinks = Sinks::start(OrderBy::Subject)?;
        let sidecar = match mode.sidecar {
            Sidecar::Hanging => sinks.hanging_addr,
            Sidecar::Ok | Sidecar::None => sinks.ok_addr,
        };
        let tag = format!("{}-{}", backend.name, mode.key);
        let mut env = server_env(cli, &mode, sidecar);
        let url = backend
            .fresh_database(cli, mode.binary(cli), &tag, &env)
            .await?;
        env.push(("DATABASE_URL".to_owned(), url));
        let server_log = cli.work_dir.join(format!("{tag}.log"));
        let server = Server::start(mode.binary(cli), &env, server_log).await?;
        let tokens = register_users(&server, mode.key, users).await?;
        info!(log, "server ready"; "backend" => backend.name, "mode" => mode.key, "addr" => %server.addr);
        running.push(Running {
            mode,
            tag,
            server,
            sinks,
            tokens,
            per_shape: shapes.iter().map(|_| ShapeTally::default()).collect(),
        });
    }

    let warmup = Duration::from_secs_f64(cli.warmup_seconds);
    for entry in &mut running {
        for (index, shape) in shapes.iter().enumerate() {
            let tokens = &entry.tokens[..shape.users.min(entry.tokens.len())];
            let outcome = load::run(entry.server.addr, tokens, *shape, warmup).await;
            entry.per_shape[index].warmup_ok = outcome.ok;
        }
    }
    // Every round runs each (mode, shape) once, in an order rotated by one each round.
    let configs: Vec<(usize, usize)> = (0..running.len())
        .flat_map(|m| (0..shapes.len()).map(move |s| (m, s)))
        .collect();
    let round = Duration::from_secs_f64(cli.seconds_per_config / f64::from(cli.rounds.max(1)));
    for number in 0..cli.rounds.max(1) {
        for offset in 0..configs.len() {
            let (mode_index, shape_index) = configs[(number as usize + offset) % configs.len()];
            let entry = &mut running[mode_index];
            let outcome = slice(entry, shape_index, shapes[shape_index], round).await;
            let tally = &mut entry.per_shape[shape_index];
            tally.rounds.push(outcome.throughput());
            tally.measured.merge(outcome);
        }
        loads.extend(load_average());
        info!(log, "round done"; "backend" => backend.name, "round" => number + 1, "load" => ?load_average());
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
        let (sink_latencies, order, duplicates) = entry.sinks.ok.observer.with(|state| {
            (
                state.latencies.clone(),
                (
                    state.order.checked,
                    state.order.out_of_order,
                    state.order.unchecked,
                ),
                state.duplicates,
            )
        });
        entry.server.stop(Duration::from_secs(10)).await;
        backend.drop_database(&entry.tag).await;
        let mut shape_results = Vec::new();
        for (index, tally) in entry.per_shape.into_iter().enumerate() {
            if let Some(error) = &tally.measured.first_error {
                warn!(log, "requests failed"; "backend" => backend.name, "mode" => entry.mode.key,
                    "shape" => shapes[index].key, "errors" => tally.measured.errors, "first" => error);
            }
            shape_results.push(ShapeResult {
                shape: shapes[index],
                outcome: tally.measured,
                rounds: tally.rounds,
                warmup_ok: tally.warmup_ok,
                cpu_seconds: tally.cpu_seconds,
                sink_latency: (entry.mode.sidecar == Sidecar::Ok)
                    .then(|| sink_latencies[index].clone()),
            });
        }
        results.push(ModeResult {
            mode: entry.mode,
            shapes: shape_results,
            events_at_sink,
            hanging_connections,
            order,
            duplicates,
            metrics,
        });
    }
    Ok(Run {
        backend: backend.name.to_owned(),
        modes: results,
    })
}

async fn run(cli: Cli, log: Logger) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("creating {}", cli.work_dir.display()))?;
    let mut machine = Machine::probe(std::env::args().collect::<Vec<_>>().join(" "));
    let mut backends = Vec::new();
    if !cli.no_sqlite {
        backends.push(Backend {
            name: "sqlite",
            admin_url: None,
        });
    }
    if let Some(url) = &cli.postgres_url {
        backends.push(Backend {
            name: "postgresql",
            admin_url: Some(url.clone()),
        });
    }
    if let Some(url) = &cli.postgres_durable_url {
        backends.push(Backend {
            name: "postgresql-durable",
            admin_url: Some(url.clone()),
        });
    }
    let mut loads = Vec::new();
    let mut runs = Vec::new();
    let mut drains = Vec::new();
    for backend in &backends {
        if !cli.drain_only {
            runs.push(run_backend(&cli, &log, backend, &mut loads).await?);
        }
        if cli.drain_events > 0 {
            drains.push(drain::run(&cli, &log, backend).await?);
        }
    }
    machine.finish(load_average(), &loads);
    let report_path = cli
        .report
        .clone()
        .unwrap_or_else(|| cli.work_dir.join("report.md"));
    let images = charts::write_all(&report_path, &runs)?;
    let text = report::render(
        &cli_summary(&cli),
        &machine,
        &runs,
        &drains,
        &images,
        &cli.image_link_prefix,
    );
    std::fs::write(&report_path, &text)
        .with_context(|| format!("writing {}", report_path.display()))?;
    info!(log, "report written"; "path" => %report_path.display(), "images" => images.len());
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// The settings line of the report.
fn cli_summary(cli: &Cli) -> String {
    format!(
        "shapes: 1 user on {} connections without trace headers{}; {} s measured per configuration (mode × shape) \
         in {} interleaved rounds of {:.1} s (order rotated each round) after {} s warm-up each; server \
         LOG_LEVEL={}{}",
        cli.connections,
        if cli.ingress_users > 0 {
            format!(
                ", and {} users on one connection each with a new `traceparent` per request",
                cli.ingress_users
            )
        } else {
            String::new()
        },
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
    use clap::Parser;

    use super::{Cli, MODES, parse_env_pair, server_env};

    #[test]
    fn the_same_key_mode_opts_in_and_server_env_still_overrides_it() {
        let sidecar = "127.0.0.1:9".parse().unwrap();
        let value = |env: &[(String, String)], key: &str| {
            env.iter()
                .rev()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.clone())
        };
        let mode = |key: &str| *MODES.iter().find(|mode| mode.key == key).unwrap();
        let cli = Cli::try_parse_from(["load-bench", "--binary", "task-api"]).unwrap();
        let same_key = server_env(&cli, &mode("ff-204-samekey"), sidecar);
        assert_eq!(
            value(&same_key, "EVENT_BATCH_SAME_KEY").as_deref(),
            Some("true")
        );
        assert_eq!(
            value(&same_key, "EVENT_DELIVERY").as_deref(),
            Some("fire-and-forget")
        );
        let plain = server_env(&cli, &mode("ff-204"), sidecar);
        assert_eq!(value(&plain, "EVENT_BATCH_SAME_KEY"), None);
        let cli = Cli::try_parse_from([
            "load-bench",
            "--binary",
            "task-api",
            "--server-env",
            "EVENT_BATCH_SAME_KEY=false",
        ])
        .unwrap();
        let overridden = server_env(&cli, &mode("ff-204-samekey"), sidecar);
        assert_eq!(
            value(&overridden, "EVENT_BATCH_SAME_KEY").as_deref(),
            Some("false")
        );
    }

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
