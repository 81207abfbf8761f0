//! Embedded migrations, one set per backend, and `run_pending`.

use std::path::Path;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use slog::{Logger, info};

use crate::config::{Database, DbConfig};
use crate::error::{BoxError, OpenError};
use crate::pool::connection_pragmas;

/// PostgreSQL migrations (`crates/task-store/migrations/postgres`).
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// SQLite migrations (`crates/task-store/migrations/sqlite`).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Applies the pending migrations of the configured database and returns the versions applied (empty when it
/// was up to date). For SQLite it also creates the file (and its folder) and switches it to WAL mode.
///
/// Runs on tokio's blocking pool over a one-off connection, so it works under any tokio runtime flavour
/// (actix's current-thread one included). Diesel takes no cross-process lock: run it from one process at a time
/// (`task-api migrate`, the Helm hook Job); the embedded SQLite default runs it at start.
pub async fn run_pending(config: &DbConfig, log: &Logger) -> Result<Vec<String>, OpenError> {
    let database = config.database()?;
    let backend = database.backend().as_str();
    let pragmas = connection_pragmas(config);
    let applied = tokio::task::spawn_blocking(move || match database {
        Database::Postgres(url) => {
            let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
            apply(&mut conn, POSTGRES_MIGRATIONS)
        }
        Database::Sqlite(path) => {
            let mut conn = open_sqlite_file(&path)?;
            conn.batch_execute(&pragmas)?;
            conn.batch_execute("PRAGMA journal_mode = WAL;")?;
            apply(&mut conn, SQLITE_MIGRATIONS)
        }
    })
    .await
    .map_err(|err| OpenError::Migrate(Box::new(err)))?
    .map_err(OpenError::Migrate)?;
    if applied.is_empty() {
        info!(log, "database schema is up to date"; "backend" => backend);
    }
    for version in &applied {
        info!(log, "applied migration {version}"; "backend" => backend, "version" => version);
    }
    Ok(applied)
}

fn apply<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, BoxError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let versions = conn.run_pending_migrations(migrations)?;
    Ok(versions
        .into_iter()
        .map(|version| version.to_string())
        .collect())
}

/// Opens (creating when missing) an SQLite file, creating its folder first.
fn open_sqlite_file(path: &Path) -> Result<SqliteConnection, BoxError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let path = path.to_str().ok_or("the SQLite path is not valid UTF-8")?;
    Ok(SqliteConnection::establish(path)?)
}
