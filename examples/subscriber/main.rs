//! The `subscriber` example: an actix-web service that receives task events through Dapr
//! (`cargo run -p examples --example subscriber`; see `examples/subscriber/README.md`).

use std::io::Write as _;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use examples::events::PUBSUB_NAME;
use examples::logging;
use examples::subscriber::{self, SYNC_ROUTE, SubscriberConfig, SubscriberState, TASKS_ROUTE};
use slog::info;

/// Receives `task.*` events through Dapr and answers SUCCESS, RETRY or DROP.
#[derive(Parser, Debug)]
#[command(name = "subscriber")]
struct Args {
    /// Port to listen on: Dapr's `--app-port` (`dapr run` and `examples/run-with-daprd` export `APP_PORT`).
    #[arg(long, env = "APP_PORT", default_value_t = 6002)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The pub/sub component to subscribe through.
    #[arg(long, env = "DAPR_PUBSUB_NAME", default_value = PUBSUB_NAME)]
    pubsub: String,
    /// How many event ids to remember for idempotency.
    #[arg(long, default_value_t = 10_000)]
    seen_capacity: usize,
}

/// Runs the program; on failure prints the whole error chain on one line and exits with status 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "subscriber: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (log, _guard) = logging::terminal("subscriber", logging::level_from_env());
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let config = SubscriberConfig {
        pubsub: args.pubsub,
        seen_capacity: args.seen_capacity,
        ..SubscriberConfig::default()
    };
    let state = Arc::new(SubscriberState::new(config, log.clone()));
    info!(log, "subscriber listening on http://{}", address;
        "programmatic" => format!("task-events -> {TASKS_ROUTE}"),
        "declarative" => format!("task-updates -> {SYNC_ROUTE} (examples/dapr/subscription.yaml)"),
        "observe" => format!("curl http://{address}/received"));
    subscriber::serve(listener, Arc::clone(&state), true)?.await?;
    let stats = state.report().stats;
    info!(log, "subscriber stopped";
        "deliveries" => stats.deliveries, "processed" => stats.processed, "duplicates" => stats.duplicates,
        "retried" => stats.retried, "dropped" => stats.dropped);
    Ok(())
}
