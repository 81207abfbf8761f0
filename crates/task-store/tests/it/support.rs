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

/// A store on a database of its own, removed by [`TestDb::finish`] or, when the test fails before that, on drop.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    /// Declared after the store, so its pool is closed when the database is removed.
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(TempDir),
    Postgres(DroppedDatabase),
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
        let database = DroppedDatabase::new(&admin_url, &name);
        let config = small_pool(with_database(&admin_url, &name));
        let store = Store::open(&config, &logger())
            .await
            .expect("open PostgreSQL store");
        Some(Self {
            store,
            cleanup: Cleanup::Postgres(database),
        })
    }

    /// The PostgreSQL database name, if this is one.
    pub(crate) fn postgres_name(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Postgres(database) => Some(&database.name),
            Cleanup::Sqlite(_) => None,
        }
    }

    /// Closes the store and removes its database (best effort).
    pub(crate) async fn finish(self) {
        let Self { store, cleanup } = self;
        drop(store);
        match cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres(database) => database.drop_now().await,
        }
    }
}

/// A PostgreSQL test database, dropped with `DROP DATABASE … WITH (FORCE)` (which also ends connections still
/// open) by [`DroppedDatabase::drop_now`] or, when the test fails before that, on drop.
pub(crate) struct DroppedDatabase {
    admin_url: String,
    name: String,
    dropped: bool,
}

impl DroppedDatabase {
    /// Takes charge of the existing database `name` on the server of `admin_url`.
    pub(crate) fn new(admin_url: &str, name: &str) -> Self {
        Self {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            dropped: false,
        }
    }

    fn statement(&self) -> String {
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
    }

    /// Drops the database now (best effort; a failure is reported on the test output).
    pub(crate) async fn drop_now(mut self) {
        self.dropped = true;
        report(
            &self.name,
            admin_execute(&self.admin_url, &self.statement()).await,
        );
    }
}

impl Drop for DroppedDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop may run inside the test's runtime, which cannot be blocked on: use a thread and a runtime of its own.
        let admin_url = self.admin_url.clone();
        let sql = self.statement();
        let res = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?
                .block_on(admin_execute(&admin_url, &sql))
        })
        .join()
        .unwrap_or_else(|_| Err("the drop thread panicked".to_owned()));
        report(&self.name, res);
    }
}

#[expect(
    clippy::print_stderr,
    reason = "a database left behind is reported on the test output"
)]
fn report(name: &str, res: Result<(), String>) {
    if let Err(err) = res {
        eprintln!("could not drop the test database {name}: {err}");
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

/// A new empty database (no migrations) on the server of `admin_url`: its name and the guard that drops it.
/// Waits for the template first: making it sweeps the `task_store_test_*` leftovers of killed runs, which would
/// otherwise drop a database made here meanwhile.
pub(crate) async fn empty_database(admin_url: &str) -> (String, DroppedDatabase) {
    if let Err(err) = &*TEMPLATE {
        panic!("preparing the template database failed: {err}");
    }
    let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
    admin_execute(admin_url, &format!("CREATE DATABASE {name}"))
        .await
        .expect("create the test database");
    let database = DroppedDatabase::new(admin_url, &name);
    (name, database)
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
