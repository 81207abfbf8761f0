//! The diesel row types shared by both backends, and their conversions into domain types and `models`.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Text, Uuid as UuidSql};
use diesel::sqlite::Sqlite;
use diesel::{Queryable, pg::PgValue};
use task_domain::{DueDate, Email, Task, TaskId, TaskParts, TaskTitle, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreError;
use crate::models::{OutboxMessage, User};

/// A UUID that PostgreSQL stores as `UUID` and SQLite as hyphenated lowercase `TEXT`, so one query text binds
/// and reads ids on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = UuidSql)]
#[diesel(sql_type = Text)]
pub(crate) struct DbUuid(pub(crate) Uuid);

impl ToSql<UuidSql, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<UuidSql, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<UuidSql, Pg> for DbUuid {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<UuidSql, Pg>>::from_sql(bytes).map(DbUuid)
    }
}

impl ToSql<Text, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Sqlite> for DbUuid {
    fn from_sql(
        bytes: <Sqlite as diesel::backend::Backend>::RawValue<'_>,
    ) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(bytes)?;
        Ok(DbUuid(Uuid::parse_str(&text)?))
    }
}

impl From<TaskId> for DbUuid {
    fn from(id: TaskId) -> Self {
        Self(id.into_uuid())
    }
}

impl From<UserId> for DbUuid {
    fn from(id: UserId) -> Self {
        Self(id.into_uuid())
    }
}

/// A `users` row (columns in `schema` order).
#[derive(Debug, Queryable)]
pub(crate) struct UserRow {
    pub(crate) id: DbUuid,
    pub(crate) email: String,
    pub(crate) password_hash: String,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let email =
            Email::parse(&row.email).map_err(|err| StoreError::invalid_row("users.email", err))?;
        Ok(User {
            id: UserId::from_uuid(row.id.0),
            email,
            password_hash: row.password_hash,
            created_at: task_domain::normalize(row.created_at),
            updated_at: task_domain::normalize(row.updated_at),
        })
    }
}

/// A `tasks` row (columns in `schema` order).
#[derive(Debug, Queryable)]
pub(crate) struct TaskRow {
    pub(crate) id: DbUuid,
    pub(crate) user_id: DbUuid,
    pub(crate) title: String,
    pub(crate) completed: bool,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) due_date: Option<OffsetDateTime>,
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Self, Self::Error> {
        let title = TaskTitle::parse(&row.title)
            .map_err(|err| StoreError::invalid_row("tasks.title", err))?;
        Ok(Task::from_parts(TaskParts {
            id: TaskId::from_uuid(row.id.0),
            user_id: UserId::from_uuid(row.user_id.0),
            title,
            completed: row.completed,
            due_date: row.due_date.map(DueDate::new),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }))
    }
}

/// Converts loaded task rows, failing on the first row that breaks a domain rule.
pub(crate) fn into_tasks(rows: Vec<TaskRow>) -> Result<Vec<Task>, StoreError> {
    rows.into_iter().map(Task::try_from).collect()
}

/// An `event_outbox` row (columns in `schema` order).
#[derive(Debug, Queryable)]
pub(crate) struct OutboxRow {
    pub(crate) id: DbUuid,
    pub(crate) seq: i64,
    pub(crate) topic: String,
    pub(crate) partition_key: String,
    pub(crate) payload: String,
    pub(crate) attempts: i32,
    pub(crate) next_attempt_at: OffsetDateTime,
    pub(crate) claimed_until: Option<OffsetDateTime>,
    pub(crate) last_error: Option<String>,
    pub(crate) failed_at: Option<OffsetDateTime>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) traceparent: Option<String>,
    pub(crate) lease_id: Option<DbUuid>,
}

impl From<OutboxRow> for OutboxMessage {
    fn from(row: OutboxRow) -> Self {
        OutboxMessage {
            id: row.id.0,
            seq: row.seq,
            topic: row.topic,
            partition_key: row.partition_key,
            payload: row.payload,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            next_attempt_at: row.next_attempt_at,
            claimed_until: row.claimed_until,
            last_error: row.last_error,
            failed_at: row.failed_at,
            created_at: row.created_at,
            traceparent: row.traceparent,
            lease_id: row.lease_id.map(|lease| lease.0),
        }
    }
}
