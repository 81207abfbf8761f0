//! Cutover from the original FastAPI service (issue 16) and the auth items of issue 15: the original's tokens
//! (float `iat`/`exp`), tokens it accepts from us, legacy bcrypt accounts and their upgrade, `PASSWORD_HASH=bcrypt`,
//! bounded and equal-timed hashing, tokens of deleted users, six-digit timestamps, `phase` and `GET /`.
//!
//! The fixtures in `tests/fixtures/original_tokens.json` were made with the original's own libraries
//! (python-jose, bcrypt) by `scripts/compat/fixtures.py`. The checks "the original accepts this" run the same
//! libraries through `scripts/compat/original.py` with the Python of `PAKAURA_COMPAT_PYTHON` (set by
//! `scripts/test` from `scripts/compat-venv`); without it they print `skipped` (and fail under `CI`).

use std::process::Command;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::TestRequest;
use serde_json::{Value, json};
use task_api::config::{PasswordConfig, PasswordHashAlgorithm};
use task_domain::{Email, UserId};
use task_store::NewUser;
use uuid::Uuid;

use crate::db_test;
use crate::support::{Backend, Options, TestApp, cookie_value};

/// The fixture tokens and hash made by the original's libraries.
struct Original {
    secret: String,
    user_id: Uuid,
    email: String,
    password: String,
    bcrypt_hash: String,
    valid_token: String,
    expired_token: String,
    forged_token: String,
}

fn original() -> Original {
    let text = include_str!("../fixtures/original_tokens.json");
    let v: Value = serde_json::from_str(text).expect("fixture JSON");
    let s = |key: &str| v[key].as_str().expect(key).to_owned();
    Original {
        secret: s("secret"),
        user_id: Uuid::parse_str(&s("user_id")).expect("uuid"),
        email: s("email"),
        password: s("password"),
        bcrypt_hash: s("bcrypt_hash"),
        valid_token: s("valid_token"),
        expired_token: s("expired_token"),
        forged_token: s("forged_token"),
    }
}

/// An app signing with the original's secret, holding the original's user with its bcrypt-12 hash.
async fn app_with_the_original_user(backend: Backend, passwords: PasswordConfig) -> TestApp {
    let fixture = original();
    let app = TestApp::with(Options {
        jwt_secret: fixture.secret.clone(),
        passwords,
        ..Options::new(backend)
    })
    .await;
    insert_user(&app, fixture.user_id, &fixture.email, &fixture.bcrypt_hash).await;
    app
}

async fn insert_user(app: &TestApp, id: Uuid, email: &str, hash: &str) {
    app.state
        .store
        .create_user(NewUser {
            id: UserId::from_uuid(id),
            email: Email::parse(email).expect("email"),
            password_hash: hash.to_owned(),
            now: time::OffsetDateTime::now_utc(),
        })
        .await
        .expect("insert the user");
}

async fn stored_hash(app: &TestApp, id: Uuid) -> String {
    app.state
        .store
        .find_user(UserId::from_uuid(id))
        .await
        .expect("find")
        .expect("the user")
        .password_hash
}

async fn me_with_cookie(app: &TestApp, token: &str) -> crate::support::Answer {
    app.call(
        TestRequest::get()
            .uri("/api/v1/auth/me")
            .insert_header((header::COOKIE, format!("auth_token={token}"))),
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> crate::support::Answer {
    app.request(
        "POST",
        "/api/v1/auth/login",
        Some(json!({"email": email, "password": password})),
        None,
    )
    .await
}

/// The Python of the compat venv, or `None` after saying the test is skipped (a failure under `CI`).
#[expect(
    clippy::print_stdout,
    reason = "the skip line is what the test reports"
)]
fn compat_python() -> Option<String> {
    match std::env::var("PAKAURA_COMPAT_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "PAKAURA_COMPAT_PYTHON is not set and CI is: run scripts/compat-venv (scripts/test does)"
            )
        }
        _ => {
            println!("skipped: PAKAURA_COMPAT_PYTHON is not set (scripts/compat-venv prints it)");
            None
        }
    }
}

