//! `Store`: the repository API (users, tasks, outbox) over either backend.
//!
//! diesel-async has no `MultiConnection`, so `Store` holds one of two pools and every query body is written once
//! inside the `with_conn!` / `in_transaction!` macros, which expand it for each backend with that backend's
//! connection type and `schema` module in scope. Each expansion is type-checked on its own. The few statements
//! that differ by backend (row locks, the claim query) live in the `BackendQueries` trait.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use slog::{Logger, o};
use task_domain::{Email, Task, TaskId, UserId};
use time::OffsetDateTime;

use crate::config::{Backend, Database, DbConfig};
use crate::error::{OpenError, StoreError};
use crate::models::{DbUuid, OutboxRow, TaskRow, UserRow, into_tasks};
use crate::outbox::NewOutboxMessage;
use crate::pool::{self, SqliteConn};
use crate::sequence::{EventSequence, Locked};
use crate::users::{NewUser, User};

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

/// What a mutation closure decided: the value handed back to the caller after commit, and the outbox rows to
/// write in the same transaction (none in fire-and-forget mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged<T> {
    /// Returned to the caller once the transaction committed (typically the domain events).
    pub value: T,
    /// Written to `event_outbox` in the mutation's transaction.
    pub outbox: Vec<NewOutboxMessage>,
}

impl<T> Staged<T> {
    /// `value` with no outbox rows.
    pub fn new(value: T) -> Self {
        Self {
            value,
            outbox: Vec::new(),
        }
    }

    /// Adds outbox rows.
    pub fn with_outbox(mut self, outbox: Vec<NewOutboxMessage>) -> Self {
        self.outbox.extend(outbox);
        self
    }
}

/// An error inside a transaction: the store's (database errors included) or the caller's closure's; either
/// rolls the transaction back.
enum TxError<E> {
    Store(StoreError),
    Caller(E),
}

impl<E> From<diesel::result::Error> for TxError<E> {
    fn from(err: diesel::result::Error) -> Self {
        Self::Store(err.into())
    }
}

impl<E> From<StoreError> for TxError<E> {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl<E: From<StoreError>> TxError<E> {
    fn into_caller(self) -> E {
        match self {
            Self::Store(err) => err.into(),
            Self::Caller(err) => err,
        }
    }
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

/// The column values of `$message` (a `&NewOutboxMessage`) as a fresh `event_outbox` row written at `$now`, for
/// whichever backend's `event_outbox` is in scope.
macro_rules! outbox_row {
    ($message:expr, $now:expr) => {{
        let message: &NewOutboxMessage = $message;
        let now: OffsetDateTime = $now;
        (
            event_outbox::id.eq(DbUuid(message.id)),
            // Owned values: a statement diesel caches by type must be `'static`.
            event_outbox::topic.eq(message.topic.clone()),
            event_outbox::partition_key.eq(message.partition_key.clone()),
            event_outbox::payload.eq(message.payload.clone()),
            event_outbox::traceparent.eq(message.traceparent.clone()),
            event_outbox::attempts.eq(0),
            event_outbox::next_attempt_at.eq(now),
            event_outbox::created_at.eq(now),
        )
    }};
}

/// Inserts `$messages` (a `&[NewOutboxMessage]`) into `event_outbox` on `$conn`, in order (see
/// [`BackendQueries::insert_outbox`]).
macro_rules! insert_outbox {
    ($conn:ident, $messages:expr, $now:expr) => {{
        let messages: &[NewOutboxMessage] = $messages;
        BackendQueries::insert_outbox(&mut *$conn, messages, $now).await?;
    }};
}

// After the macros, which it uses.
mod outbox;

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

    /// Connection pool figures, for metrics.
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

    // ---- users ----

    /// Registers a user. A taken email fails with [`StoreError::UniqueViolation`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let now = task_domain::normalize(new.now);
        with_write_conn!(self, |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(DbUuid::from(new.id)),
                    users::email.eq(new.email.as_str()),
                    users::password_hash.eq(&new.password_hash),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
        Ok(User {
            id: new.id,
            email: new.email,
            password_hash: new.password_hash,
            created_at: now,
            updated_at: now,
        })
    }

