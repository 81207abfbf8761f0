//! Test databases, from `test-db`: a temporary SQLite file, or a fresh PostgreSQL database cloned from the
//! template migrated once per run.

use slog::{Logger, o};
use task_store::{DbConfig, Store};
use test_db::{MigrateFuture, SqliteDir, TestDatabase};

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
    Sqlite(SqliteDir),
    Postgres(TestDatabase),
}

impl TestDb {
    /// A migrated SQLite file in a fresh temporary folder.
    pub(crate) async fn sqlite() -> Self {
        let dir = SqliteDir::new();
        let store = Store::open(&small_pool(dir.url()), &logger())
            .await
            .expect("open SQLite store");
        Self {
            store,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database cloned from the migrated template, or `None` (after saying so) when
    /// `TEST_DATABASE_URL` is not set; under `CI` that fails instead.
    pub(crate) async fn postgres() -> Option<Self> {
        let database = TestDatabase::migrated(migrate).await?;
        let store = Store::open(&small_pool(database.url().to_owned()), &logger())
            .await
            .expect("open PostgreSQL store");
        Some(Self {
            store,
            cleanup: Cleanup::Postgres(database),
        })
    }

    /// The PostgreSQL database, if this is one.
    pub(crate) fn postgres_database(&self) -> Option<&TestDatabase> {
        match &self.cleanup {
            Cleanup::Postgres(database) => Some(database),
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

/// The template's migration step: this crate's migrations.
fn migrate(url: String) -> MigrateFuture {
    Box::pin(async move {
        task_store::run_pending(&DbConfig::with_url(url), &logger()).await?;
        Ok(())
    })
}

/// A fresh empty PostgreSQL database (no migrations), or `None` when `TEST_DATABASE_URL` is not set.
pub(crate) async fn empty_database() -> Option<TestDatabase> {
    let admin_url = test_db::admin_url()?;
    Some(
        TestDatabase::empty(&admin_url)
            .await
            .expect("create an empty test database"),
    )
}

pub(crate) fn small_pool(url: String) -> DbConfig {
    DbConfig {
        pool_size: 4,
        ..DbConfig::with_url(url)
    }
}
