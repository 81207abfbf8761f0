//! Test databases: a temporary SQLite file, or a fresh PostgreSQL database cloned from a migrated template.

use std::path::PathBuf;
use std::sync::LazyLock;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use slog::{Logger, o};
use task_store::{DbConfig, Store};

/// Prefix of the per-test databases; leftovers from crashed runs are dropped when the template is made.
const TEST_DB_PREFIX: &str = "task_store_test_";
const TEMPLATE_DB: &str = "task_store_template";

pub(crate) fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A store on a database of its own, removed by [`TestDb::finish`].
pub(crate) struct TestDb {
    pub(crate) store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A migrated SQLite file in a fresh temporary folder.
    pub(crate) async fn sqlite() -> Self {
        let dir =
            std::env::temp_dir().join(format!("task-store-test-{}", uuid::Uuid::new_v4().simple()));
        let config = small_pool(format!("sqlite://{}", dir.join("test.db").display()));
        let store = Store::open(&config, &logger())
            .await
            .expect("open SQLite store");
        Self {
            store,
            cleanup: Cleanup::Sqlite(TempDir(dir)),
        }
    }

    /// A fresh PostgreSQL database cloned from the migrated template, or `None` (after saying so) when
    /// `TEST_DATABASE_URL` is not set.
    pub(crate) async fn postgres() -> Option<Self> {
        let admin_url = test_database_url()?;
        if let Err(err) = &*TEMPLATE {
            panic!("cannot prepare the PostgreSQL template database: {err}");
        }
        let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
        admin_execute(
            &admin_url,
            &format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"),
        )
        .await
        .expect("create the test database");
        let config = small_pool(with_database(&admin_url, &name));
        let store = Store::open(&config, &logger())
            .await
            .expect("open PostgreSQL store");
        Some(Self {
            store,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// The PostgreSQL database name, if this is one.
    pub(crate) fn postgres_name(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Postgres { name, .. } => Some(name),
            Cleanup::Sqlite(_) => None,
        }
    }

    /// Closes the store and removes its database (best effort).
    pub(crate) async fn finish(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { admin_url, name } => {
                let _ = admin_execute(
                    &admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await;
            }
        }
    }
}

/// A folder removed when dropped, also when the test panics.
pub(crate) struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn small_pool(url: String) -> DbConfig {
    DbConfig {
        pool_size: 4,
        ..DbConfig::with_url(url)
    }
}

/// `TEST_DATABASE_URL`, or `None` after printing why the test is skipped; under `CI` a missing URL fails.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so on the test output"
)]
pub(crate) fn test_database_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "TEST_DATABASE_URL must be set when CI is set: the PostgreSQL contract tests cannot be skipped"
            )
        }
        _ => {
            eprintln!(
                "skipped: TEST_DATABASE_URL is not set, so the PostgreSQL contract tests do not run"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `name`.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

pub(crate) async fn admin_execute(admin_url: &str, sql: &str) -> Result<(), String> {
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(|err| err.to_string())?;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .map_err(|err| err.to_string())?;
    Ok(())
}

/// The migrated template, made once per test process on a thread of its own (each test has its own runtime).
static TEMPLATE: LazyLock<Result<(), String>> = LazyLock::new(|| {
    let admin_url = std::env::var("TEST_DATABASE_URL").map_err(|err| err.to_string())?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(prepare_template(&admin_url))
    })
    .join()
    .map_err(|_| "the template thread panicked".to_owned())?
});

async fn prepare_template(admin_url: &str) -> Result<(), String> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(|err| err.to_string())?;
    let leftovers: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE '{TEST_DB_PREFIX}%'"
    ))
    .load(&mut conn)
    .await
    .map_err(|err| err.to_string())?;
    for leftover in leftovers {
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            leftover.datname
        ))
        .execute(&mut conn)
        .await
        .map_err(|err| err.to_string())?;
    }
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"
    ))
    .execute(&mut conn)
    .await
    .map_err(|err| err.to_string())?;
    diesel::sql_query(format!("CREATE DATABASE {TEMPLATE_DB}"))
        .execute(&mut conn)
        .await
        .map_err(|err| err.to_string())?;
    drop(conn);
    // The migration connection is closed when run_pending returns, so the template can be cloned.
    task_store::run_pending(
        &DbConfig::with_url(with_database(admin_url, TEMPLATE_DB)),
        &logger(),
    )
    .await
    .map_err(|err| format!("{err}: {:?}", std::error::Error::source(&err)))?;
    Ok(())
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:1/postgres", "x"),
        "postgres://u@h:1/x"
    );
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
}
