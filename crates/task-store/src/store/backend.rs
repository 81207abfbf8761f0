//! The statements whose SQL differs by backend, behind the `BackendQueries` trait.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;

use crate::models::NewOutboxMessage;
use crate::pool::SqliteConn;
use crate::rows::{DbUuid, OutboxRow, TaskRow};
use crate::sequence::EventSequence;

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

/// The statements whose SQL differs by backend.
pub(super) trait BackendQueries {
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
