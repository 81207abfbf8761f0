//! Unit tests: URL parsing and error classification (the contract suite in `tests/it` covers the rest).

use std::path::PathBuf;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::{Backend, Database, DbConfig, OpenError, StoreError};

#[test]
fn database_urls_select_the_backend() {
    #[track_caller]
    fn check(url: &str, expected: Option<Database>) {
        let parsed = Database::parse(url);
        match (parsed, expected) {
            (Ok(parsed), Some(expected)) => assert_eq!(parsed, expected),
            (Err(OpenError::Config { key: "url", .. }), None) => {}
            (other, expected) => panic!("{url}: got {other:?}, expected {expected:?}"),
        }
    }
    let pg = |url: &str| Some(Database::Postgres(url.to_owned()));
    let file = |path: &str| Some(Database::Sqlite(PathBuf::from(path)));
    check(
        "postgres://u:p@db:5432/pakaura",
        pg("postgres://u:p@db:5432/pakaura"),
    );
    check(
        "postgresql://db/pakaura?sslmode=disable",
        pg("postgresql://db/pakaura?sslmode=disable"),
    );
    check("sqlite://pakaura.db", file("pakaura.db"));
    check(
        "sqlite:///var/lib/pakaura/tasks.db",
        file("/var/lib/pakaura/tasks.db"),
    );
    check("sqlite:data/tasks.db", file("data/tasks.db"));
    check("sqlite://tasks.db?mode=rwc", file("tasks.db"));
    check("sqlite://", None);
    check("sqlite::memory:", None);
    check("mysql://db/pakaura", None);
    check("pakaura.db", None);
}

#[test]
fn the_original_services_sqlalchemy_urls_are_mapped() {
    use crate::map_sqlalchemy_url;
    let pg = |url: &str| Database::Postgres(url.to_owned());
    for (url, expected, form) in [
        (
            "postgresql+asyncpg://user:pw@db.neon.tech:5432/todo",
            pg("postgresql://user:pw@db.neon.tech:5432/todo"),
            "postgresql+asyncpg",
        ),
        (
            "postgresql+asyncpg://u:p@db/todo?ssl=require",
            pg("postgresql://u:p@db/todo?sslmode=require"),
            "postgresql+asyncpg",
        ),
        (
            "postgresql+asyncpg://u@db/todo?ssl=true&application_name=x",
            pg("postgresql://u@db/todo?sslmode=require&application_name=x"),
            "postgresql+asyncpg",
        ),
        (
            "postgresql+psycopg://u@db/todo?sslmode=verify-full",
            pg("postgresql://u@db/todo?sslmode=verify-full"),
            "postgresql+psycopg",
        ),
        (
            "postgres+psycopg2://u@db/todo",
            pg("postgresql://u@db/todo"),
            "postgres+psycopg2",
        ),
        // SQLAlchemy: three slashes are a relative path, four an absolute one.
        (
            "sqlite+aiosqlite:///./todo.db",
            Database::Sqlite(PathBuf::from("./todo.db")),
            "sqlite+aiosqlite",
        ),
        (
            "sqlite+aiosqlite:///todo.db",
            Database::Sqlite(PathBuf::from("todo.db")),
            "sqlite+aiosqlite",
        ),
        (
            "sqlite+aiosqlite:////var/lib/todo.db",
            Database::Sqlite(PathBuf::from("/var/lib/todo.db")),
            "sqlite+aiosqlite",
        ),
    ] {
        assert_eq!(Database::parse(url).unwrap(), expected, "{url}");
        let mapped = map_sqlalchemy_url(url).unwrap();
        assert_eq!(mapped.sqlalchemy_form, form);
        assert!(!format!("{mapped:?}").contains("pw"), "Debug hides the URL");
    }
    for ours in [
        "postgresql://db/x",
        "postgres://db/x",
        "sqlite://x.db",
        "sqlite:///abs.db",
    ] {
        assert!(map_sqlalchemy_url(ours).is_none(), "{ours}");
    }
    assert!(Database::parse("mysql+aiomysql://db/x").is_err());
    assert!(Database::parse("postgresql+://db/x").is_err());
}

#[test]
fn the_default_is_the_embedded_database() {
    let config = DbConfig::default();
    assert_eq!(config.database().unwrap().backend(), Backend::Sqlite);
    assert_eq!(config.url, "sqlite://pakaura.db");
    assert!(config.pool_size >= 2);
}

#[test]
fn postgres_urls_are_not_printed_by_debug() {
    let database = Database::parse("postgres://user:secret@db/pakaura").unwrap();
    assert!(!format!("{database:?}").contains("secret"));
}

#[test]
fn database_errors_are_classified() {
    #[track_caller]
    fn check(err: DieselError, expected: &str) {
        let classified = StoreError::from(err);
        assert_eq!(format!("{} / {classified}", classified.class()), expected);
    }
    let db = |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
    check(DieselError::NotFound, "not_found / record not found");
    check(
        db(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: users.email",
        ),
        "conflict / unique constraint users.email violated",
    );
    check(
        db(
            DatabaseErrorKind::CheckViolation,
            "CHECK constraint failed: tasks_title_not_blank",
        ),
        "invalid / check constraint tasks_title_not_blank violated",
    );
    check(
        db(
            DatabaseErrorKind::NotNullViolation,
            "NOT NULL constraint failed: tasks.title",
        ),
        "invalid / check constraint tasks.title violated",
    );
    check(
        db(
            DatabaseErrorKind::ForeignKeyViolation,
            "FOREIGN KEY constraint failed",
        ),
        "conflict / foreign key unnamed violated",
    );
    check(
        db(DatabaseErrorKind::ClosedConnection, "connection closed"),
        "unavailable / database unavailable",
    );
    check(
        db(DatabaseErrorKind::UnableToSendCommand, "broken pipe"),
        "unavailable / database unavailable",
    );
    check(
        db(DatabaseErrorKind::Unknown, "database is locked"),
        "unavailable / database unavailable",
    );
    check(
        db(
            DatabaseErrorKind::Unknown,
            "canceling statement due to statement timeout",
        ),
        "unavailable / database unavailable",
    );
    check(
        db(DatabaseErrorKind::Unknown, "syntax error"),
        "internal / database operation failed",
    );
    check(
        DieselError::RollbackTransaction,
        "internal / database operation failed",
    );
}

#[test]
fn the_source_of_an_error_is_not_repeated_in_its_message() {
    let err = StoreError::from(DieselError::DatabaseError(
        DatabaseErrorKind::Unknown,
        Box::new("database is locked".to_owned()),
    ));
    assert_eq!(err.to_string(), "database unavailable");
    let source = std::error::Error::source(&err).expect("the diesel error is the source");
    assert_eq!(source.to_string(), "database is locked");
}
