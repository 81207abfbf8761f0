//! `TestApp`: a fresh database (SQLite always, PostgreSQL when `TEST_DATABASE_URL` is set), the service in
//! process, and a publisher: the in-memory fake, or the real dispatcher / outbox relay against a test sidecar.
//! The database is removed when the app is dropped, also when the test fails.

pub(crate) mod sidecar;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{test, web};
use dapr_pubsub_client::ClientConfig;
use serde_json::{Value, json};
use slog::{Drain, Logger, o};
use task_api::config::{AuthConfig, EventDelivery, EventsConfig, HttpConfig, PasswordConfig};
use task_api::publisher::{EventPublisher, MemoryPublisher};
use task_api::rate_limit::TrustedProxies;
use task_api::service::Delivery;
use task_api::state::AppState;
use task_api::{BackgroundWork, BuiltService, ServiceConfig};
use task_store::{DbConfig, Store};
use test_db::{MigrateFuture, SqliteDir};
use uuid::Uuid;

pub(crate) use sidecar::{Mode, Received, Sidecar};

/// How long test apps believe a user found to exist: the binary's default (`AUTH_USER_CACHE_TTL_MS`).
pub(crate) const USER_CACHE_TTL: Duration = Duration::from_secs(5);

/// The JWT secret of test apps.
pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret";

