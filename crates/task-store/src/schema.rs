//! Table definitions, one module per backend: the same tables and column names, backend-specific SQL types.
//!
//! Query code is written once against the column names and expanded once per backend (see `store.rs`), so
//! both modules must declare the same columns in the same order as the row types in `models.rs`.

/// PostgreSQL: native `UUID` and `TIMESTAMPTZ`.
pub(crate) mod pg {
    diesel::table! {
        users (id) {
            id -> Uuid,
            email -> Varchar,
            password_hash -> Varchar,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        tasks (id) {
            id -> Uuid,
            user_id -> Uuid,
            title -> Varchar,
            completed -> Bool,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            due_date -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        event_outbox (id) {
            id -> Uuid,
            seq -> BigInt,
            topic -> Text,
            partition_key -> Text,
            payload -> Text,
            attempts -> Integer,
            next_attempt_at -> Timestamptz,
            claimed_until -> Nullable<Timestamptz>,
            last_error -> Nullable<Text>,
            failed_at -> Nullable<Timestamptz>,
            created_at -> Timestamptz,
            traceparent -> Nullable<Text>,
            lease_id -> Nullable<Uuid>,
        }
    }

    diesel::joinable!(tasks -> users (user_id));
    diesel::allow_tables_to_appear_in_same_query!(users, tasks, event_outbox);
}

/// SQLite: UUIDs as hyphenated `TEXT`, instants as diesel's `TimestamptzSqlite` text.
pub(crate) mod sqlite {
    diesel::table! {
        use diesel::sql_types::*;

        users (id) {
            id -> Text,
            email -> Text,
            password_hash -> Text,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;

        tasks (id) {
            id -> Text,
            user_id -> Text,
            title -> Text,
            completed -> Bool,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
            due_date -> Nullable<TimestamptzSqlite>,
        }
    }

    diesel::table! {
        use diesel::sql_types::*;

        event_outbox (id) {
            id -> Text,
            seq -> BigInt,
            topic -> Text,
            partition_key -> Text,
            payload -> Text,
            attempts -> Integer,
            next_attempt_at -> TimestamptzSqlite,
            claimed_until -> Nullable<TimestamptzSqlite>,
            last_error -> Nullable<Text>,
            failed_at -> Nullable<TimestamptzSqlite>,
            created_at -> TimestamptzSqlite,
            traceparent -> Nullable<Text>,
            lease_id -> Nullable<Text>,
        }
    }

    diesel::joinable!(tasks -> users (user_id));
    diesel::allow_tables_to_appear_in_same_query!(users, tasks, event_outbox);
}
