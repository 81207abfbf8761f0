//! Embedded migrations, one set per backend, and `run_pending`.

use std::path::Path;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::sqlite::SqliteConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use slog::{Logger, info};

use crate::config::{Backend, Database, DbConfig};
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

/// The key of the PostgreSQL advisory lock held while migrating at start (`MIGRATE_ON_START`): replicas starting
/// together apply the migrations once, one after the other, instead of racing. (The bytes of "pakaura!".)
pub const MIGRATION_LOCK_KEY: i64 = 0x7061_6b61_7572_6121;

/// The versions of the embedded migrations of `backend`, oldest first (diesel's form: `20260101000001`).
pub fn embedded_versions(backend: Backend) -> Vec<String> {
    let listed = match backend {
        Backend::Postgres => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
            .map(|all| {
                all.iter()
                    .map(|m| m.name().version().to_string())
                    .collect::<Vec<_>>()
            }),
        Backend::Sqlite => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS).map(|all| {
                all.iter()
                    .map(|m| m.name().version().to_string())
                    .collect::<Vec<_>>()
            })
        }
    };
    // Embedded at compile time from folders that exist: listing them cannot fail.
    let mut versions = listed.unwrap_or_default();
    versions.sort();
    versions
}

/// The embedded migrations not applied to the database behind `applied` (the versions recorded in diesel's
/// `__diesel_schema_migrations`), oldest first.
pub fn pending_of(backend: Backend, applied: &[String]) -> Vec<String> {
    embedded_versions(backend)
        .into_iter()
        .filter(|version| !applied.contains(version))
        .collect()
}

/// The pending migrations of the configured database, over a one-off connection; empty when it is up to date.
/// A database the original service created (no `__diesel_schema_migrations` table) has all of them pending.
pub async fn pending_migrations(config: &DbConfig) -> Result<Vec<String>, OpenError> {
    let database = config.database()?;
    let pending = tokio::task::spawn_blocking(move || -> Result<Vec<String>, BoxError> {
        match database {
            Database::Postgres(url) => {
                let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
                names(conn.pending_migrations(POSTGRES_MIGRATIONS)?)
            }
            Database::Sqlite(path) => {
                let path = path.to_str().ok_or("the SQLite path is not valid UTF-8")?;
                let mut conn = SqliteConnection::establish(path)?;
                names(conn.pending_migrations(SQLITE_MIGRATIONS)?)
            }
        }
    })
    .await
    .map_err(|err| OpenError::Migrate(Box::new(err)))?
    .map_err(OpenError::Migrate)?;
    Ok(pending)
}

fn names<DB: diesel::backend::Backend>(
    pending: Vec<Box<dyn diesel::migration::Migration<DB>>>,
) -> Result<Vec<String>, BoxError> {
    Ok(pending
        .iter()
        .map(|m| m.name().version().to_string())
        .collect())
}

/// Like [`run_pending`], but on PostgreSQL under a session advisory lock ([`MIGRATION_LOCK_KEY`]), so several
/// processes may call it at once (replicas with `MIGRATE_ON_START=true`): the first applies the migrations, the
/// others wait for it and then find nothing pending. SQLite needs no lock (one process owns the file).
pub async fn run_pending_locked(config: &DbConfig, log: &Logger) -> Result<Vec<String>, OpenError> {
    let database = config.database()?;
    let Database::Postgres(url) = database else {
        return run_pending(config, log).await;
    };
    let applied = tokio::task::spawn_blocking(move || -> Result<Vec<String>, BoxError> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
        let result = apply(&mut conn, POSTGRES_MIGRATIONS);
        // Closing the connection would release the lock too; unlock explicitly all the same.
        let unlocked =
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
        let applied = result?;
        unlocked?;
        Ok(applied)
    })
    .await
    .map_err(|err| OpenError::Migrate(Box::new(err)))?
    .map_err(OpenError::Migrate)?;
    for version in &applied {
        info!(log, "applied migration {version}"; "backend" => "postgres", "version" => version,
            "lock" => "advisory");
    }
    if applied.is_empty() {
        info!(log, "database schema is up to date"; "backend" => "postgres");
    }
    Ok(applied)
}
