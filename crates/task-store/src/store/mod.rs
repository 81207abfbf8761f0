//! `Store`: the repository API over either backend, one `impl Store` block per entity: `users`, `tasks`,
//! `outbox`; the statements whose SQL differs by backend are in `backend`. This module holds the store itself,
//! its pools and the dispatch macros the others use.
//!
//! diesel-async has no `MultiConnection`, so `Store` holds one of two pools and every query body is written once
//! inside the `with_conn!` / `in_transaction!` macros, which expand it for each backend with that backend's
//! connection type and `schema` module in scope. Each expansion is type-checked on its own. The few statements
//! that differ by backend (row locks, the claim query) live in the `BackendQueries` trait.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use slog::{Logger, o};

use crate::config::{Backend, Database, DbConfig};
use crate::error::{OpenError, StoreError};
use crate::pool::{self, SqliteConn};

/// The persistence handle: cheap to clone (the pool inside is shared).
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    /// SQLite has one writer at a time: writers queue here, first come first served, before they begin, instead of
    /// sleeping and retrying in SQLite's busy handler (which let a request wait hundreds of milliseconds while
    /// later ones got through). Readers never take it (WAL lets them read beside the writer). Unused on
    /// PostgreSQL, whose row locks order writers.
    writer: Arc<tokio::sync::Mutex<()>>,
    log: Logger,
}

#[derive(Clone)]
enum Pools {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteConn>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Connection pool figures (see [`Store::pool_status`]).
#[cfg(feature = "test-util")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Idle connections ready for use.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// Runs `$body` with `$conn` bound to a pooled connection of the store's backend and that backend's tables in
/// scope. Evaluates to `$body`; a pool failure returns `StoreError::Unavailable` from the enclosing function.
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:block) => {
        match &$store.pools {
            Pools::Postgres(pool) => {
                let mut pooled = pool.get().await?;
                let $conn: &mut AsyncPgConnection = &mut pooled;
                #[allow(unused_imports, reason = "each body uses some of the tables")]
                use crate::schema::pg::*;
                $body
            }
            Pools::Sqlite(pool) => {
                let mut pooled = pool.get().await?;
                let $conn: &mut SqliteConn = &mut pooled;
                #[allow(unused_imports, reason = "each body uses some of the tables")]
                use crate::schema::sqlite::*;
                $body
            }
        }
    };
}

/// Runs `$body` (which returns `Result<_, E>` with `E: From<diesel::result::Error> + From<StoreError>`) in one
/// transaction: PostgreSQL `BEGIN` (row locks taken with `FOR UPDATE`), SQLite `BEGIN IMMEDIATE` (the write lock
/// up front, so `busy_timeout` applies instead of a failed lock upgrade). Evaluates to the transaction's result.
macro_rules! in_transaction {
    ($store:expr, |$conn:ident| $body:block) => {
        match &$store.pools {
            Pools::Postgres(pool) => match pool.get().await {
                Ok(mut pooled) => {
                    let pooled: &mut AsyncPgConnection = &mut pooled;
                    pooled
                        .transaction(async |$conn: &mut AsyncPgConnection| {
                            #[allow(
                                unused_imports,
                                reason = "each body uses some of the tables"
                            )]
                            use crate::schema::pg::*;
                            $body
                        })
                        .await
                }
                Err(err) => Err(StoreError::from(err).into()),
            },
            Pools::Sqlite(pool) => match ($store.writer.lock().await, pool.get().await) {
                (_writer, Ok(mut pooled)) => {
                    let pooled: &mut SqliteConn = &mut pooled;
                    pooled
                        .immediate_transaction(async |$conn: &mut SqliteConn| {
                            #[allow(
                                unused_imports,
                                reason = "each body uses some of the tables"
                            )]
                            use crate::schema::sqlite::*;
                            $body
                        })
                        .await
                }
                (_writer, Err(err)) => Err(StoreError::from(err).into()),
            },
        }
    };
}

/// [`with_conn!`] for a statement that writes outside a transaction: on SQLite it queues for the single writer
/// first, like [`in_transaction!`].
macro_rules! with_write_conn {
    ($store:expr, |$conn:ident| $body:block) => {{
        let _writer = match &$store.pools {
            Pools::Sqlite(_) => Some($store.writer.lock().await),
            Pools::Postgres(_) => None,
        };
        with_conn!($store, |$conn| $body)
    }};
}

/// Inserts `$messages` (a `&[NewOutboxMessage]`) into `event_outbox` on `$conn`, in order (see
/// [`BackendQueries::insert_outbox`]).
macro_rules! insert_outbox {
    ($conn:ident, $messages:expr, $now:expr) => {{
        let messages: &[crate::models::NewOutboxMessage] = $messages;
        BackendQueries::insert_outbox(&mut *$conn, messages, $now).await?;
    }};
}

// After the macros, which they use.
mod backend;
mod outbox;
mod tasks;
mod users;

use backend::BackendQueries;
pub use tasks::Staged;

impl Store {
    /// Opens the configured database: for SQLite creates and migrates the file, then pools connections to it;
    /// for PostgreSQL builds the pool without connecting (the first query does; see [`Store::ping`]) and runs
    /// no migrations (that is [`crate::run_pending`]'s job, run by `task-api migrate`).
    pub async fn open(config: &DbConfig, log: &Logger) -> Result<Self, OpenError> {
        let database = config.database()?;
        let log =
            log.new(o!("component" => "task-store", "backend" => database.backend().as_str()));
        let pools = match &database {
            Database::Postgres(url) => Pools::Postgres(pool::postgres(url, config)?),
            Database::Sqlite(path) => {
                crate::migrations::run_pending(config, &log).await?;
                Pools::Sqlite(pool::sqlite(path, config)?)
            }
        };
        let store = Self {
            pools,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            log,
        };
        if store.backend() == Backend::Sqlite {
            store.ping().await.map_err(OpenError::Connect)?;
        }
        slog::info!(store.log, "database store opened"; "pool_size" => config.pool_size);
        Ok(store)
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Postgres(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Connection pool figures, for tests.
    #[cfg(feature = "test-util")]
    pub fn pool_status(&self) -> PoolStatus {
        let status = match &self.pools {
            Pools::Postgres(pool) => pool.status(),
            Pools::Sqlite(pool) => pool.status(),
        };
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// Closes the pool: waiting and later calls fail with [`StoreError::Unavailable`], idle connections are
    /// dropped, connections in use are dropped when returned. For graceful shutdown.
    pub fn close(&self) {
        match &self.pools {
            Pools::Postgres(pool) => pool.close(),
            Pools::Sqlite(pool) => pool.close(),
        }
    }

    /// Checks that a connection can be had and answers (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::select(1_i32.into_sql::<diesel::sql_types::Integer>())
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// The embedded migrations this database lacks (empty: the schema is the one this code was built for).
    /// Reads diesel's `__diesel_schema_migrations` through the pool, cheap enough for `/readyz`; a database
    /// without that table (never migrated by us) lacks all of them.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        #[derive(diesel::QueryableByName)]
        struct Applied {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        let applied: Result<Vec<Applied>, diesel::result::Error> = with_conn!(self, |conn| {
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                .load(conn)
                .await
        });
        let applied = match applied {
            Ok(rows) => rows.into_iter().map(|row| row.version).collect::<Vec<_>>(),
            // No such table: nothing of ours was ever applied. Any other failure is the database's.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("__diesel_schema_migrations") =>
            {
                Vec::new()
            }
            Err(err) => return Err(err.into()),
        };
        Ok(crate::migrations::pending_of(self.backend(), &applied))
    }
}