    /// The user with this (normalized) email, if any.
    pub async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .filter(users::email.eq(email.as_str()))
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }

    /// Whether a user with this id exists: one primary-key lookup reading only the id, cheap enough to run on
    /// every authenticated request (a token outlives a deleted user).
    pub async fn user_exists(&self, id: UserId) -> Result<bool, StoreError> {
        let found: Option<DbUuid> = with_conn!(self, |conn| {
            users::table
                .find(DbUuid::from(id))
                .select(users::id)
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.is_some())
    }

    /// Replaces a user's password hash (an upgrade after a successful login) and bumps `updated_at`. A user
    /// that no longer exists is [`StoreError::NotFound`].
    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = task_domain::normalize(now);
        let updated = with_conn!(self, |conn| {
            diesel::update(users::table.find(DbUuid::from(id)))
                .set((
                    users::password_hash.eq(password_hash),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await?
        });
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Whether any stored password hash starts with `prefix` (`$2` for bcrypt, `$argon2` for Argon2). Reads
    /// the users table once (no index on the hash): meant for startup, not for requests.
    pub async fn has_password_hash_with_prefix(&self, prefix: &str) -> Result<bool, StoreError> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let found: Option<DbUuid> = with_conn!(self, |conn| {
            users::table
                .filter(users::password_hash.like(&pattern).escape('\\'))
                .select(users::id)
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.is_some())
    }

    /// The user with this id, if any.
    pub async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .find(DbUuid::from(id))
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }

    // ---- tasks ----

    /// Stores a new task (made with `Task::create`) in one transaction, with the outbox rows `stage` returns;
    /// `stage` is called inside the transaction with its [`Locked`] context (the sequence block for the task's
    /// events). Returns the closure's value. A user that does not exist fails with
    /// [`StoreError::ForeignKeyViolation`]; an `Err` from `stage` rolls back and is returned as is.
    pub async fn insert_task<T, E, F>(&self, task: &Task, stage: F) -> Result<T, E>
    where
        F: FnOnce(Locked) -> Result<Staged<T>, E> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let res: Result<T, TxError<E>> = in_transaction!(self, |conn| {
            diesel::insert_into(tasks::table)
                .values((
                    tasks::id.eq(DbUuid::from(task.id())),
                    tasks::user_id.eq(DbUuid::from(task.user_id())),
                    tasks::title.eq(task.title().as_str()),
                    tasks::completed.eq(task.completed()),
                    tasks::created_at.eq(task.created_at()),
                    tasks::updated_at.eq(task.updated_at()),
                    tasks::due_date.eq(task.due_date().map(|due| due.instant())),
                ))
                .execute(conn)
                .await?;
            let locked = locked(conn).await?;
            let staged = stage(locked).map_err(TxError::Caller)?;
            insert_outbox!(conn, &staged.outbox, locked.now);
            Ok(staged.value)
        });
        res.map_err(TxError::into_caller)
    }

    /// The task with this id, whoever owns it ([`StoreError::NotFound`] when there is none).
    pub async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        let row: TaskRow = with_conn!(self, |conn| {
            tasks::table.find(DbUuid::from(id)).first(conn).await?
        });
        Task::try_from(row)
    }

    /// The user's tasks, newest first (`created_at` descending, then id), optionally only completed or only
    /// open ones.
    pub async fn list_tasks(
        &self,
        user_id: UserId,
        completed: Option<bool>,
    ) -> Result<Vec<Task>, StoreError> {
        let rows: Vec<TaskRow> = with_conn!(self, |conn| {
            let mut query = tasks::table
                .filter(tasks::user_id.eq(DbUuid::from(user_id)))
                .into_boxed();
            if let Some(completed) = completed {
                query = query.filter(tasks::completed.eq(completed));
            }
            query
                .order((tasks::created_at.desc(), tasks::id.desc()))
                .load(conn)
                .await?
        });
        into_tasks(rows)
    }

