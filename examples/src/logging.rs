//! A terminal slog logger for the example programs (level from `LOG_LEVEL`, default `info`).

use slog::{Drain, Level, Logger, o};

/// The level named by `LOG_LEVEL` (`trace`, `debug`, `info`, `warn`, `error`), `info` when unset or unknown.
pub fn level_from_env() -> Level {
    std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|value| value.parse::<Level>().ok())
        .unwrap_or(Level::Info)
}

/// A logger writing human-readable lines to stderr. Keep the guard alive until the program ends so
/// that the last lines are flushed.
pub fn terminal(service: &'static str, level: Level) -> (Logger, slog_async::AsyncGuard) {
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = slog::LevelFilter::new(drain, level).fuse();
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(4096)
        .build_with_guard();
    (Logger::root(drain.fuse(), o!("service" => service)), guard)
}
