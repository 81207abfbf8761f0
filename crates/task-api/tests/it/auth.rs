//! Register, login, logout, me; cookie and bearer tokens; bad tokens; legacy bcrypt hashes; rate limiting.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use task_domain::{Email, UserId};
use task_store::NewUser;
use uuid::Uuid;

use crate::db_test;
use crate::support::{Backend, Options, SECRET, TestApp, cookie_value};

async fn register_sets_the_cookie_and_answers_201(backend: Backend) {
    let app = TestApp::new(backend).await;
    let answer = app
        .request(
            "POST",
            "/api/v1/auth/register",
            Some(json!({"email": "  Alice@Example.COM ", "password": "password123"})),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.body["email"], "alice@example.com");
    assert!(Uuid::parse_str(answer.body["id"].as_str().unwrap()).is_ok());
    assert!(answer.body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(answer.body.get("password").is_none() && answer.body.get("password_hash").is_none());
    let cookie = answer
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("auth_token="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");

    let again = app
        .request(
            "POST",
            "/api/v1/auth/register",
            Some(json!({"email": "ALICE@example.com", "password": "password456"})),
            None,
        )
        .await;
    again.assert_error(409, "CONFLICT");
    assert_eq!(again.body["error"]["message"], "Email already registered");
}
db_test!(
    register_sets_the_cookie_and_answers_201,
    super::register_sets_the_cookie_and_answers_201
);

#[actix_web::test]
async fn register_rejects_bad_emails_and_short_passwords() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (body, field) in [
        (
            json!({"email": "not-an-email", "password": "password123"}),
            "email",
        ),
        (json!({"email": "a@b.co", "password": "short"}), "password"),
        (json!({"email": "a@b.co"}), "password"),
        (json!({"password": "password123"}), "email"),
        (json!({"email": 42, "password": "password123"}), "email"),
    ] {
        let answer = app
            .request("POST", "/api/v1/auth/register", Some(body.clone()), None)
            .await;
        answer.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(
            answer.body["error"]["details"][0]["field"], field,
            "{body}: {}",
            answer.text
        );
    }
}

async fn login_me_and_logout_round_trip(backend: Backend) {
    let app = TestApp::new(backend).await;
    let user = app.register().await;
    let login = app
        .request(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": user.email.to_uppercase(), "password": "password123"})),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["id"], user.id.to_string());
    let token = cookie_value(&login, "auth_token").expect("login sets the cookie");

    let by_cookie = app
        .call(
            TestRequest::get()
                .uri("/api/v1/auth/me")
                .insert_header((header::COOKIE, format!("auth_token={token}"))),
        )
        .await;
    assert_eq!(by_cookie.status, StatusCode::OK, "{}", by_cookie.text);
    assert_eq!(by_cookie.body["email"], user.email);
    let by_bearer = app
        .request("GET", "/api/v1/auth/me", None, Some(&token))
        .await;
    assert_eq!(by_bearer.body["id"], user.id.to_string());

    let logout = app.request("POST", "/api/v1/auth/logout", None, None).await;
    assert_eq!(logout.status, StatusCode::OK);
    assert_eq!(logout.body["message"], "Logged out successfully");
    let cleared = logout
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cleared.starts_with("auth_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    let wrong = app
        .request(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": user.email, "password": "wrong-password"})),
            None,
        )
        .await;
    wrong.assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(wrong.body["error"]["message"], "Invalid email or password");
    let unknown = app
        .request(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": "ghost@example.com", "password": "password123"})),
            None,
        )
        .await;
    unknown.assert_error(401, "AUTHENTICATION_ERROR");
    assert_eq!(
        unknown.body["error"]["message"],
        "Invalid email or password"
    );
}
db_test!(
    login_me_and_logout_round_trip,
    super::login_me_and_logout_round_trip
);

#[actix_web::test]
async fn existing_bcrypt_hashes_still_log_in() {
    let app = TestApp::new(Backend::Sqlite).await;
    let hash = bcrypt::hash("legacy-password", 4).unwrap();
    app.state
        .store
        .create_user(NewUser {
            id: UserId::new_v4(),
            email: Email::parse("legacy@example.com").unwrap(),
            password_hash: hash,
            now: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    let login = app
        .request(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": "legacy@example.com", "password": "legacy-password"})),
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

fn token_with(claims: serde_json::Value, secret: &[u8]) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[actix_web::test]
async fn missing_expired_wrongly_signed_and_unsigned_tokens_get_401() {
    let app = TestApp::new(Backend::Sqlite).await;
    let user = app.register().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims =
        |iat: i64, exp: i64| json!({"sub": user.id, "email": user.email, "iat": iat, "exp": exp});
    let valid = token_with(claims(now, now + 3600), SECRET.as_bytes());
    assert_eq!(
        app.request("GET", "/api/v1/auth/me", None, Some(&valid))
            .await
            .status,
        StatusCode::OK
    );

    let expired = token_with(claims(now - 7200, now - 3600), SECRET.as_bytes());
    let wrong_secret = token_with(claims(now, now + 3600), b"another-secret-another-secret");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(now, now + 3600).to_string())
    );
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(
            json!({"sub": Uuid::new_v4(), "email": "x@y.z", "iat": now, "exp": now + 3600})
                .to_string(),
        );
        parts.join(".")
    };
    for (what, token) in [
        ("expired", expired.as_str()),
        ("wrong secret", &wrong_secret),
        ("alg none", &alg_none),
        ("tampered", &tampered),
        ("garbage", "not.a.token"),
    ] {
        for path in ["/api/v1/auth/me", "/api/v1/tasks"] {
            let answer = app.request("GET", path, None, Some(token)).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{what} on {path}: {}",
                answer.text
            );
            answer.assert_error(401, "AUTHENTICATION_ERROR");
        }
    }
    app.request("GET", "/api/v1/tasks", None, None)
        .await
        .assert_error(401, "AUTHENTICATION_ERROR");
    let cookie_garbage = app
        .call(
            TestRequest::get()
                .uri("/api/v1/tasks")
                .insert_header((header::COOKIE, "auth_token=abc")),
        )
        .await;
    cookie_garbage.assert_error(401, "AUTHENTICATION_ERROR");
}

#[actix_web::test]
async fn auth_routes_are_rate_limited_per_client_with_retry_after() {
    let options = Options {
        auth_per_minute: 3,
        ..Options::new(Backend::Sqlite)
    };
    let app = TestApp::with(options).await;
    let body = json!({"email": "nobody@example.com", "password": "password123"});
    for _ in 0..3 {
        let answer = app
            .request("POST", "/api/v1/auth/login", Some(body.clone()), None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app
        .request("POST", "/api/v1/auth/login", Some(body), None)
        .await;
    limited.assert_error(429, "RATE_LIMITED");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

#[actix_web::test]
async fn task_routes_are_rate_limited_per_user() {
    let options = Options {
        tasks_per_minute: 2,
        ..Options::new(Backend::Sqlite)
    };
    let app = TestApp::with(options).await;
    let alice = app.register().await;
    let bob = app.register().await;
    for _ in 0..2 {
        assert_eq!(
            app.request("GET", "/api/v1/tasks", None, Some(&alice.token))
                .await
                .status,
            StatusCode::OK
        );
    }
    app.request("GET", "/api/v1/tasks", None, Some(&alice.token))
        .await
        .assert_error(429, "RATE_LIMITED");
    assert_eq!(
        app.request("GET", "/api/v1/tasks", None, Some(&bob.token))
            .await
            .status,
        StatusCode::OK
    );
}
