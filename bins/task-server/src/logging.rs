//! The root slog logger: JSON (for Kubernetes) or pretty terminal output, a level filter, and an async drain whose
//! guard flushes the last records at shutdown.

use slog::{Drain, Level, Logger, o};

/// The output format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One JSON object per line on stdout.
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

/// Where log records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTarget {
    /// Standard output (`serve`, `migrate`).
    Stdout,
    /// Standard error (`mcp-stdio`, whose stdout carries the MCP protocol).
    Stderr,
}

/// Builds the root logger; keep the guard alive until the process ends so queued records are written.
pub(crate) fn build(
    format: LogFormat,
    level: Level,
    target: LogTarget,
) -> (Logger, slog_async::AsyncGuard) {
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = match format {
        LogFormat::Json => {
            let out: Box<dyn std::io::Write + Send> = match target {
                LogTarget::Stdout => Box::new(std::io::stdout()),
                LogTarget::Stderr => Box::new(std::io::stderr()),
            };
            Box::new(
                slog_json::Json::new(out)
                    .add_default_keys()
                    .set_flush(true)
                    .build()
                    .fuse(),
            )
        }
        LogFormat::Pretty => {
            let decorator = match target {
                LogTarget::Stdout => slog_term::TermDecorator::new().stdout().build(),
                LogTarget::Stderr => slog_term::TermDecorator::new().stderr().build(),
            };
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
    };
    let drain = slog::LevelFilter::new(drain, level).fuse();
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(16_384)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log".to_owned())
        .build_with_guard();
    let log = Logger::root(
        drain.fuse(),
        o!("service" => "task-api", "version" => env!("CARGO_PKG_VERSION")),
    );
    (log, guard)
}
