//! Test databases for pakaura's tests and load-bench: PostgreSQL databases cloned from a template migrated once
//! per run, empty ones, and temporary SQLite folders.
#![doc = include_str!("../README.md")]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;
use url::Url;

#[cfg(test)]
mod tests;

/// The name prefix of every database this crate makes: `pakaura_test_<pid>_<suffix>`, where `<pid>` is the id of
/// the test process that made it (see [`sweep`]).
pub const PREFIX: &str = "pakaura_test_";

/// A migration error, whatever the migration step's own error type.
type MigrateError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`Migrate`] step returns.
pub type MigrateFuture = Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send>>;

/// The migration step of a [`Template`]: migrates the (empty) database at the given URL. A plain function, so
/// this crate needs no dependency on the crate that owns the migrations.
pub type Migrate = fn(String) -> MigrateFuture;

/// Why preparing a test database failed. Messages never contain a URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL does not parse.
    #[error("invalid database URL")]
    Url(#[from] url::ParseError),
    /// The server URL cannot name a database (such as `mailto:x`).
    #[error("the database URL has no path to name a database with")]
    NotAServerUrl,
    /// No connection to the server.
    #[error("cannot connect to PostgreSQL")]
    Connect(#[source] diesel::ConnectionError),
    /// A statement failed.
    #[error("`{sql}` failed")]
    Query {
        /// The statement.
        sql: String,
        /// The server's answer.
        #[source]
        source: diesel::result::Error,
    },
    /// The template's migration step failed.
    #[error("migrating the template database failed")]
    Migrate(#[source] MigrateError),
}

/// `TEST_DATABASE_URL`: the URL of a PostgreSQL role that may create databases. When it is missing or empty the
/// PostgreSQL variant of a test is skipped (`None`, after a line saying so), except under `CI`, where a missing
/// PostgreSQL is a failure: the test panics.
#[expect(
    clippy::print_stdout,
    reason = "the skip line is what the test reports"
)]
pub fn admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "TEST_DATABASE_URL must be set when CI is set: the PostgreSQL tests cannot be skipped"
        ),
        _ => {
            println!(
                "skipped: TEST_DATABASE_URL is not set, so the PostgreSQL variant does not run"
            );
            None
        }
    }
}

/// `server_url` naming the database `name` instead of its own: user, password, host, port and query (such as
/// `?sslmode=disable` or `?host=/run/postgresql`) stay as they are.
pub fn database_url(server_url: &str, name: &str) -> Result<String, Error> {
    let mut url = Url::parse(server_url)?;
    if url.cannot_be_a_base() {
        return Err(Error::NotAServerUrl);
    }
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Runs one statement on a connection of its own to `admin_url`.
pub async fn execute(admin_url: &str, sql: &str) -> Result<(), Error> {
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(Error::Connect)?;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .map_err(|source| Error::Query {
            sql: sql.to_owned(),
            source,
        })?;
    Ok(())
}

/// Creates the empty database `name` on the server of `admin_url`.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), Error> {
    execute(admin_url, &format!("CREATE DATABASE {}", identifier(name))).await
}

/// Drops the database `name` if it exists, ending the connections still open to it (`WITH (FORCE)`).
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), Error> {
    execute(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", identifier(name)),
    )
    .await
}

/// `name` quoted as a PostgreSQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A fresh database name of this process.
fn fresh_name() -> String {
    format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The id of the process that made the database `name`, if this crate named it.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('_')?;
    pid.parse().ok()
}

