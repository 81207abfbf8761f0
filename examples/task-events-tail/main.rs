//! The `task-events-tail` example: prints the task event stream as it happens, one line per event
//! (`cargo run -p examples --example task-events-tail`; see `examples/task-events-tail/README.md`).

use std::io::Write as _;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use examples::events::{ALL_TOPICS, PUBSUB_NAME};
use examples::tail::{self, TailConfig, TailState};

/// Prints every event of the task topics as Dapr delivers it.
#[derive(Parser, Debug)]
#[command(name = "task-events-tail")]
struct Args {
    /// Port to listen on: Dapr's `--app-port` (`dapr run` and `examples/run-with-daprd` export `APP_PORT`).
    #[arg(long, env = "APP_PORT", default_value_t = 6003)]
    port: u16,
    /// The pub/sub component.
    #[arg(long, env = "DAPR_PUBSUB_NAME", default_value = PUBSUB_NAME)]
    pubsub: String,
    /// Topics to watch (repeat the flag); all three by default.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Also print each event's payload.
    #[arg(long)]
    data: bool,
}

/// Runs the program; on failure prints the whole error chain on one line and exits with status 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "task-events-tail: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let topics = if args.topics.is_empty() {
        ALL_TOPICS.iter().map(|topic| (*topic).to_owned()).collect()
    } else {
        args.topics
    };
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    writeln!(
        std::io::stderr(),
        "task-events-tail: watching {} through {} (app on 127.0.0.1:{}); Ctrl-C to stop\n\
         columns: time  topic/partition@offset  key=partition key  type  subject  correlationid  id",
        topics.join(", "),
        args.pubsub,
        args.port
    )?;
    let config = TailConfig {
        pubsub: args.pubsub,
        topics,
        show_data: args.data,
    };
    let state = Arc::new(TailState::new(config, Box::new(std::io::stdout())));
    tail::serve(listener, Arc::clone(&state), true)?.await?;
    writeln!(
        std::io::stderr(),
        "task-events-tail: stopped after {} events",
        state.printed()
    )?;
    Ok(())
}