/// Runs `scripts/compat/original.py ARGS` (the original's python-jose / bcrypt); its exit status and stdout.
fn run_original(python: &str, args: &[&str]) -> (bool, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/compat/original.py"
    );
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run scripts/compat/original.py");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn tokens_the_original_issued_stay_valid_until_they_expire(backend: Backend) {
    let fixture = original();
    let app = app_with_the_original_user(backend, PasswordConfig::defaults_for_tests()).await;

    let me = me_with_cookie(&app, &fixture.valid_token).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["id"], fixture.user_id.to_string());
    assert_eq!(me.body["email"], fixture.email);
    // The same token as a bearer token, on a task route.
    let tasks = app
        .request("GET", "/api/v1/tasks", None, Some(&fixture.valid_token))
        .await;
    assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.text);

    let expired = me_with_cookie(&app, &fixture.expired_token).await;
    expired.assert_error(401, "AUTHENTICATION_ERROR");
    let forged = me_with_cookie(&app, &fixture.forged_token).await;
    forged.assert_error(401, "AUTHENTICATION_ERROR");
}
db_test!(
    tokens_the_original_issued_stay_valid_until_they_expire,
    super::tokens_the_original_issued_stay_valid_until_they_expire
);

#[actix_web::test]
async fn tokens_we_issue_are_accepted_by_the_original() {
    let Some(python) = compat_python() else {
        return;
    };
    let fixture = original();
    let app =
        app_with_the_original_user(Backend::Sqlite, PasswordConfig::defaults_for_tests()).await;
    let answer = login(&app, &fixture.email, &fixture.password).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let token = cookie_value(&answer, "auth_token").expect("the login sets the cookie");

    let (accepted, payload) = run_original(&python, &["decode", &token, &fixture.secret]);
    assert!(accepted, "python-jose refused our token");
    let payload: Value = serde_json::from_str(payload.trim()).expect("payload JSON");
    assert_eq!(payload["sub"], fixture.user_id.to_string());
    assert_eq!(payload["email"], fixture.email);
    let (iat, exp) = (
        payload["iat"].as_u64().expect("integer iat"),
        payload["exp"].as_u64().expect("integer exp"),
    );
    assert_eq!(exp - iat, 24 * 3600);
    // The check can fail: the original refuses the same token under another secret.
    let (refused, _) = run_original(&python, &["decode", &token, "another-secret"]);
    assert!(!refused);
}