/// Whether process `pid` still runs on this machine; `true` when that cannot be told (no `/proc`).
fn process_runs(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Drops the databases that test processes which no longer run left behind (a killed or crashed run never drops
/// its own), and returns how many. Only databases named [`PREFIX`]`<pid>_…` whose process is gone are dropped:
/// those of this process and of other test runs going on at the same time against the same server are kept.
pub async fn sweep(admin_url: &str) -> Result<usize, Error> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let sql = format!(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE '{}%'",
        PREFIX.replace('_', "\\_")
    );
    let mut conn = AsyncPgConnection::establish(admin_url)
        .await
        .map_err(Error::Connect)?;
    let names: Vec<Name> = diesel::sql_query(&sql)
        .load(&mut conn)
        .await
        .map_err(|source| Error::Query { sql, source })?;
    drop(conn);
    let mut dropped = 0;
    for name in names {
        if owner_pid(&name.datname).is_some_and(|pid| !process_runs(pid)) {
            drop_database(admin_url, &name.datname).await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// [`sweep`], once per process.
async fn sweep_once(admin_url: &str) -> Result<(), Error> {
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    SWEPT
        .get_or_try_init(|| async { sweep(admin_url).await.map(drop) })
        .await
        .map(|_| ())
}

/// The migrated template database of this process, from which [`TestDatabase::from_template`] clones one
/// database per test (`CREATE DATABASE … TEMPLATE`, much faster than migrating each).
///
/// Made once per process, on first use: leftovers of processes that are gone are swept first, then
/// `pakaura_test_<pid>_template` is created and migrated. It is not dropped at exit (nothing runs then); the next
/// run's sweep drops it. Each process has its own, so concurrent runs never clone a template another run is
/// still migrating, and a branch with other migrations never sees this one's.
#[derive(Debug)]
pub struct Template {
    admin_url: String,
    name: String,
}

impl Template {
    /// This process's template on the server of `admin_url`, made and migrated with `migrate` on the first call.
    /// Later calls return the same template whatever they pass: a test process has one schema.
    pub async fn get(admin_url: &str, migrate: Migrate) -> Result<&'static Template, Error> {
        static TEMPLATE: OnceCell<Template> = OnceCell::const_new();
        TEMPLATE
            .get_or_try_init(|| Template::create(admin_url, migrate))
            .await
    }

    async fn create(admin_url: &str, migrate: Migrate) -> Result<Template, Error> {
        sweep_once(admin_url).await?;
        let name = format!("{PREFIX}{}_template", std::process::id());
        // An earlier attempt of this process may have failed half-way.
        drop_database(admin_url, &name).await?;
        create_database(admin_url, &name).await?;
        // The migration's connections must be closed when it returns: a template with open connections cannot be
        // cloned.
        migrate(database_url(admin_url, &name)?)
            .await
            .map_err(Error::Migrate)?;
        Ok(Template {
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// The template's database name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A PostgreSQL database of one test, dropped (`DROP DATABASE … WITH (FORCE)`, which also ends the connections
/// still open to it) by [`TestDatabase::drop_now`] or, when the test fails before that, on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TestDatabase {
    /// A fresh database cloned from the migrated [`Template`] of this process, made with `migrate` if there is
    /// none yet; `None` when `TEST_DATABASE_URL` is not set (see [`admin_url`] for the rule under `CI`). Panics
    /// when the server cannot give one: for tests.
    pub async fn migrated(migrate: Migrate) -> Option<Self> {
        let admin_url = admin_url()?;
        let template = Template::get(&admin_url, migrate)
            .await
            .unwrap_or_else(|err| panic!("cannot prepare the template database: {}", chain(&err)));
        Some(
            Self::from_template(template)
                .await
                .unwrap_or_else(|err| panic!("cannot create the test database: {}", chain(&err))),
        )
    }

    /// A fresh database cloned from `template`.
    pub async fn from_template(template: &Template) -> Result<Self, Error> {
        let name = fresh_name();
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            identifier(&name),
            identifier(&template.name)
        );
        execute(&template.admin_url, &sql).await?;
        Self::adopt(&template.admin_url, name)
    }

    /// A fresh empty database (no schema) on the server of `admin_url`, for tests that build their own schema.
    /// Sweeps the leftovers of processes that are gone first, once per process.
    pub async fn empty(admin_url: &str) -> Result<Self, Error> {
        sweep_once(admin_url).await?;
        let name = fresh_name();
        create_database(admin_url, &name).await?;
        Self::adopt(admin_url, name)
    }

    /// Takes charge of the existing database `name`: from here on it is dropped with the guard.
    fn adopt(admin_url: &str, name: String) -> Result<Self, Error> {
        let mut database = Self {
            admin_url: admin_url.to_owned(),
            url: String::new(),
            name,
            dropped: false,
        };
        database.url = database_url(admin_url, &database.name)?;
        Ok(database)
    }

    /// The database's URL: the server URL with this database's name.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now (best effort: a failure is reported on the test output). Close the pools on it
    /// first; connections still open are ended.
    pub async fn drop_now(mut self) {
        self.dropped = true;
        report(
            &self.name,
            drop_database(&self.admin_url, &self.name)
                .await
                .map_err(|err| chain(&err)),
        );
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop may run inside the test's runtime, which cannot be blocked on: use a thread and a runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let res = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?
                .block_on(drop_database(&admin_url, &name))
                .map_err(|err| chain(&err))
        })
        .join()
        .unwrap_or_else(|_| Err("the drop thread panicked".to_owned()));
        report(&self.name, res);
    }
}

/// Reports a database left behind on the test output (the next run's [`sweep`] drops it).
#[expect(
    clippy::print_stderr,
    reason = "a database left behind is reported on the test output"
)]
fn report(name: &str, res: Result<(), String>) {
    if let Err(err) = res {
        eprintln!("could not drop the test database {name}: {err}");
    }
}

/// `err` and its sources, joined with `: `.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// A temporary folder for a test's SQLite database, removed with everything in it (the database and its
/// `-wal` / `-shm` files) on drop, also when the test fails.
#[derive(Debug)]
pub struct SqliteDir {
    dir: tempfile::TempDir,
}

impl SqliteDir {
    /// A fresh folder under the system's temporary folder. Panics when none can be made: for tests.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pakaura-test-")
            .tempdir()
            .expect("create a temporary folder for the test database");
        Self { dir }
    }

    /// The database file's path (created by whoever opens it first).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("test.db")
    }

    /// The database's URL: `sqlite://` and the absolute path.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

impl Default for SqliteDir {
    fn default() -> Self {
        Self::new()
    }
}
