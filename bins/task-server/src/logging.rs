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
    filtered_async(drain, level)
}

/// The root logger over `drain`: an async drain (a thread of its own writes the records), behind a level filter.
fn filtered_async<D>(drain: D, level: Level) -> (Logger, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(16_384)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log".to_owned())
        .build_with_guard();
    // The level filter goes in front of the async drain, not behind it: a record below the level is then dropped
    // where it is made, instead of having its fields serialised, sent through the channel and the log thread woken
    // only to throw it away (with `LOG_LEVEL=warn` that was every request's access line and a debug line per
    // event; issue 17's profile showed the wake-ups as the largest cost of a request).
    let drain = slog::LevelFilter::new(drain.fuse(), level).fuse();
    let log = Logger::root(
        drain,
        o!("service" => "task-api", "version" => env!("CARGO_PKG_VERSION")),
    );
    (log, guard)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use slog::{Level, debug, warn};

    use super::filtered_async;

    /// Issue 17: a record below the level must be dropped where it is made. Behind the async drain, its fields were
    /// serialised (here: the counting value read), sent through the channel and the log thread woken for nothing.
    #[test]
    fn records_below_the_level_never_reach_the_async_drain() {
        let serialised = Arc::new(AtomicUsize::new(0));
        let counted = |serialised: &Arc<AtomicUsize>| {
            let serialised = Arc::clone(serialised);
            slog::FnValue(move |_: &slog::Record<'_>| {
                serialised.fetch_add(1, Ordering::SeqCst);
                "value"
            })
        };
        let (log, guard) = filtered_async(slog::Discard, Level::Warning);
        for _ in 0..100 {
            debug!(log, "filtered"; "field" => counted(&serialised));
        }
        warn!(log, "kept"; "field" => counted(&serialised));
        drop(log);
        drop(guard);
        assert_eq!(
            serialised.load(Ordering::SeqCst),
            1,
            "only the warning was serialised"
        );
    }
}
