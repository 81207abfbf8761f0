//! URL and name handling; the PostgreSQL tests run when `TEST_DATABASE_URL` is set (and must under `CI`).

use super::*;

#[test]
fn database_urls_replace_only_the_database_name() {
    #[track_caller]
    fn check(server_url: &str, expected: &str) {
        assert_eq!(
            database_url(server_url, "x").unwrap(),
            expected,
            "{server_url}"
        );
    }
    check("postgres://u@h:1/postgres", "postgres://u@h:1/x");
    check("postgres://u@h:1", "postgres://u@h:1/x");
    check("postgres://u@h:1/", "postgres://u@h:1/x");
    // The query stays, and a `/` in it is not taken for the path.
    check(
        "postgresql://u:p@h/db?sslmode=disable",
        "postgresql://u:p@h/x?sslmode=disable",
    );
    check(
        "postgres:///postgres?host=/run/postgresql&user=me",
        "postgres:///x?host=/run/postgresql&user=me",
    );
    // A password with characters that URLs escape is kept as given.
    check(
        "postgres://u:p%40ss%2Fw@h/db",
        "postgres://u:p%40ss%2Fw@h/x",
    );
    assert!(matches!(database_url("not a url", "x"), Err(Error::Url(_))));
    assert!(matches!(
        database_url("mailto:someone@example.com", "x"),
        Err(Error::NotAServerUrl)
    ));
}

#[test]
fn database_names_carry_the_process_that_made_them() {
    let name = fresh_name();
    assert!(
        name.len() <= 63,
        "PostgreSQL cuts names at 63 bytes: {name}"
    );
    assert_eq!(owner_pid(&name), Some(std::process::id()));
    assert_ne!(fresh_name(), name);
    assert_eq!(owner_pid("pakaura_test_42_template"), Some(42));
    assert_eq!(owner_pid("pakaura_test_x_1"), None);
    assert_eq!(owner_pid("task_store_test_1"), None);
    assert_eq!(owner_pid("postgres"), None);
}

#[test]
fn identifiers_are_quoted() {
    assert_eq!(identifier("pakaura_test_1_a"), "\"pakaura_test_1_a\"");
    assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
}

#[test]
fn sqlite_folders_are_removed_on_drop() {
    let dir = SqliteDir::new();
    let path = dir.path();
    assert!(dir.url().starts_with("sqlite:///"), "{}", dir.url());
    std::fs::write(&path, b"x").unwrap();
    std::fs::write(path.with_extension("db-wal"), b"x").unwrap();
    drop(dir);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

/// The id of a process that has exited.
fn gone_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Whether the database `name` exists.
async fn exists(admin_url: &str, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let mut conn = AsyncPgConnection::establish(admin_url).await.unwrap();
    let row: Count =
        diesel::sql_query("SELECT count(*) AS count FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name)
            .get_result(&mut conn)
            .await
            .unwrap();
    row.count == 1
}

#[tokio::test]
async fn the_sweep_drops_only_databases_of_processes_that_are_gone() {
    let Some(admin_url) = admin_url() else { return };
    let gone = format!("{PREFIX}{}_leftover", gone_pid());
    create_database(&admin_url, &gone).await.unwrap();
    let ours = TestDatabase::empty(&admin_url).await.unwrap();
    let unrelated = format!("test_db_unrelated_{}", uuid::Uuid::new_v4().simple());
    create_database(&admin_url, &unrelated).await.unwrap();

    let dropped = sweep(&admin_url).await.unwrap();

    let gone_left = exists(&admin_url, &gone).await;
    let ours_left = exists(&admin_url, ours.name()).await;
    let unrelated_left = exists(&admin_url, &unrelated).await;
    drop_database(&admin_url, &gone).await.unwrap();
    drop_database(&admin_url, &unrelated).await.unwrap();
    assert!(!gone_left, "the leftover of a gone process is dropped");
    assert!(dropped >= 1);
    assert!(ours_left, "this process's databases are kept");
    assert!(unrelated_left, "databases of other names are never touched");
    let name = ours.name().to_owned();
    ours.drop_now().await;
    assert!(!exists(&admin_url, &name).await);
}

/// The template's migration: one table.
fn migrate(url: String) -> MigrateFuture {
    Box::pin(async move {
        execute(&url, "CREATE TABLE migrated (id INTEGER PRIMARY KEY)").await?;
        Ok(())
    })
}

#[tokio::test]
async fn clones_of_the_template_have_its_schema_and_are_dropped_on_drop() {
    let Some(first) = TestDatabase::migrated(migrate).await else {
        return;
    };
    let second = TestDatabase::migrated(migrate).await.unwrap();
    assert_ne!(first.name(), second.name());
    // Each clone has the migrated table, and its own rows.
    execute(first.url(), "INSERT INTO migrated VALUES (1)")
        .await
        .unwrap();
    execute(second.url(), "INSERT INTO migrated VALUES (1)")
        .await
        .unwrap();
    let admin_url = admin_url().unwrap();
    let name = first.name().to_owned();
    assert!(exists(&admin_url, &name).await);
    drop(first);
    assert!(
        !exists(&admin_url, &name).await,
        "dropped when the guard is"
    );
    second.drop_now().await;
}
