//! Persistence for pakaura tasks: diesel-async on PostgreSQL (production) and embedded SQLite (the default).
#![doc = include_str!("../README.md")]

mod config;
mod error;
mod migrations;
mod models;
mod outbox;
mod pool;
mod schema;
mod sequence;
mod store;
mod users;

#[cfg(test)]
mod tests;

pub use crate::config::{
    Backend, DEFAULT_DATABASE_URL, Database, DbConfig, MappedUrl, map_sqlalchemy_url,
};
pub use crate::error::{BoxError, InvalidRow, OpenError, StoreError};
pub use crate::migrations::{
    MIGRATION_LOCK_KEY, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, embedded_versions,
    pending_migrations, pending_of, run_pending, run_pending_locked,
};
pub use crate::outbox::{
    Delivered, FailureOutcome, NewOutboxMessage, OutboxBacklog, OutboxClaim, OutboxCounts,
    OutboxFilter, OutboxMessage, OutboxStatus, Settled,
};
pub use crate::sequence::{EventSequence, Locked, SequenceExhausted, format_sequence};
pub use crate::store::{PoolStatus, Staged, Store};
pub use crate::users::{NewUser, User};
