//! `StoreError`: database failures classified so callers can answer 404 / 409 / 422 / 503 / 500.

use std::error::Error as StdError;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;

/// A boxed error source.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// | variant | HTTP |
/// |---|---|
/// | `NotFound` | 404 |
/// | `UniqueViolation` | 409 |
/// | `CheckViolation` | 422 |
/// | `ForeignKeyViolation` | 404 or 409 (the referenced row is gone) |
/// | `Unavailable` | 503 |
/// | `Other` | 500 |
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("record not found")]
    NotFound,
    /// A unique constraint rejected the write (on `users`: the email is taken). `constraint` is the
    /// PostgreSQL constraint name (`users_email_key`) or SQLite's column list (`users.email`).
    #[error("unique constraint {constraint} violated")]
    UniqueViolation {
        /// The constraint, as the backend names it.
        constraint: String,
    },
    /// A CHECK or NOT NULL constraint rejected the value.
    #[error("check constraint {constraint} violated")]
    CheckViolation {
        /// The constraint, as the backend names it.
        constraint: String,
    },
    /// A foreign key rejected the write (for example a task for a user that no longer exists).
    #[error("foreign key {constraint} violated")]
    ForeignKeyViolation {
        /// The constraint, as the backend names it.
        constraint: String,
    },
    /// The database cannot be reached or is overloaded: pool timeout, refused or closed connection, statement
    /// timeout, SQLite busy.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug or a stored row that breaks a domain rule.
    #[error("database operation failed")]
    Other(#[source] BoxError),
}

/// A stored value that does not satisfy a domain rule.
#[derive(Debug, thiserror::Error)]
#[error("stored {column} is invalid")]
pub struct InvalidRow {
    column: &'static str,
    #[source]
    source: BoxError,
}

impl StoreError {
    /// The HTTP status class this error maps to, for logs and metrics: `"not_found"`, `"conflict"`,
    /// `"invalid"`, `"unavailable"` or `"internal"`.
    pub fn class(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::UniqueViolation { .. } | Self::ForeignKeyViolation { .. } => "conflict",
            Self::CheckViolation { .. } => "invalid",
            Self::Unavailable(_) => "unavailable",
            Self::Other(_) => "internal",
        }
    }

    /// Whether retrying later may succeed (the database was unreachable or busy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn invalid_row(column: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Other(Box::new(InvalidRow {
            column,
            source: source.into(),
        }))
    }
}

impl From<DieselError> for StoreError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(kind, ref info) => {
                let constraint = || constraint_name(info.constraint_name(), info.message());
                match kind {
                    DatabaseErrorKind::UniqueViolation => Self::UniqueViolation {
                        constraint: constraint(),
                    },
                    DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                        Self::CheckViolation {
                            constraint: constraint(),
                        }
                    }
                    DatabaseErrorKind::ForeignKeyViolation => Self::ForeignKeyViolation {
                        constraint: constraint(),
                    },
                    DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand => Self::Unavailable(Box::new(err)),
                    _ if is_transient(info.message()) => Self::Unavailable(Box::new(err)),
                    _ => Self::Other(Box::new(err)),
                }
            }
            other => Self::Other(Box::new(other)),
        }
    }
}

impl From<PoolError> for StoreError {
    /// Every pool failure means no connection could be had: timeout, refused, closed pool, failed setup.
    fn from(err: PoolError) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

/// The constraint name PostgreSQL reports, or for SQLite (which reports none) what follows the colon of
/// `UNIQUE constraint failed: users.email` / `CHECK constraint failed: tasks_title_not_blank`, else `unnamed`
/// (SQLite's foreign key errors name nothing).
fn constraint_name(reported: Option<&str>, message: &str) -> String {
    if let Some(name) = reported {
        return name.to_owned();
    }
    match message.split_once("failed: ") {
        Some((_, rest)) => rest.trim().to_owned(),
        None => "unnamed".to_owned(),
    }
}

/// Messages of failures that go away on their own: PostgreSQL's statement timeout and shutdowns, SQLite's
/// lock contention after `busy_timeout`.
fn is_transient(message: &str) -> bool {
    const TRANSIENT: [&str; 5] = [
        "statement timeout",
        "terminating connection",
        "the database system is",
        "database is locked",
        "database table is locked",
    ];
    TRANSIENT.iter().any(|needle| message.contains(needle))
}

/// Errors of opening the store or running migrations.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is unusable; `key` names the `DbConfig` field.
    #[error("invalid database setting {key}: {reason}")]
    Config {
        /// The field of `DbConfig`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection pool could not be built.
    #[error("cannot build the connection pool")]
    Pool(#[source] BoxError),
    /// The first connection failed.
    #[error("cannot connect to the database")]
    Connect(#[source] StoreError),
    /// Applying migrations failed.
    #[error("cannot run database migrations")]
    Migrate(#[source] BoxError),
}