/// jsonwebtoken rounds a float `exp` to the nearest second; python-jose truncates it. A token whose `exp` is 0.4 s
/// in the past is expired for the original and must be for us too.
#[actix_web::test]
async fn a_float_exp_just_past_is_expired_as_the_original_says() {
    let fixture = original();
    let app =
        app_with_the_original_user(Backend::Sqlite, PasswordConfig::defaults_for_tests()).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let claims = json!({
        "sub": fixture.user_id.to_string(),
        "email": fixture.email,
        "iat": now - 86_400.4,
        "exp": now - 0.4,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(fixture.secret.as_bytes()),
    )
    .expect("sign");
    me_with_cookie(&app, &token)
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
}

async fn a_token_for_a_user_who_does_not_exist_is_refused(backend: Backend) {
    let app = TestApp::new(backend).await;
    let ghost = app
        .state
        .auth
        .issue(Uuid::new_v4(), "ghost@example.com")
        .expect("issue");
    let tasks = app
        .request("GET", "/api/v1/tasks", None, Some(&ghost))
        .await;
    tasks.assert_error(401, "AUTHENTICATION_ERROR");
    let create = app
        .request(
            "POST",
            "/api/v1/tasks",
            Some(json!({"title": "x"})),
            Some(&ghost),
        )
        .await;
    create.assert_error(401, "AUTHENTICATION_ERROR");
    let me = app
        .request("GET", "/api/v1/auth/me", None, Some(&ghost))
        .await;
    me.assert_error(401, "AUTHENTICATION_ERROR");
    assert!(
        app.memory.events().is_empty(),
        "a refused request publishes nothing"
    );
}
db_test!(
    a_token_for_a_user_who_does_not_exist_is_refused,
    super::a_token_for_a_user_who_does_not_exist_is_refused
);

/// `AUTH_USER_CACHE_TTL_MS` (issue 17): a user found to exist is believed for the TTL without asking the database
/// again, so a deleted user's token still passes within the TTL and is refused after it.
async fn a_deleted_users_token_is_refused_once_the_user_cache_expires(backend: Backend) {
    let ttl = Duration::from_secs(3);
    let app = TestApp::with(Options {
        user_cache_ttl: ttl,
        ..Options::new(backend)
    })
    .await;
    let user = app.register().await;
    let list = || app.request("GET", "/api/v1/tasks", None, Some(&user.token));
    let looked_up = Instant::now();
    assert_eq!(
        list().await.status,
        StatusCode::OK,
        "looked up and remembered"
    );
    let remembered = Instant::now();

    app.delete_user_row(user.id).await;
    let answer = list().await;
    assert!(
        looked_up.elapsed() < ttl,
        "the second request ran within the TTL of the first lookup (a slow run proves nothing)"
    );
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the cache answered: the database, which no longer has the user, was not asked: {}",
        answer.text
    );
    // A write within the TTL fails on the foreign key: 401 as well, and nothing is published.
    app.memory.clear();
    let create = app
        .request(
            "POST",
            "/api/v1/tasks",
            Some(json!({"title": "after deletion"})),
            Some(&user.token),
        )
        .await;
    create.assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(
        create.body["error"]["message"],
        "The authenticated user no longer exists"
    );
    assert!(app.memory.events().is_empty());

    tokio::time::sleep(
        (remembered + ttl + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    )
    .await;
    let refused = list().await;
    refused.assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(refused.body["error"]["message"], "User not found");
    let me = app
        .request("GET", "/api/v1/auth/me", None, Some(&user.token))
        .await;
    me.assert_error(401, "AUTHENTICATION_ERROR");
}
db_test!(
    a_deleted_users_token_is_refused_once_the_user_cache_expires,
    super::a_deleted_users_token_is_refused_once_the_user_cache_expires
);

/// With `AUTH_USER_CACHE_TTL_MS=0` every request looks its user up: a deleted user's token is refused at once.
async fn without_the_user_cache_a_deleted_users_token_is_refused_at_once(backend: Backend) {
    let app = TestApp::with(Options {
        user_cache_ttl: Duration::ZERO,
        ..Options::new(backend)
    })
    .await;
    let user = app.register().await;
    let list = || app.request("GET", "/api/v1/tasks", None, Some(&user.token));
    assert_eq!(list().await.status, StatusCode::OK);
    app.delete_user_row(user.id).await;
    let refused = list().await;
    refused.assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(refused.body["error"]["message"], "User not found");
}
db_test!(
    without_the_user_cache_a_deleted_users_token_is_refused_at_once,
    super::without_the_user_cache_a_deleted_users_token_is_refused_at_once
);

async fn a_legacy_bcrypt_hash_is_upgraded_to_argon2id_on_login(backend: Backend) {
    let fixture = original();
    let app = app_with_the_original_user(backend, PasswordConfig::defaults_for_tests()).await;
    login(&app, &fixture.email, "wrong-password")
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(
        stored_hash(&app, fixture.user_id).await,
        fixture.bcrypt_hash,
        "a failed login changes nothing"
    );
    let ok = login(&app, &fixture.email, &fixture.password).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let upgraded = stored_hash(&app, fixture.user_id).await;
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    let again = login(&app, &fixture.email, &fixture.password).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        stored_hash(&app, fixture.user_id).await,
        upgraded,
        "a current hash is kept"
    );
}
db_test!(
    a_legacy_bcrypt_hash_is_upgraded_to_argon2id_on_login,
    super::a_legacy_bcrypt_hash_is_upgraded_to_argon2id_on_login
);

fn bcrypt_mode() -> PasswordConfig {
    PasswordConfig {
        algorithm: PasswordHashAlgorithm::Bcrypt,
        ..PasswordConfig::defaults_for_tests()
    }
}

