//! Cutover from the original service, with the real binary (issue 16): the original's `DATABASE_URL` forms, and
//! `serve` on a database the original created (never migrated by us): refused with a message naming
//! `task-api migrate`, or migrated at start under `MIGRATE_ON_START=true`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use support::{Server, command, http};

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, &[], None)
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "task-api-cutover-{tag}-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_original_sqlite_url_form_is_mapped_and_logged() {
    let dir = temp_dir("sqlite");
    let server = Server::start(&dir, &[("DATABASE_URL", "sqlite+aiosqlite:///./todo.db")]);
    assert_eq!(get(server.port, "/readyz").0, 200);
    assert!(
        dir.join("todo.db").exists(),
        "SQLAlchemy's ./todo.db, relative"
    );
    assert!(
        server
            .startup
            .iter()
            .any(|line| line.contains("sqlite+aiosqlite") && line.contains("sqlite://./todo.db")),
        "{:#?}",
        server.startup
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A fresh database holding the original service's schema (`original_schema.sql`, compiled by SQLAlchemy from its
/// Alembic migrations), dropped again on drop.
struct OriginalDatabase {
    database: test_db::TestDatabase,
}

impl OriginalDatabase {
    fn create(admin_url: &str) -> Self {
        let database = block_on(async {
            let database = test_db::TestDatabase::empty(admin_url).await.unwrap();
            let mut conn = AsyncPgConnection::establish(database.url()).await.unwrap();
            conn.batch_execute(include_str!(
                "../../../crates/task-store/tests/fixtures/original_schema.sql"
            ))
            .await
            .unwrap();
            database
        });
        Self { database }
    }

    /// The URL as the original service's environment writes it.
    fn asyncpg_url(&self) -> String {
        let rest = self.database.url().split_once("://").expect("a URL").1;
        format!("postgresql+asyncpg://{rest}")
    }
}

#[test]
fn serve_refuses_an_unmigrated_postgres_database_then_migrates_it_on_request() {
    let Some(admin_url) = test_db::admin_url() else {
        return;
    };
    let database = OriginalDatabase::create(&admin_url);
    let url = database.asyncpg_url();
    let dir = temp_dir("pg");

    // The original's environment as it is: refused, naming the command to run.
    let output = command(
        &dir,
        &[
            ("DATABASE_URL", &url),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
        ],
    )
    .output()
    .expect("run task-api");
    assert!(
        !output.status.success(),
        "serve must refuse a schema it cannot use"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("task-api migrate") && stderr.contains("MIGRATE_ON_START"),
        "{stderr}"
    );

    // With MIGRATE_ON_START=true it migrates, serves, and is ready.
    let server = Server::start(
        &dir,
        &[("DATABASE_URL", &url), ("MIGRATE_ON_START", "true")],
    );
    let (status, ready) = get(server.port, "/readyz");
    assert_eq!(status, 200, "{ready}");
    assert!(
        server
            .startup
            .iter()
            .any(|line| line.contains("postgresql+asyncpg")
                && line.contains("using it as postgresql://")),
        "the mapping is logged: {:#?}",
        server.startup
    );
    assert!(
        server
            .startup
            .iter()
            .any(|line| line.contains("applied migration")),
        "{:#?}",
        server.startup
    );
    drop(server);

    // Migrated now: a plain start serves without migrating.
    let again = Server::start(&dir, &[("DATABASE_URL", &url)]);
    assert_eq!(get(again.port, "/readyz").0, 200);
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/PID/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

fn post_json(port: u16, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Issue 15: concurrent logins cannot take memory past the hashing bound. 32 logins at once with 2 hashing slots
/// (each Argon2id computation holds 19 MiB) add about 22 MiB to the peak RSS (debug build). Without the pinned
/// mmap threshold glibc's malloc arenas keep the freed blocks and the same run adds 136 MiB.
#[cfg(target_os = "linux")]
#[test]
fn concurrent_logins_stay_within_the_hashing_memory_bound() {
    let dir = temp_dir("memory");
    let server = Server::start(
        &dir,
        &[
            ("RATE_LIMIT_AUTH_PER_MINUTE", "0"),
            ("PASSWORD_HASH_CONCURRENCY", "2"),
            ("PASSWORD_HASH_QUEUE_WAIT_MS", "120000"),
        ],
    );
    let credentials = r#"{"email":"memory@example.com","password":"password123"}"#;
    assert_eq!(
        post_json(server.port, "/api/v1/auth/register", credentials),
        201
    );
    let before = peak_rss_kib(server.child.id());
    let port = server.port;
    let logins: Vec<_> = (0..32)
        .map(|_| std::thread::spawn(move || post_json(port, "/api/v1/auth/login", credentials)))
        .collect();
    for login in logins {
        assert_eq!(login.join().expect("a login thread"), 200);
    }
    let grown_mib = peak_rss_kib(server.child.id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 100,
        "32 concurrent logins with 2 hashing slots grew the peak RSS by {grown_mib} MiB"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
