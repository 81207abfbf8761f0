//! `DbConfig`: which database to use and how to pool connections to it.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::OpenError;

/// The database URL used when none is configured (SPEC §5): an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://pakaura.db";

/// Database settings. The binary fills `url` from `DATABASE_URL`; every other field has a default, so a
/// configuration may name only the URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// `postgres://…` / `postgresql://…` selects PostgreSQL, `sqlite://PATH` an SQLite file (created when
    /// missing; `sqlite:///abs/path.db` for an absolute path); SQLAlchemy's forms (`postgresql+asyncpg://…`) are
    /// mapped by [`map_sqlalchemy_url`].
    #[serde(default = "default_url")]
    pub url: String,
    /// Maximum connections in the pool; at least 2.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a caller waits for a free connection before getting `StoreError::Unavailable`.
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
    /// How long opening a new connection may take.
    #[serde(default = "default_create_timeout_ms")]
    pub create_timeout_ms: u64,
    /// How long checking a pooled connection before reuse may take.
    #[serde(default = "default_recycle_timeout_ms")]
    pub recycle_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of every pooled connection; 0 disables it.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// SQLite `busy_timeout`: how long a write waits for another writer's lock.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// PostgreSQL `application_name`, shown in `pg_stat_activity`.
    #[serde(default = "default_application_name")]
    pub application_name: String,
}

fn default_url() -> String {
    DEFAULT_DATABASE_URL.to_owned()
}
fn default_pool_size() -> usize {
    10
}
fn default_wait_timeout_ms() -> u64 {
    5_000
}
fn default_create_timeout_ms() -> u64 {
    5_000
}
fn default_recycle_timeout_ms() -> u64 {
    2_000
}
fn default_statement_timeout_ms() -> u64 {
    10_000
}
fn default_busy_timeout_ms() -> u64 {
    5_000
}
fn default_application_name() -> String {
    "pakaura-task-api".to_owned()
}

impl DbConfig {
    /// The defaults with the given URL.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: default_pool_size(),
            wait_timeout_ms: default_wait_timeout_ms(),
            create_timeout_ms: default_create_timeout_ms(),
            recycle_timeout_ms: default_recycle_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            busy_timeout_ms: default_busy_timeout_ms(),
            application_name: default_application_name(),
        }
    }

    /// Which backend and where, or which field is wrong.
    pub fn database(&self) -> Result<Database, OpenError> {
        if self.pool_size < 2 {
            return Err(OpenError::Config {
                key: "pool_size",
                reason: "must be at least 2".to_owned(),
            });
        }
        for (key, value) in [
            ("wait_timeout_ms", self.wait_timeout_ms),
            ("create_timeout_ms", self.create_timeout_ms),
            ("recycle_timeout_ms", self.recycle_timeout_ms),
        ] {
            if value == 0 {
                return Err(OpenError::Config {
                    key,
                    reason: "must be greater than 0".to_owned(),
                });
            }
        }
        Database::parse(&self.url)
    }

    pub(crate) fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
    pub(crate) fn create_timeout(&self) -> Duration {
        Duration::from_millis(self.create_timeout_ms)
    }
    pub(crate) fn recycle_timeout(&self) -> Duration {
        Duration::from_millis(self.recycle_timeout_ms)
    }
}

impl Default for DbConfig {
    /// The embedded SQLite default ([`DEFAULT_DATABASE_URL`]).
    fn default() -> Self {
        Self::with_url(DEFAULT_DATABASE_URL)
    }
}

/// A parsed database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A PostgreSQL connection URL (kept whole: it may hold a password, so `Debug` hides it).
    Postgres(String),
    /// The path of an SQLite database file.
    Sqlite(PathBuf),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("Postgres([redacted])"),
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

/// A `DATABASE_URL` in one of SQLAlchemy's forms, mapped to ours (see [`map_sqlalchemy_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct MappedUrl {
    /// The URL in our form (`postgresql://…`, `sqlite://PATH`); may hold a password.
    pub url: String,
    /// The SQLAlchemy dialect and driver it was written with, for the log: `postgresql+asyncpg`.
    pub sqlalchemy_form: String,
}

impl std::fmt::Debug for MappedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedUrl")
            .field("url", &"[redacted]")
            .field("sqlalchemy_form", &self.sqlalchemy_form)
            .finish()
    }
}

/// Maps the SQLAlchemy URL forms the original service used to ours; `None` for a URL not in such a form.
///
/// * `postgresql+asyncpg://…`, `postgresql+psycopg://…`, `postgresql+psycopg2://…` (any `+driver`, also after
///   `postgres`) become `postgresql://…`. asyncpg's `ssl=<mode>` query parameter becomes libpq's
///   `sslmode=<mode>` (`true` is `require`, `false` is `disable`).
/// * `sqlite+aiosqlite:///relative.db` (three slashes: relative, SQLAlchemy's rule) becomes `sqlite://relative.db`
///   and `sqlite+aiosqlite:////abs/path.db` (four: absolute) becomes `sqlite:///abs/path.db`; plain
///   `sqlite:///…` keeps our meaning.
pub fn map_sqlalchemy_url(url: &str) -> Option<MappedUrl> {
    let (scheme, rest) = url.split_once("://")?;
    let (dialect, driver) = scheme.split_once('+')?;
    if driver.is_empty() {
        return None;
    }
    let mapped = match dialect {
        "postgres" | "postgresql" => {
            let rest = match rest.split_once('?') {
                Some((base, query)) => {
                    let params: Vec<String> = query
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|param| match param.split_once('=') {
                            Some(("ssl", "true")) => "sslmode=require".to_owned(),
                            Some(("ssl", "false")) => "sslmode=disable".to_owned(),
                            Some(("ssl", mode)) => format!("sslmode={mode}"),
                            _ => param.to_owned(),
                        })
                        .collect();
                    if params.is_empty() {
                        base.to_owned()
                    } else {
                        format!("{base}?{}", params.join("&"))
                    }
                }
                None => rest.to_owned(),
            };
            format!("postgresql://{rest}")
        }
        // SQLAlchemy: `sqlite:///x.db` is relative, `sqlite:////x.db` absolute (the host part is empty).
        "sqlite" => format!("sqlite://{}", rest.strip_prefix('/').unwrap_or(rest)),
        _ => return None,
    };
    Some(MappedUrl {
        url: mapped,
        sqlalchemy_form: scheme.to_owned(),
    })
}

impl Database {
    /// Parses `postgres://…`, `postgresql://…`, `sqlite://PATH` (or `sqlite:PATH`), and the SQLAlchemy forms of
    /// [`map_sqlalchemy_url`].
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        if let Some(mapped) = map_sqlalchemy_url(url) {
            return Self::parse(&mapped.url);
        }
        let invalid = |reason: &str| OpenError::Config {
            key: "url",
            reason: reason.to_owned(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            if path.is_empty() || path == ":memory:" {
                return Err(invalid(
                    "an SQLite URL needs a file path, as in sqlite://pakaura.db",
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err(invalid(
            "must start with postgres://, postgresql://, sqlite:// or a SQLAlchemy form such as \
            postgresql+asyncpg://",
        ))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// The database engine behind a [`crate::Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL through a deadpool of `AsyncPgConnection`s.
    Postgres,
    /// SQLite (bundled) through a deadpool of `SyncConnectionWrapper<SqliteConnection>`s.
    Sqlite,
}

impl Backend {
    /// `"postgres"` or `"sqlite"`, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}