/// A quiet logger, or a terminal one with `TEST_LOG=1`.
pub(crate) fn logger() -> Logger {
    if std::env::var_os("TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        Logger::root(drain, o!())
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database created from `TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// `Some(Postgres)` when `TEST_DATABASE_URL` is set; otherwise says the variant is skipped, or fails when
    /// `CI` is set (`test_db::admin_url`).
    pub(crate) fn postgres_or_skip() -> Option<Self> {
        test_db::admin_url().map(|_| Backend::Postgres)
    }
}

/// A fresh database for one test, removed when the returned guard is dropped: an SQLite file in a temporary
/// folder, or a PostgreSQL database cloned from the template `test-db` migrates once per run.
pub(crate) async fn fresh_database(backend: Backend) -> (DbConfig, TestDatabase) {
    let (url, database) = match backend {
        Backend::Sqlite => {
            let dir = SqliteDir::new();
            (dir.url(), TestDatabase::Sqlite(dir))
        }
        Backend::Postgres => {
            let database = test_db::TestDatabase::migrated(migrate)
                .await
                .expect("TEST_DATABASE_URL is set for a PostgreSQL test");
            (database.url().to_owned(), TestDatabase::Postgres(database))
        }
    };
    let mut config = DbConfig::with_url(url);
    config.pool_size = 4;
    (config, database)
}

/// The template's migration step: task-store's migrations, as `task-api migrate` runs them.
fn migrate(url: String) -> MigrateFuture {
    Box::pin(async move {
        task_store::run_pending(&DbConfig::with_url(url), &logger()).await?;
        Ok(())
    })
}

/// A test's database, removed on drop (best effort): the SQLite folder, or the PostgreSQL database with
/// `DROP DATABASE … WITH (FORCE)`, which also ends the connections still open in the app's pool.
#[derive(Debug)]
#[expect(dead_code, reason = "the guards are held for their Drop, never read")]
pub(crate) enum TestDatabase {
    /// The folder of the SQLite file (and its `-wal`/`-shm` companions).
    Sqlite(SqliteDir),
    /// The PostgreSQL database.
    Postgres(test_db::TestDatabase),
    /// Another app's database: left to that app.
    Shared,
}

/// How a test app publishes.
#[derive(Debug, Clone)]
pub(crate) enum Publishing {
    /// The in-memory fake.
    Memory,
    /// The real dispatcher against this sidecar URL.
    Dapr(String),
    /// The outbox and its relay against this sidecar URL.
    Outbox(String),
}

/// Test app options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The database.
    pub(crate) backend: Backend,
    /// The publishing mode.
    pub(crate) publishing: Publishing,
    /// Auth requests per minute per address (0: off).
    pub(crate) auth_per_minute: u32,
    /// Task requests per minute per user (0: off).
    pub(crate) tasks_per_minute: u32,
    /// The proxies whose `X-Forwarded-For` is believed (none by default).
    pub(crate) trusted_proxies: TrustedProxies,
    /// The per-publish deadline.
    pub(crate) publish_timeout: Duration,
    /// Failed attempts before an outbox row is moved aside.
    pub(crate) outbox_max_attempts: u32,
    /// How long a fire-and-forget lane waits for a batch to fill.
    pub(crate) batch_linger: Duration,
    /// Attempts of a fire-and-forget event before it is given up.
    pub(crate) dispatcher_max_attempts: u32,
    /// Another app's database, to run a second replica on (a fresh database when `None`).
    pub(crate) database: Option<DbConfig>,
    /// The JWT secret ([`SECRET`] by default).
    pub(crate) jwt_secret: String,
    /// Password hashing settings.
    pub(crate) passwords: task_api::config::PasswordConfig,
    /// How long a user found to exist is believed (`AUTH_USER_CACHE_TTL_MS`).
    pub(crate) user_cache_ttl: Duration,
}

impl Options {
    /// Defaults: in-memory publisher, no rate limits.
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            backend,
            publishing: Publishing::Memory,
            auth_per_minute: 0,
            tasks_per_minute: 0,
            trusted_proxies: TrustedProxies::default(),
            publish_timeout: Duration::from_millis(500),
            outbox_max_attempts: 20,
            batch_linger: Duration::ZERO,
            dispatcher_max_attempts: 5,
            database: None,
            jwt_secret: SECRET.to_owned(),
            passwords: PasswordConfig::defaults_for_tests(),
            user_cache_ttl: USER_CACHE_TTL,
        }
    }

    /// On the database of `app`: a second replica of it.
    pub(crate) fn replica_of(mut self, app: &TestApp) -> Self {
        self.database = Some(app.database.clone());
        self
    }

    /// With the real dispatcher against `sidecar`.
    pub(crate) fn dapr(mut self, sidecar: &str) -> Self {
        self.publishing = Publishing::Dapr(sidecar.to_owned());
        self
    }

    /// With the outbox against `sidecar`.
    pub(crate) fn outbox(mut self, sidecar: &str) -> Self {
        self.publishing = Publishing::Outbox(sidecar.to_owned());
        self
    }
}

/// The service in process, with its database and publisher.
pub(crate) struct TestApp {
    /// The state (store, service).
    pub(crate) state: web::Data<AppState>,
    /// The fake publisher (records nothing unless `Publishing::Memory`).
    pub(crate) memory: MemoryPublisher,
    /// The database's settings.
    pub(crate) database: DbConfig,
    background: Option<BackgroundWork>,
    /// Dropped after the fields above, so the pool is closed (or at least unused) when the database goes.
    _database: TestDatabase,
}

/// A registered user: id and token.
#[derive(Debug, Clone)]
pub(crate) struct User {
    /// The user id.
    pub(crate) id: Uuid,
    /// The email.
    pub(crate) email: String,
    /// A valid token.
    pub(crate) token: String,
}

/// An answer: status, headers, JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Status.
    pub(crate) status: StatusCode,
    /// Headers.
    pub(crate) headers: header::HeaderMap,
    /// The body as JSON (`Null` when empty or not JSON).
    pub(crate) body: Value,
    /// The raw body text.
    pub(crate) text: String,
}

impl Answer {
    /// The envelope's `error.code`.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status and an envelope with `code`.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
        assert!(self.body["error"]["message"].is_string(), "{}", self.text);
        assert!(self.body["error"]["details"].is_array(), "{}", self.text);
    }

    /// A header value.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl TestApp {
    /// A test app with defaults on `backend`.
    pub(crate) async fn new(backend: Backend) -> Self {
        Self::with(Options::new(backend)).await
    }

    /// A test app with `options`.
    pub(crate) async fn with(options: Options) -> Self {
        let log = logger();
        let (db, database) = match &options.database {
            Some(shared) => (shared.clone(), TestDatabase::Shared),
            None => fresh_database(options.backend).await,
        };
        let store = Store::open(&db, &log).await.expect("open the test store");
        // The binary's defaults, with what `options` says and a relay that retries within a test's time.
        let mut events = EventsConfig::defaults_for_tests();
        events.dispatcher = events
            .dispatcher
            .with_linger(options.batch_linger)
            .with_max_attempts(options.dispatcher_max_attempts);
        events.outbox.poll_interval = Duration::from_millis(50);
        events.outbox.base_backoff = Duration::from_millis(50);
        events.outbox.max_backoff = Duration::from_millis(200);
        events.outbox.max_attempts = options.outbox_max_attempts;
        let memory = MemoryPublisher::new();
        let (publisher, delivery, background): (
            Arc<dyn EventPublisher>,
            Delivery,
            Option<BackgroundWork>,
        ) = match &options.publishing {
            Publishing::Memory => {
                let publisher: Arc<dyn EventPublisher> = Arc::new(memory.clone());
                (Arc::clone(&publisher), Delivery::Publish(publisher), None)
            }
            Publishing::Dapr(url) | Publishing::Outbox(url) => {
                events.dapr_enabled = true;
                // The binary's client settings on the test sidecar, with the test's deadline (the connect timeout
                // never longer than it, as the binary sets it).
                events.client = ClientConfig::new(url)
                    .expect("the test sidecar's URL")
                    .with_api_token("sidecar-token")
                    .with_request_timeout(options.publish_timeout)
                    .with_connect_timeout(
                        options.publish_timeout.min(events.client.connect_timeout()),
                    )
                    .with_pool_idle_timeout(events.client.pool_idle_timeout())
                    .with_pool_max_idle_per_host(events.client.pool_max_idle_per_host());
                if matches!(options.publishing, Publishing::Outbox(_)) {
                    events.delivery = EventDelivery::Outbox;
                }
                let (publisher, delivery, background) =
                    task_api::build_delivery(&events, &store, &log).expect("build delivery");
                (publisher, delivery, Some(background))
            }
        };
        let config = ServiceConfig {
            database: db.clone(),
            http: HttpConfig {
                rate_limit_auth_per_minute: options.auth_per_minute,
                rate_limit_tasks_per_minute: options.tasks_per_minute,
                trusted_proxies: options.trusted_proxies.clone(),
                ..HttpConfig::defaults_for_tests()
            },
            auth: AuthConfig {
                passwords: options.passwords.clone(),
                user_cache_ttl: options.user_cache_ttl,
                ..AuthConfig::defaults_for_tests(&options.jwt_secret)
            },
            events,
            shutdown_timeout: Duration::from_secs(2),
        };
        let state = task_api::build_state(&config, store, publisher, delivery, &log);
        Self {
            state,
            memory,
            database: db,
            background,
            _database: database,
        }
    }

    /// Stops background delivery, draining within `deadline`.
    pub(crate) async fn shutdown(mut self, deadline: Duration) {
        let background = self.background.take().unwrap_or_default();
        BuiltService {
            state: self.state.clone(),
            background,
        }
        .shutdown(deadline)
        .await;
    }

    /// Stops the app as `kill -9` would: background delivery ends wherever it is, nothing is drained.
    pub(crate) fn kill(mut self) {
        if let Some(background) = self.background.take() {
            background.abort();
        }
    }

    /// Sends `req` through a fresh service instance built on this app's state.
    pub(crate) async fn call(&self, req: test::TestRequest) -> Answer {
        let service = test::init_service(task_api::app(self.state.clone())).await;
        let res = test::call_service(&service, req.to_request()).await;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = test::read_body(res).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// `method path` with an optional JSON body and token.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut req = test::TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(path);
        if let Some(token) = token {
            req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        if let Some(body) = body {
            req = req.set_json(body);
        }
        self.call(req).await
    }

    /// Registers a fresh user and returns it with its token.
    pub(crate) async fn register(&self) -> User {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let answer = self
            .request(
                "POST",
                "/api/v1/auth/register",
                Some(json!({"email": email, "password": "password123"})),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        let token =
            cookie_value(&answer, "auth_token").expect("the register answer sets auth_token");
        let id = Uuid::parse_str(answer.body["id"].as_str().expect("id")).expect("uuid id");
        User { id, email, token }
    }

    /// Deletes the row of user `id` behind the service's back, as an operator would (on a connection of its own).
    pub(crate) async fn delete_user_row(&self, id: Uuid) {
        let sql = format!("DELETE FROM users WHERE id = '{}'", id.hyphenated());
        match self.database.url.strip_prefix("sqlite://") {
            Some(path) => {
                use diesel::{Connection, RunQueryDsl, SqliteConnection};
                let mut conn = SqliteConnection::establish(path).expect("open the test database");
                let deleted = diesel::sql_query(&sql)
                    .execute(&mut conn)
                    .expect("delete the user");
                assert_eq!(deleted, 1, "the user row existed");
            }
            None => test_db::execute(&self.database.url, &sql)
                .await
                .expect("delete the user"),
        }
    }

    /// The value of metric `name` on `/metrics` (0 when absent).
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let answer = self.request("GET", "/metrics", None, None).await;
        answer
            .text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Creates a task and returns its JSON.
    pub(crate) async fn create_task(&self, user: &User, body: Value) -> Value {
        let answer = self
            .request("POST", "/api/v1/tasks", Some(body), Some(&user.token))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body
    }
}

/// The value of cookie `name` set by `answer`.
pub(crate) fn cookie_value(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all(header::SET_COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|cookie| {
            let (pair, _) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
}

/// Runs a test body on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:path) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                $body($crate::support::Backend::Sqlite).await
            }

            #[actix_web::test]
            async fn postgres() {
                if let Some(backend) = $crate::support::Backend::postgres_or_skip() {
                    $body(backend).await
                }
            }
        }
    };
}
