//! The `task-api` binary: CLI, configuration, root logger, and the `serve` / `migrate` / `mcp-stdio` / `outbox`
//! commands.

mod config;
mod logging;
mod outbox_cli;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rand::RngCore;
use slog::{info, warn};

use crate::config::{CONFIG_FILE_ENV, ConfigError, Settings};

/// The pakaura task API: REST, auth and CloudEvents publishing through Dapr.
#[derive(Debug, Parser)]
#[command(name = "task-api", version, about)]
struct Cli {
    /// A TOML file with settings (same names as the environment variables, in lowercase).
    #[arg(long, short = 'c', global = true, env = CONFIG_FILE_ENV, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Serve HTTP until SIGTERM/SIGINT (the default); an embedded SQLite database is created and migrated first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Serve the MCP task tools over stdin/stdout for one user, until stdin closes (logs go to stderr).
    McpStdio {
        /// The id of the registered user the tools act for.
        #[arg(long, value_name = "UUID", value_parser = task_api::mcp::parse_user_id)]
        user_id: task_api::mcp::UserId,
    },
    /// Inspect the event outbox on the configured DATABASE_URL, and re-queue moved-aside events (logs go to
    /// stderr, results to stdout).
    Outbox(outbox_cli::OutboxArgs),
}

/// Why the process could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error("configuration error")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the service failed")]
    Service(#[from] task_api::StartupError),
    #[error("the server stopped with an error")]
    Server(#[source] std::io::Error),
    #[error("the mcp stdio server failed")]
    McpStdio(#[source] Box<task_api::mcp::StdioError>),
    #[error("the outbox command failed")]
    Outbox(#[from] outbox_cli::OutboxCliError),
    #[error(
        "the database schema lacks {} migration(s) ({}): run `task-api migrate` first (the Helm chart's \
        migration Job does), or set MIGRATE_ON_START=true to apply them at start",
        pending.len(),
        pending.join(", ")
    )]
    SchemaBehind { pending: Vec<String> },
    #[error("cannot check or migrate the database schema")]
    Schema(#[source] Box<task_store::OpenError>),
}

/// Pins glibc's mmap threshold at 4 MiB, which also turns off its dynamic adjustment.
///
/// Each Argon2id computation allocates and frees one 19 MiB block. With the dynamic threshold, glibc raises the
/// threshold past 19 MiB after the first such free, so later blocks come from per-thread malloc arenas that keep
/// the freed memory: 40 concurrent logins with 4 hashing slots took the process from 50 MB to 394 MB (debug build;
/// 16 slots: 718 MB). Pinned, every block is its own mapping returned on free, and the resident memory follows the
/// number of slots: 109 MB and 328 MB for the same runs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_malloc_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_malloc_mmap_threshold() {}

fn main() -> ExitCode {
    pin_malloc_mmap_threshold();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&err);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints the error and its whole `source()` chain; used before (or instead of) the logger.
#[expect(
    clippy::print_stderr,
    reason = "startup errors must reach the operator even without a logger"
)]
fn report(err: &(dyn std::error::Error + 'static)) {
    eprintln!("task-api: {}", task_api::error::ErrorChain(err));
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(cli: Cli) -> Result<(), StartupError> {
    let settings: Settings = config::load(cli.config.as_deref())?;
    // With `mcp-stdio`, stdout carries the MCP protocol, with `outbox` the command's result: every log line goes
    // to stderr.
    let target = match cli.command {
        Some(Command::McpStdio { .. } | Command::Outbox(_)) => logging::LogTarget::Stderr,
        _ => logging::LogTarget::Stdout,
    };
    let (log, _guard) = logging::build(settings.log_format, settings.log_level, target);
    let service_config = settings.service_config(random_secret)?;
    info!(log, "effective configuration"; "config" => %settings.redacted(),
        "config_file" => cli.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
    if let Some(form) = settings.database_url_sqlalchemy_form() {
        info!(log, "DATABASE_URL is in SQLAlchemy's {form}:// form (the original service's); using it as {}",
            config::redact_url_password(&settings.database_url());
            "sqlalchemy_form" => &form);
    }
    let serves = !matches!(cli.command, Some(Command::Migrate | Command::Outbox(_)));
    if serves && !settings.has_jwt_secret() {
        warn!(
            log,
            "JWT_SECRET is not set: using a random secret for this process; tokens will not survive a \
            restart and will not be accepted by other replicas"
        );
    }

    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            task_api::migrate(&service_config.database, &log).await?;
            info!(log, "migrations applied");
            Ok(())
        }
        Command::McpStdio { user_id } => {
            task_api::mcp::serve_stdio(&service_config, user_id, &log)
                .await
                .map_err(|err| StartupError::McpStdio(Box::new(err)))?;
            Ok(())
        }
        Command::Outbox(args) => {
            let mut stdout = std::io::stdout().lock();
            outbox_cli::run(&args, &service_config.database, &log, &mut stdout).await?;
            Ok(())
        }
        Command::Serve => {
            check_schema(&service_config.database, settings.migrate_on_start, &log).await?;
            let addr = format!("{}:{}", settings.host, settings.port);
            let listener =
                TcpListener::bind(&addr).map_err(|source| StartupError::Bind { addr, source })?;
            let app = task_api::Application::build(service_config, listener, log.clone()).await?;
            info!(log, "listening on port {}", app.port(); "port" => app.port(), "host" => &settings.host);
            app.run_until_stopped().await.map_err(StartupError::Server)
        }
    }
}

/// `serve`'s schema check (issue 16). On PostgreSQL with pending migrations: refuse to serve, naming
/// `task-api migrate`, or with `MIGRATE_ON_START=true` apply them under an advisory lock. An unreachable database
/// is only warned about: `/readyz` stays 503 until it answers with a current schema. SQLite migrates itself when
/// the store opens.
async fn check_schema(
    database: &task_store::DbConfig,
    migrate_on_start: bool,
    log: &slog::Logger,
) -> Result<(), StartupError> {
    let backend = database
        .database()
        .map_err(|err| StartupError::Schema(Box::new(err)))?
        .backend();
    if backend != task_store::Backend::Postgres {
        return Ok(());
    }
    if migrate_on_start {
        return task_store::run_pending_locked(database, log)
            .await
            .map(|_| ())
            .map_err(|err| StartupError::Schema(Box::new(err)));
    }
    match task_store::pending_migrations(database).await {
        Ok(pending) if pending.is_empty() => Ok(()),
        Ok(pending) => Err(StartupError::SchemaBehind { pending }),
        Err(err) => {
            warn!(log, "cannot check the database schema at start; /readyz answers 503 until the database \
                answers with a current schema"; "error" => %task_api::error::ErrorChain(&err));
            Ok(())
        }
    }
}