    /// Read-modify-write of one task in one transaction: locks the row, calls `change` with the current task and
    /// the [`Locked`] context (the instant and sequence block, both taken under the lock; `change` checks
    /// ownership, applies a domain operation and returns the events and outbox rows), writes the task back if it
    /// changed, writes the outbox rows, and commits. Returns the task as stored and the closure's value.
    ///
    /// No such task: `E::from(StoreError::NotFound)`. An `Err` from `change` rolls back and is returned as is.
    pub async fn update_task<T, E, F>(&self, id: TaskId, change: F) -> Result<(Task, T), E>
    where
        F: FnOnce(&mut Task, Locked) -> Result<Staged<T>, E> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let res: Result<(Task, T), TxError<E>> = in_transaction!(self, |conn| {
            let row = BackendQueries::lock_task(conn, DbUuid::from(id))
                .await?
                .ok_or(StoreError::NotFound)?;
            let before = Task::try_from(row)?;
            let mut task = before.clone();
            let locked = locked(conn).await?;
            let now = locked.now;
            let staged = change(&mut task, locked).map_err(TxError::Caller)?;
            if task != before {
                diesel::update(tasks::table.find(DbUuid::from(id)))
                    .set((
                        tasks::title.eq(task.title().as_str()),
                        tasks::completed.eq(task.completed()),
                        tasks::due_date.eq(task.due_date().map(|due| due.instant())),
                        tasks::updated_at.eq(task.updated_at()),
                    ))
                    .execute(conn)
                    .await?;
            }
            insert_outbox!(conn, &staged.outbox, now);
            Ok((task, staged.value))
        });
        res.map_err(TxError::into_caller)
    }

    /// Deletes one task in one transaction: locks the row, calls `decide` with it and the [`Locked`] context
    /// (ownership check, events, outbox rows), deletes it and writes the outbox rows. Returns the deleted task and
    /// the closure's value.
    ///
    /// No such task: `E::from(StoreError::NotFound)`. An `Err` from `decide` rolls back and is returned as is.
    pub async fn delete_task<T, E, F>(&self, id: TaskId, decide: F) -> Result<(Task, T), E>
    where
        F: FnOnce(&Task, Locked) -> Result<Staged<T>, E> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let res: Result<(Task, T), TxError<E>> = in_transaction!(self, |conn| {
            let row = BackendQueries::lock_task(conn, DbUuid::from(id))
                .await?
                .ok_or(StoreError::NotFound)?;
            let task = Task::try_from(row)?;
            let locked = locked(conn).await?;
            let now = locked.now;
            let staged = decide(&task, locked).map_err(TxError::Caller)?;
            diesel::delete(tasks::table.find(DbUuid::from(id)))
                .execute(conn)
                .await?;
            insert_outbox!(conn, &staged.outbox, now);
            Ok((task, staged.value))
        });
        res.map_err(TxError::into_caller)
    }

    /// Deletes all completed tasks of `user_id` in one transaction: locks them, calls `decide` with them (oldest
    /// first) and the [`Locked`] context, deletes them and writes the outbox rows. Returns the removed tasks and
    /// the closure's value; with nothing to remove, `decide` gets an empty slice.
    pub async fn delete_completed<T, E, F>(
        &self,
        user_id: UserId,
        decide: F,
    ) -> Result<(Vec<Task>, T), E>
    where
        F: FnOnce(&[Task], Locked) -> Result<Staged<T>, E> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let res: Result<(Vec<Task>, T), TxError<E>> = in_transaction!(self, |conn| {
            let rows = BackendQueries::lock_completed(conn, DbUuid::from(user_id)).await?;
            let removed = into_tasks(rows)?;
            let locked = locked(conn).await?;
            let now = locked.now;
            let staged = decide(&removed, locked).map_err(TxError::Caller)?;
            let ids: Vec<DbUuid> = removed.iter().map(|task| DbUuid::from(task.id())).collect();
            if !ids.is_empty() {
                diesel::delete(tasks::table.filter(tasks::id.eq_any(&ids)))
                    .execute(conn)
                    .await?;
            }
            insert_outbox!(conn, &staged.outbox, now);
            Ok((removed, staged.value))
        });
        res.map_err(TxError::into_caller)
    }
}