async fn bcrypt_mode_writes_hashes_the_original_verifies(backend: Backend) {
    let fixture = original();
    let app = app_with_the_original_user(backend, bcrypt_mode()).await;

    // A new user gets bcrypt cost 12.
    let email = format!("new-{}@example.com", Uuid::new_v4().simple());
    let registered = app
        .request(
            "POST",
            "/api/v1/auth/register",
            Some(json!({"email": email, "password": "rollback-safe-1"})),
            None,
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.text
    );
    let id = Uuid::parse_str(registered.body["id"].as_str().expect("id")).expect("uuid");
    let hash = stored_hash(&app, id).await;
    assert!(hash.starts_with("$2b$12$"), "{hash}");
    let ok = login(&app, &email, "rollback-safe-1").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);

    // The original's bcrypt-12 user keeps its hash.
    let legacy = login(&app, &fixture.email, &fixture.password).await;
    assert_eq!(legacy.status, StatusCode::OK, "{}", legacy.text);
    assert_eq!(
        stored_hash(&app, fixture.user_id).await,
        fixture.bcrypt_hash
    );

    // A user registered while argon2id was configured is moved to bcrypt-12 on login, for the rollback window.
    let argon_id = Uuid::new_v4();
    let argon_email = format!("argon-{}@example.com", argon_id.simple());
    let argon_hash = task_api::auth::hash_password("argon-password-1").expect("hash");
    insert_user(&app, argon_id, &argon_email, &argon_hash).await;
    let moved = login(&app, &argon_email, "argon-password-1").await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    let moved_hash = stored_hash(&app, argon_id).await;
    assert!(moved_hash.starts_with("$2b$12$"), "{moved_hash}");

    if let Some(python) = compat_python() {
        for (password, hash) in [
            ("rollback-safe-1", &hash),
            ("argon-password-1", &moved_hash),
        ] {
            assert!(
                run_original(&python, &["checkpw", password, hash]).0,
                "the original's bcrypt.checkpw refused {hash}"
            );
        }
        assert!(!run_original(&python, &["checkpw", "wrong", &hash]).0);
    }
}
db_test!(
    bcrypt_mode_writes_hashes_the_original_verifies,
    super::bcrypt_mode_writes_hashes_the_original_verifies
);

