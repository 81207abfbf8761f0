//! Persistence for pakaura tasks: diesel-async on PostgreSQL (production) and embedded SQLite (the default).
#![doc = include_str!("../README.md")]

mod config;
mod error;
mod migrations;
mod models;
mod pool;
mod rows;
mod schema;
mod sequence;
mod store;

#[cfg(test)]
mod tests;

pub use crate::config::{
    Backend, DEFAULT_DATABASE_URL, Database, DbConfig, MappedUrl, map_sqlalchemy_url,
};
pub use crate::error::{InvalidRow, OpenError, StoreError};
pub use crate::migrations::{
    MIGRATION_LOCK_KEY, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, embedded_versions,
    pending_migrations, pending_of, run_pending, run_pending_locked,
};
pub use crate::models::{
    Delivered, FailureOutcome, NewOutboxMessage, NewUser, OutboxBacklog, OutboxClaim, OutboxFilter,
    OutboxMessage, OutboxStatus, Settled, User,
};
pub use crate::sequence::{EventSequence, Locked, SequenceExhausted, format_sequence};
pub use crate::store::{Staged, Store};

// Methods and types only tests and benchmarks use.
#[cfg(feature = "test-util")]
pub use crate::models::OutboxCounts;
#[cfg(feature = "test-util")]
pub use crate::store::PoolStatus;