/// The statements whose SQL differs by backend.
trait BackendQueries {
    /// The task row, locked for the rest of the transaction.
    async fn lock_task(&mut self, id: DbUuid) -> QueryResult<Option<TaskRow>>;
    /// The user's completed task rows, oldest first, locked for the rest of the transaction.
    async fn lock_completed(&mut self, user_id: DbUuid) -> QueryResult<Vec<TaskRow>>;
    /// Inserts outbox rows in order (their `seq` follows it).
    async fn insert_outbox(
        &mut self,
        messages: &[NewOutboxMessage],
        now: OffsetDateTime,
    ) -> QueryResult<()>;
    /// The next transaction number of the event sequence (see [`EventSequence`]); call it after the rows the
    /// transaction changes are locked.
    async fn next_event_sequence(&mut self) -> QueryResult<EventSequence>;
    /// Makes concurrent outbox claims wait for each other until the end of the transaction.
    async fn serialize_claims(&mut self) -> QueryResult<()>;
    /// The oldest `limit` pending outbox rows, locked for the rest of the transaction.
    async fn oldest_pending(&mut self, limit: i64) -> QueryResult<Vec<OutboxRow>>;
    /// The oldest `limit` pending outbox rows of one partition key, locked for the rest of the transaction.
    async fn oldest_of_key(
        &mut self,
        partition_key: &str,
        limit: i64,
    ) -> QueryResult<Vec<OutboxRow>>;
}

/// The [`Locked`] context of a transaction whose rows are locked: the instant now and the next sequence block.
async fn locked<C: BackendQueries>(conn: &mut C) -> QueryResult<Locked> {
    let sequence = conn.next_event_sequence().await?;
    Ok(Locked {
        now: task_domain::normalize(OffsetDateTime::now_utc()),
        sequence,
    })
}

/// The one row of `next_event_sequence`'s statements.
#[derive(QueryableByName)]
struct SequenceValue {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

impl SequenceValue {
    fn into_sequence(self) -> EventSequence {
        // Both sources start at 1 and PostgreSQL's stops at 2⁴⁴ - 1 (migration 000007).
        EventSequence::from_transaction(u64::try_from(self.value).unwrap_or(0))
    }
}

/// The advisory lock key that serializes outbox claims across relays (an arbitrary constant: "pakaura outbox").
const OUTBOX_CLAIM_LOCK: i64 = 0x0070_616b_6175_7261;

impl BackendQueries for AsyncPgConnection {
    async fn lock_task(&mut self, id: DbUuid) -> QueryResult<Option<TaskRow>> {
        use crate::schema::pg::tasks;
        tasks::table
            .find(id)
            .for_update()
            .first(self)
            .await
            .optional()
    }

    async fn lock_completed(&mut self, user_id: DbUuid) -> QueryResult<Vec<TaskRow>> {
        use crate::schema::pg::tasks;
        tasks::table
            .filter(tasks::user_id.eq(user_id))
            .filter(tasks::completed.eq(true))
            .order((tasks::created_at.asc(), tasks::id.asc()))
            .for_update()
            .load(self)
            .await
    }

    /// Two rows per statement: most mutations write two events, and a fixed-size batch keeps diesel's
    /// prepared-statement cache (a `Vec` batch is re-parsed by PostgreSQL every time, which measured slower than
    /// one cached statement per row); one round trip instead of two for the usual mutation.
    async fn insert_outbox(
        &mut self,
        messages: &[NewOutboxMessage],
        now: OffsetDateTime,
    ) -> QueryResult<()> {
        use crate::schema::pg::event_outbox;
        for chunk in messages.chunks(2) {
            match chunk {
                [first, second] => {
                    diesel::insert_into(event_outbox::table)
                        .values([outbox_row!(first, now), outbox_row!(second, now)])
                        .execute(self)
                        .await?
                }
                [only] => {
                    diesel::insert_into(event_outbox::table)
                        .values(outbox_row!(only, now))
                        .execute(self)
                        .await?
                }
                _ => 0,
            };
        }
        Ok(())
    }

