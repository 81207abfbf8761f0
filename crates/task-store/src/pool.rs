//! Connection pools: deadpool over `AsyncPgConnection` or over `SyncConnectionWrapper<SqliteConnection>`, with
//! per-connection setup.

use std::path::Path;

use diesel::result::ConnectionError;
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::config::DbConfig;
use crate::error::OpenError;

/// The SQLite connection type: diesel's synchronous connection run on tokio's blocking pool.
pub(crate) type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

/// A PostgreSQL pool whose connections set `application_name` and `statement_timeout` when opened.
pub(crate) fn postgres(url: &str, config: &DbConfig) -> Result<Pool<AsyncPgConnection>, OpenError> {
    let application_name = config.application_name.clone();
    let statement_timeout = format!("{}ms", config.statement_timeout_ms);
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |url| {
        let application_name = application_name.clone();
        let statement_timeout = statement_timeout.clone();
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            diesel::sql_query(
                "SELECT set_config('application_name', $1, false), set_config('statement_timeout', $2, false)",
            )
            .bind::<Text, _>(application_name)
            .bind::<Text, _>(statement_timeout)
            .execute(&mut conn)
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
    build(Pool::builder(manager), config)
}

/// An SQLite pool whose connections set `busy_timeout`, `foreign_keys` and `synchronous` when opened. WAL mode
/// is a property of the file, set once by the migration step.
pub(crate) fn sqlite(path: &Path, config: &DbConfig) -> Result<Pool<SqliteConn>, OpenError> {
    let pragmas = connection_pragmas(config);
    let mut manager_config = ManagerConfig::<SqliteConn>::default();
    manager_config.custom_setup = Box::new(move |path| {
        let pragmas = pragmas.clone();
        Box::pin(async move {
            let mut conn = SqliteConn::establish(path).await?;
            conn.batch_execute(&pragmas)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let path = path.to_str().ok_or_else(|| OpenError::Config {
        key: "url",
        reason: "the SQLite path is not valid UTF-8".to_owned(),
    })?;
    let manager = AsyncDieselConnectionManager::new_with_config(path, manager_config);
    build(Pool::builder(manager), config)
}

/// The per-connection SQLite settings.
pub(crate) fn connection_pragmas(config: &DbConfig) -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        config.busy_timeout_ms
    )
}

fn build<C>(
    builder: diesel_async::pooled_connection::deadpool::PoolBuilder<C>,
    config: &DbConfig,
) -> Result<Pool<C>, OpenError>
where
    C: diesel_async::pooled_connection::PoolableConnection + Send + 'static,
    AsyncDieselConnectionManager<C>: deadpool::managed::Manager,
{
    builder
        .max_size(config.pool_size)
        .wait_timeout(Some(config.wait_timeout()))
        .create_timeout(Some(config.create_timeout()))
        .recycle_timeout(Some(config.recycle_timeout()))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|err| OpenError::Pool(Box::new(err)))
}
