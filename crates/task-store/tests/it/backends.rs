//! Behaviour specific to one backend: migrations over existing databases, connection setup, unreachable servers.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use task_domain::{Email, Task, TaskId, TaskTitle, UserId};
use task_store::{Backend, DbConfig, NewUser, Staged, Store, StoreError};

use crate::support::{TestDb, empty_database, logger, small_pool};

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_within_the_create_timeout() {
    let config = DbConfig {
        create_timeout_ms: 2_000,
        ..small_pool("postgres://pakaura@127.0.0.1:1/none".to_owned())
    };
    let store = Store::open(&config, &logger())
        .await
        .expect("opening PostgreSQL does not connect yet");
    assert_eq!(store.backend(), Backend::Postgres);
    let started = Instant::now();
    let res = store.ping().await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_key() {
    let cases = [
        (
            DbConfig {
                pool_size: 1,
                ..DbConfig::default()
            },
            "pool_size",
        ),
        (
            DbConfig {
                wait_timeout_ms: 0,
                ..DbConfig::default()
            },
            "wait_timeout_ms",
        ),
        (DbConfig::with_url("mysql://localhost/db"), "url"),
        (DbConfig::with_url("sqlite://"), "url"),
    ];
    for (config, key) in cases {
        match Store::open(&config, &logger()).await {
            Err(task_store::OpenError::Config { key: named, .. }) => assert_eq!(named, key),
            other => panic!("expected a config error for {key}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_files_are_created_in_wal_mode_and_reopened_without_migrating_again() {
    let dir = std::env::temp_dir().join(format!(
        "task-store-reopen-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let path = dir.join("nested").join("pakaura.db");
    let config = small_pool(format!("sqlite://{}", path.display()));
    let store = Store::open(&config, &logger())
        .await
        .expect("first open creates and migrates");
    assert!(path.exists());
    assert!(
        dir.join("nested").join("pakaura.db-wal").exists(),
        "WAL mode leaves a -wal file"
    );
    drop(store);
    let applied = task_store::run_pending(&config, &logger())
        .await
        .expect("second migration run");
    assert!(applied.is_empty(), "{applied:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// SQLite writers queue in the store, first come first served, instead of in SQLite's busy handler: even with a
/// `busy_timeout` far shorter than the queue, many concurrent writers all commit (before, those that slept past
/// it failed as `Unavailable`, "database is locked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sqlite_writers_queue_instead_of_timing_out() {
    let dir = std::env::temp_dir().join(format!(
        "task-store-writers-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let config = DbConfig {
        pool_size: 8,
        busy_timeout_ms: 1,
        ..DbConfig::with_url(format!("sqlite://{}", dir.join("writers.db").display()))
    };
    let store = Store::open(&config, &logger()).await.expect("open");
    let owner = store
        .create_user(NewUser {
            id: UserId::new_v4(),
            email: Email::parse("writers@example.com").unwrap(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            now: time::OffsetDateTime::now_utc(),
        })
        .await
        .expect("create user");
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..64 {
        let store = store.clone();
        writers.spawn(async move {
            let now = time::OffsetDateTime::now_utc();
            let (task, _) = Task::create(
                TaskId::new_v4(),
                owner.id,
                TaskTitle::parse(&format!("writer {n}")).unwrap(),
                None,
                now,
            );
            store
                .insert_task(&task, |_| Ok::<_, StoreError>(Staged::new(())))
                .await
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = writers.join_next().await {
        if let Err(err) = joined.expect("writer ran") {
            failures.push(err);
        }
    }
    assert!(failures.is_empty(), "writers failed: {failures:?}");
    assert_eq!(store.list_tasks(owner.id, None).await.unwrap().len(), 64);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_connections_carry_the_application_name_and_statement_timeout() {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    db.store.ping().await.unwrap();
    let admin_url = test_db::admin_url().expect("set for a PostgreSQL test");
    let database = db.postgres_database().expect("a PostgreSQL test database");
    let name = database.name().to_owned();
    let mut admin = AsyncPgConnection::establish(&admin_url).await.unwrap();
    let names: Vec<Setting> = diesel::sql_query(format!(
        "SELECT application_name AS value FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .load(&mut admin)
    .await
    .unwrap();
    assert!(
        !names.is_empty() && names.iter().all(|row| row.value == "pakaura-task-api"),
        "{:?}",
        names.iter().map(|row| &row.value).collect::<Vec<_>>()
    );
    drop(admin);

    let mut direct = AsyncPgConnection::establish(database.url()).await.unwrap();
    let default_timeout: Vec<Setting> =
        diesel::sql_query("SELECT current_setting('statement_timeout') AS value")
            .load(&mut direct)
            .await
            .unwrap();
    assert_eq!(
        default_timeout[0].value, "0",
        "a plain connection has no timeout: the pool sets it"
    );
    drop(direct);
    db.finish().await;
}

#[tokio::test]
async fn migrating_a_database_of_the_original_service_keeps_its_rows() {
    let Some(database) = empty_database().await else {
        return;
    };
    let url = database.url().to_owned();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    // The original service's schema (no due_date, no outbox) with one user and one task.
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "CREATE TABLE users (id UUID PRIMARY KEY, email VARCHAR(255) NOT NULL UNIQUE,
             password_hash VARCHAR(255) NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
             updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE TABLE tasks (id UUID PRIMARY KEY, user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
             title VARCHAR(500) NOT NULL CHECK (length(trim(title)) > 0), completed BOOLEAN NOT NULL DEFAULT false,
             created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO users (id, email, password_hash)
             VALUES ('00000000-0000-4000-8000-000000000001', 'old@example.com', '$2b$12$abcdefghijklmnopqrstuv');
         INSERT INTO tasks (id, user_id, title, completed)
             VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'legacy', true);",
    )
    .await
    .unwrap();
    drop(conn);

    let config = small_pool(url);
    let applied = task_store::run_pending(&config, &logger()).await.unwrap();
    assert_eq!(
        applied.len(),
        MigrationSource::<Pg>::migrations(&task_store::POSTGRES_MIGRATIONS)
            .unwrap()
            .len(),
        "every migration applies to the original's schema: {applied:?}"
    );
    assert!(
        task_store::run_pending(&config, &logger())
            .await
            .unwrap()
            .is_empty()
    );

    let store = Store::open(&config, &logger()).await.unwrap();
    let user_id = task_domain::UserId::from_uuid(uuid::Uuid::from_u128(
        0x0000_0000_0000_4000_8000_0000_0000_0001,
    ));
    let tasks = store.list_tasks(user_id, None).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].title().as_str(), "legacy");
    assert!(tasks[0].completed());
    assert_eq!(tasks[0].due_date(), None);
    let user = store
        .find_user(user_id)
        .await
        .unwrap()
        .expect("the legacy user");
    assert_eq!(user.email.as_str(), "old@example.com");
    drop(store);
    database.drop_now().await;
}

/// The relay runs the outbox operations on spawned tasks, so their futures must be `Send + 'static` when they own
/// a clone of the store; this runs each one that way.
#[tokio::test]
async fn store_operations_run_on_spawned_tasks() {
    fn spawned<F>(future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(future)
    }
    let db = TestDb::sqlite().await;
    let message = task_store::NewOutboxMessage {
        id: uuid::Uuid::new_v4(),
        topic: "task-events".to_owned(),
        partition_key: "p".to_owned(),
        payload: "{}".to_owned(),
        traceparent: None,
    };
    let store = db.store.clone();
    spawned(async move { store.enqueue_outbox(&[message]).await })
        .await
        .unwrap()
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let store = db.store.clone();
    let claimed = spawned(async move { store.claim_outbox(5, Duration::from_secs(10), now).await })
        .await
        .unwrap()
        .unwrap();
    let id = claimed.messages[0].id;
    let lease = claimed.lease;
    let store = db.store.clone();
    spawned(async move { store.release_outbox(lease, &[id]).await })
        .await
        .unwrap()
        .unwrap();
    let store = db.store.clone();
    let claimed = spawned(async move { store.claim_outbox(5, Duration::from_secs(10), now).await })
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.lease;
    let store = db.store.clone();
    let outcome = spawned(async move {
        store
            .record_outbox_failure(lease, id, "x", now, 5, now)
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome, task_store::FailureOutcome::Retry { attempts: 1 });
    let store = db.store.clone();
    let claimed = spawned(async move { store.claim_outbox(5, Duration::from_secs(10), now).await })
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.lease;
    let store = db.store.clone();
    assert_eq!(
        spawned(async move { store.mark_outbox_delivered(lease, &[id]).await })
            .await
            .unwrap()
            .unwrap()
            .settled,
        1
    );
    let store = db.store.clone();
    spawned(async move { store.outbox_status(now).await })
        .await
        .unwrap()
        .unwrap();
    let store = db.store.clone();
    spawned(async move { store.outbox_backlog().await })
        .await
        .unwrap()
        .unwrap();
    let store = db.store.clone();
    spawned(async move {
        store
            .list_outbox(task_store::OutboxFilter::MovedAside, 10)
            .await
    })
    .await
    .unwrap()
    .unwrap();
    let store = db.store.clone();
    spawned(async move { store.replay_outbox(None, now).await })
        .await
        .unwrap()
        .unwrap();
    let store = db.store.clone();
    let counts = spawned(async move { store.outbox_counts().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counts,
        task_store::OutboxCounts {
            pending: 0,
            failed: 0
        }
    );
    let store = db.store.clone();
    spawned(async move { store.ping().await })
        .await
        .unwrap()
        .unwrap();
    db.finish().await;
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let db = TestDb::sqlite().await;
    let status = db.store.pool_status();
    assert_eq!(status.max_size, 4);
    assert!(status.size >= 1, "opening checked a connection: {status:?}");
    db.store.close();
    let res = db.store.ping().await;
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    db.finish().await;
}

/// The statements of `tests/fixtures/original_queries.sql`, as `(name, sql)`.
fn original_queries() -> Vec<(String, String)> {
    let text = include_str!("../fixtures/original_queries.sql");
    text.split("-- name: ")
        .skip(1)
        .map(|block| {
            let (name, sql) = block.split_once('\n').expect("a name line");
            (name.trim().to_owned(), sql.trim().to_owned())
        })
        .collect()
}

/// Issue 16: the original service's schema, created exactly as its Alembic migrations create it (DDL compiled by
/// SQLAlchemy, `tests/fixtures/original_schema.sql`), is migrated forward additively: the original's own
/// statements (compiled by SQLAlchemy from its ORM calls, `original_queries.sql`) still succeed afterwards, and
/// its assistant's tables are untouched.
#[tokio::test]
async fn the_original_service_keeps_working_on_the_migrated_schema() {
    let Some(database) = empty_database().await else {
        return;
    };
    let url = database.url().to_owned();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        include_str!("../fixtures/original_schema.sql"),
    )
    .await
    .expect("the original's schema");

    let config = small_pool(url.clone());
    let store = Store::open(&config, &logger()).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert_eq!(
        pending,
        task_store::embedded_versions(Backend::Postgres),
        "nothing of ours is applied yet"
    );
    assert_eq!(
        task_store::pending_migrations(&config).await.unwrap(),
        pending
    );

    let applied = task_store::run_pending_locked(&config, &logger())
        .await
        .unwrap();
    assert_eq!(applied, pending);
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(
        task_store::pending_migrations(&config)
            .await
            .unwrap()
            .is_empty()
    );

    for (name, sql) in original_queries() {
        if let Err(err) = diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql).await
        {
            panic!("the original's statement {name:?} fails on the migrated schema: {err}\n{sql}");
        }
    }
    // Its rows are ours to read, and its Alembic bookkeeping is left alone.
    let user_id = task_domain::UserId::from_uuid(
        uuid::Uuid::parse_str("6f1c1a52-3d0e-4b8e-9f3a-2c1d5e7a9b01").unwrap(),
    );
    let user = store
        .find_user(user_id)
        .await
        .unwrap()
        .expect("the original's user");
    assert_eq!(user.email.as_str(), "legacy2@example.com");
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version_num: String,
    }
    let alembic: Vec<Version> = diesel::sql_query("SELECT version_num FROM alembic_version")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(alembic.len(), 1);
    assert_eq!(alembic[0].version_num, "002_conversations");
    drop(conn);
    drop(store);
    database.drop_now().await;
}

/// `MIGRATE_ON_START=true` on several replicas at once: the advisory lock lets one apply the migrations while
/// the others wait, then find nothing left; none fails.
#[tokio::test]
async fn concurrent_locked_migrations_apply_each_migration_once() {
    let Some(database) = empty_database().await else {
        return;
    };
    let config = small_pool(database.url().to_owned());
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { task_store::run_pending_locked(&config, &logger()).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().expect("a locked run never fails"));
    }
    applied.sort();
    assert_eq!(applied, task_store::embedded_versions(Backend::Postgres));
    database.drop_now().await;
}