    async fn next_event_sequence(&mut self) -> QueryResult<EventSequence> {
        let row: SequenceValue = diesel::sql_query("SELECT nextval('event_sequence') AS value")
            .get_result(self)
            .await?;
        Ok(row.into_sequence())
    }

    async fn serialize_claims(&mut self) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(OUTBOX_CLAIM_LOCK)
            .execute(self)
            .await
            .map(drop)
    }

    async fn oldest_pending(&mut self, limit: i64) -> QueryResult<Vec<OutboxRow>> {
        use crate::schema::pg::event_outbox as outbox;
        outbox::table
            .filter(outbox::failed_at.is_null())
            .order(outbox::seq.asc())
            .limit(limit)
            .for_update()
            .skip_locked()
            .load(self)
            .await
    }

    async fn oldest_of_key(
        &mut self,
        partition_key: &str,
        limit: i64,
    ) -> QueryResult<Vec<OutboxRow>> {
        use crate::schema::pg::event_outbox as outbox;
        outbox::table
            .filter(outbox::partition_key.eq(partition_key))
            .filter(outbox::failed_at.is_null())
            .order(outbox::seq.asc())
            .limit(limit)
            .for_update()
            .skip_locked()
            .load(self)
            .await
    }
}

/// SQLite: the transaction is `BEGIN IMMEDIATE`, so the whole database is write-locked already and a plain
/// `SELECT` reads rows no one else can change before commit.
impl BackendQueries for SqliteConn {
    async fn lock_task(&mut self, id: DbUuid) -> QueryResult<Option<TaskRow>> {
        use crate::schema::sqlite::tasks;
        tasks::table.find(id).first(self).await.optional()
    }

    async fn lock_completed(&mut self, user_id: DbUuid) -> QueryResult<Vec<TaskRow>> {
        use crate::schema::sqlite::tasks;
        tasks::table
            .filter(tasks::user_id.eq(user_id))
            .filter(tasks::completed.eq(true))
            .order((tasks::created_at.asc(), tasks::id.asc()))
            .load(self)
            .await
    }

    /// One statement per row: diesel's multi-row insert is not available through the async wrapper, and an
    /// in-process statement costs no round trip anyway.
    async fn insert_outbox(
        &mut self,
        messages: &[NewOutboxMessage],
        now: OffsetDateTime,
    ) -> QueryResult<()> {
        use crate::schema::sqlite::event_outbox;
        for message in messages {
            diesel::insert_into(event_outbox::table)
                .values(outbox_row!(message, now))
                .execute(self)
                .await?;
        }
        Ok(())
    }

    async fn next_event_sequence(&mut self) -> QueryResult<EventSequence> {
        // The write lock of `BEGIN IMMEDIATE` serializes this with every other transaction.
        let row: SequenceValue = diesel::sql_query(
            "UPDATE event_sequence SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .get_result(self)
        .await?;
        Ok(row.into_sequence())
    }

    async fn serialize_claims(&mut self) -> QueryResult<()> {
        // `BEGIN IMMEDIATE` already holds the database's only write lock.
        Ok(())
    }

    async fn oldest_pending(&mut self, limit: i64) -> QueryResult<Vec<OutboxRow>> {
        use crate::schema::sqlite::event_outbox as outbox;
        outbox::table
            .filter(outbox::failed_at.is_null())
            .order(outbox::seq.asc())
            .limit(limit)
            .load(self)
            .await
    }

    async fn oldest_of_key(
        &mut self,
        partition_key: &str,
        limit: i64,
    ) -> QueryResult<Vec<OutboxRow>> {
        use crate::schema::sqlite::event_outbox as outbox;
        outbox::table
            .filter(outbox::partition_key.eq(partition_key))
            .filter(outbox::failed_at.is_null())
            .order(outbox::seq.asc())
            .limit(limit)
            .load(self)
            .await
    }
}