/// Issue 15: 12 logins at once against one hashing slot that waits 50 ms: some are answered 503 with
/// `Retry-After`, the rest normally, none fails otherwise.
#[actix_web::test]
async fn logins_beyond_the_hashing_bound_get_503_with_retry_after() {
    let app = TestApp::with(Options {
        passwords: PasswordConfig {
            algorithm: PasswordHashAlgorithm::Argon2id,
            concurrency: 1,
            queue_wait: Duration::from_millis(50),
        },
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let user = app.register().await;
    let attempts = (0..12).map(|i| {
        let password = if i % 2 == 0 {
            "password123"
        } else {
            "wrong-password"
        };
        login(&app, &user.email, password)
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut busy = 0;
    for answer in &answers {
        match answer.status.as_u16() {
            200 | 401 => {}
            503 => {
                answer.assert_error(503, "SERVICE_UNAVAILABLE");
                let retry = answer.header("retry-after").expect("Retry-After on 503");
                assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "{retry}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert!(
        busy > 0,
        "one slot with a 50 ms wait cannot serve 12 logins at once"
    );
    assert!(busy < answers.len(), "the first login gets the slot");
    // The slot is free again afterwards.
    let after = login(&app, &user.email, "password123").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Issue 15: with legacy bcrypt-12 accounts in the database, a wrong password on one of them, a wrong password on
/// an Argon2id account and an unknown email take the same time (before: about 250 ms against 30 ms).
#[actix_web::test]
async fn unknown_emails_wrong_passwords_and_legacy_accounts_take_equal_time() {
    let fixture = original();
    let app =
        app_with_the_original_user(Backend::Sqlite, PasswordConfig::defaults_for_tests()).await;
    let modern = app.register().await;
    let (bcrypt, argon2) = app
        .state
        .passwords
        .detect_stored_formats(&app.state.store)
        .await
        .expect("detect");
    assert!(bcrypt && argon2);

    let mut unknown = Vec::new();
    let mut legacy = Vec::new();
    let mut current = Vec::new();
    for _ in 0..5 {
        for (samples, email) in [
            (&mut unknown, "nobody@example.com"),
            (&mut legacy, fixture.email.as_str()),
            (&mut current, modern.email.as_str()),
        ] {
            let started = Instant::now();
            login(&app, email, "wrong-password")
                .await
                .assert_error(401, "AUTHENTICATION_ERROR");
            samples.push(started.elapsed());
        }
    }
    let (unknown, legacy, current) = (median(unknown), median(legacy), median(current));
    let fastest = unknown.min(legacy).min(current);
    let slowest = unknown.max(legacy).max(current);
    assert!(
        slowest.as_secs_f64() < fastest.as_secs_f64() * 1.5,
        "unknown {unknown:?}, legacy bcrypt {legacy:?}, argon2id {current:?}"
    );
}

fn assert_six_digits(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp string: {value}"));
    let fraction = text
        .strip_suffix('Z')
        .and_then(|rest| rest.rsplit_once('.'))
        .map(|(_, fraction)| fraction)
        .unwrap_or_else(|| panic!("no fraction: {text}"));
    assert!(
        fraction.len() == 6 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "{text}"
    );
}

async fn timestamps_have_six_fractional_digits_in_responses_and_events(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let task = app
        .create_task(
            &user,
            json!({"title": "t", "due_date": "2030-01-02T03:04:05Z"}),
        )
        .await;
    for key in ["created_at", "updated_at", "due_date"] {
        assert_six_digits(&task[key]);
    }
    assert_eq!(task["due_date"], "2030-01-02T03:04:05.000000Z");
    let me = app
        .request("GET", "/api/v1/auth/me", None, Some(&user.token))
        .await;
    assert_six_digits(&me.body["created_at"]);
    let events = app.memory.events();
    assert!(!events.is_empty());
    for event in events {
        let data = event.event.data().expect("event data").clone();
        assert_six_digits(&data["timestamp"]);
        if let Some(due) = data.get("due_date") {
            assert_six_digits(due);
        }
    }
}
db_test!(
    timestamps_have_six_fractional_digits_in_responses_and_events,
    super::timestamps_have_six_fractional_digits_in_responses_and_events
);

#[actix_web::test]
async fn health_reports_the_phase_and_the_root_answers_json() {
    let app = TestApp::new(Backend::Sqlite).await;
    let health = app.request("GET", "/api/v1/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    assert!(health.body["phase"].is_u64(), "{}", health.text);
    let root = app.request("GET", "/", None, None).await;
    assert_eq!(root.status, StatusCode::OK, "{}", root.text);
    assert!(root.body["message"].is_string(), "{}", root.text);
    assert!(
        root.header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    );
}

/// Issue 16: `/readyz` is never 200 on a schema the code cannot use. A database in the original service's shape
/// (never migrated by us) answers 503 while the service otherwise runs; once migrated it is ready.
#[actix_web::test]
async fn readyz_is_503_until_the_schema_has_every_migration() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

    let Some(admin_url) = test_db::admin_url() else {
        return;
    };
    let database = test_db::TestDatabase::empty(&admin_url)
        .await
        .expect("create the database");
    let db = task_store::DbConfig::with_url(database.url());
    let mut conn = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    conn.batch_execute(include_str!(
        "../../../task-store/tests/fixtures/original_schema.sql"
    ))
    .await
    .expect("the original's schema");
    drop(conn);

    let log = crate::support::logger();
    let store = task_store::Store::open(&db, &log).await.expect("open");
    let mut app = TestApp::new(Backend::Sqlite).await;
    let config = task_api::ServiceConfig {
        auth: task_api::config::AuthConfig {
            user_cache_ttl: crate::support::USER_CACHE_TTL,
            ..task_api::config::AuthConfig::defaults_for_tests(crate::support::SECRET)
        },
        shutdown_timeout: Duration::from_secs(1),
        ..task_api::ServiceConfig::defaults_for_tests(db.clone(), crate::support::SECRET)
    };
    let publisher = app.state.publisher.clone();
    app.state = task_api::build_state(
        &config,
        store,
        publisher.clone(),
        task_api::service::Delivery::Publish(publisher),
        &log,
    );

    let answer = app.request("GET", "/readyz", None, None).await;
    answer.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(answer.header("retry-after").is_some());
    assert_eq!(
        app.request("GET", "/healthz", None, None).await.status,
        StatusCode::OK,
        "alive, only not ready"
    );

    task_store::run_pending(&db, &log).await.expect("migrate");
    let ready = app.request("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
}
