//! The tasks half of [`Store`]: reads, and the mutations that write a task and its outbox rows in one
//! transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use task_domain::{Task, TaskId, UserId};
use time::OffsetDateTime;

use super::{BackendQueries, Pools, Store};
use crate::error::StoreError;
use crate::models::NewOutboxMessage;
use crate::pool::SqliteConn;
use crate::rows::{DbUuid, TaskRow, into_tasks};
use crate::sequence::Locked;

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

impl Store {
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

/// The [`Locked`] context of a transaction whose rows are locked: the instant now and the next sequence block.
async fn locked<C: BackendQueries>(conn: &mut C) -> QueryResult<Locked> {
    let sequence = conn.next_event_sequence().await?;
    Ok(Locked {
        now: task_domain::normalize(OffsetDateTime::now_utc()),
        sequence,
    })
}
