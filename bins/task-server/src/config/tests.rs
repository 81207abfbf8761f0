//! Configuration loading tests: defaults, file, environment precedence, and errors naming the key.
#![expect(
    clippy::result_large_err,
    reason = "figment::Jail closures must return figment's large error type"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;
use task_api::config::{CookieSameSite, EventDelivery};

use super::*;

/// Removes every variable the binary reads, so the host environment (CI sets some) does not leak in.
fn clear_env() {
    for name in ENV_NAMES {
        // SAFETY: `Jail` holds a process-wide lock while a test runs, and no other thread reads the environment.
        unsafe { std::env::remove_var(name) };
    }
}

fn load_err(config_file: Option<&Path>) -> String {
    match load(config_file) {
        Ok(settings) => panic!("expected an error, got {settings:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn no_configuration_gives_the_documented_defaults() {
    Jail::expect_with(|_jail| {
        clear_env();
        let settings = load(None).expect("defaults load");
        assert_eq!(settings, Settings::default());
        let config = settings
            .service_config(|| "random".to_owned())
            .expect("defaults convert");
        assert_eq!(config.database.url, "sqlite://pakaura.db");
        assert_eq!(config.auth.jwt_secret.expose_secret(), "random");
        assert_eq!(config.events.client.base_url(), "http://127.0.0.1:3500");
        assert_eq!(config.events.publish_timeout(), Duration::from_secs(2));
        assert_eq!(config.events.delivery, EventDelivery::FireAndForget);
        assert_eq!(config.events.pubsub_name, "pubsub-kafka");
        assert_eq!(config.events.source, "pakaura/api");
        assert_eq!(config.http.rate_limit_auth_per_minute, 10);
        assert_eq!(config.http.rate_limit_tasks_per_minute, 100);
        assert!(
            config.http.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        assert!(!config.events.dapr_enabled);
        assert_eq!((settings.host.as_str(), settings.port), ("0.0.0.0", 8000));
        Ok(())
    });
}

#[test]
fn original_environment_names_are_honoured() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.set_env("DATABASE_URL", "postgresql://app:pw@db:5432/tasks");
        jail.set_env("JWT_SECRET", "00123");
        jail.set_env("DAPR_ENABLED", "1");
        jail.set_env("DAPR_HTTP_PORT", "3600");
        jail.set_env("DAPR_PUBSUB_NAME", "other-pubsub");
        jail.set_env("DAPR_PUBLISH_TIMEOUT", "0.25");
        jail.set_env("COOKIE_SECURE", "yes");
        jail.set_env("COOKIE_SAMESITE", "Strict");
        jail.set_env("FRONTEND_URL", "https://app.example.com/");
        jail.set_env("RATE_LIMIT_AUTH_PER_MINUTE", "5");
        jail.set_env("RATE_LIMIT_TASKS_PER_MINUTE", "50");
        jail.set_env("HOST", "127.0.0.1");
        jail.set_env("PORT", "9000");
        jail.set_env("EVENT_DELIVERY", "outbox");
        jail.set_env("EVENT_SOURCE", "pakaura/test");
        jail.set_env("EVENT_BATCH_MAX", "1");
        jail.set_env("EVENT_BATCH_LINGER_MS", "3");
        jail.set_env("EVENT_BATCH_SAME_KEY", "true");
        jail.set_env("TOPIC_TASK_EVENTS", "te");
        jail.set_env("TOPIC_TASK_UPDATES", "tu");
        jail.set_env("TOPIC_REMINDERS", "tr");
        jail.set_env("LOG_FORMAT", "pretty");
        jail.set_env("LOG_LEVEL", "debug");
        jail.set_env("SHUTDOWN_TIMEOUT_SECONDS", "7");
        let settings = load(None).expect("environment loads");
        let config = settings
            .service_config(|| unreachable!("JWT_SECRET is set"))
            .expect("converts");
        assert_eq!(config.database.url, "postgresql://app:pw@db:5432/tasks");
        assert_eq!(
            config.auth.jwt_secret.expose_secret(),
            "00123",
            "secrets are taken verbatim"
        );
        assert!(config.events.dapr_enabled);
        assert_eq!(config.events.client.base_url(), "http://127.0.0.1:3600");
        assert_eq!(config.events.pubsub_name, "other-pubsub");
        assert_eq!(config.events.publish_timeout(), Duration::from_millis(250));
        assert_eq!(config.events.dispatcher.max_batch(), 1);
        assert_eq!(config.events.dispatcher.linger(), Duration::from_millis(3));
        assert!(config.events.dispatcher.same_key_batches());
        assert!(config.auth.cookie_secure);
        assert_eq!(config.auth.cookie_samesite, CookieSameSite::Strict);
        assert_eq!(
            config.http.frontend_url.as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(config.http.rate_limit_auth_per_minute, 5);
        assert_eq!(config.http.rate_limit_tasks_per_minute, 50);
        assert_eq!((settings.host.as_str(), settings.port), ("127.0.0.1", 9000));
        assert_eq!(config.events.delivery, EventDelivery::Outbox);
        assert_eq!(config.events.source, "pakaura/test");
        assert_eq!(
            (
                config.events.topics.task_events.as_str(),
                config.events.topics.task_updates.as_str()
            ),
            ("te", "tu")
        );
        assert_eq!(config.events.topics.reminders, "tr");
        assert_eq!(settings.log_format, crate::logging::LogFormat::Pretty);
        assert_eq!(settings.log_level, slog::Level::Debug);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(7));
        Ok(())
    });
}

#[test]
fn dapr_http_endpoint_wins_over_the_port() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.set_env("DAPR_HTTP_PORT", "3600");
        jail.set_env("DAPR_HTTP_ENDPOINT", "http://sidecar:3500/");
        jail.set_env("DAPR_API_TOKEN", "tok");
        let config = load(None).unwrap().service_config(String::new).unwrap();
        assert_eq!(config.events.client.base_url(), "http://sidecar:3500");
        assert_eq!(
            config
                .events
                .client
                .api_token()
                .map(ExposeSecret::expose_secret),
            Some("tok")
        );
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file_which_overrides_defaults() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.create_file(
            "task.toml",
            "port = 8100\nlog_level = \"warn\"\nevent_queue_capacity = 5\n",
        )?;
        jail.set_env("PORT", "8200");
        let settings = load(Some(Path::new("task.toml"))).expect("file and env load");
        assert_eq!(settings.port, 8200);
        assert_eq!(settings.log_level, slog::Level::Warning);
        assert_eq!(settings.event_queue_capacity, 5);
        Ok(())
    });
}

#[test]
fn bad_values_fail_naming_the_key() {
    Jail::expect_with(|jail| {
        clear_env();
        for (key, value) in [
            ("PORT", "eighty"),
            ("DAPR_ENABLED", "maybe"),
            ("DAPR_PUBLISH_TIMEOUT", "soon"),
            ("DAPR_PUBLISH_TIMEOUT", "-1"),
            ("EVENT_DELIVERY", "carrier-pigeon"),
            ("COOKIE_SAMESITE", "sometimes"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
            ("DATABASE_URL", "mysql://x"),
            ("RATE_LIMIT_AUTH_PER_MINUTE", "-3"),
            ("EVENT_QUEUE_CAPACITY", "0"),
            ("EVENT_BATCH_MAX", "0"),
            ("EVENT_BATCH_MAX", "1001"),
            ("EVENT_BATCH_LINGER_MS", "-1"),
            ("EVENT_BATCH_LINGER_MS", "5000"),
            ("DAPR_HTTP_ENDPOINT", "sidecar:3500"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("PASSWORD_HASH", "md5"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("PASSWORD_HASH_CONCURRENCY", "1000"),
            ("MIGRATE_ON_START", "sometimes"),
            ("DATABASE_URL", "mysql+aiomysql://db/x"),
            // Accepted, then every mutation was a 500 (the event could not be built).
            ("EVENT_SOURCE", "not a uri reference"),
            ("EVENT_SOURCE", "%zz"),
            // Accepted, then actix-cors refused it at start without naming the key.
            ("FRONTEND_URL", "*"),
            ("FRONTEND_URL", "app.example.com"),
            ("FRONTEND_URL", "https://app.example.com/path"),
            // Accepted, then refused at start without naming the key (only with DAPR_ENABLED=true).
            ("DAPR_HTTP_ENDPOINT", "http://user:pw@sidecar:3500"),
            ("DAPR_HTTP_ENDPOINT", "http://sidecar:3500?debug=1"),
            // Accepted, then every publish failed.
            ("DAPR_API_TOKEN", "token\u{7f}with-del"),
        ] {
            clear_env();
            jail.set_env(key, value);
            let message = load_err(None);
            assert!(message.contains(key), "{key}={value}: {message}");
        }
        Ok(())
    });
}

#[test]
fn trusted_proxies_are_read_from_the_environment_and_the_file() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.set_env("TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.7 ,fd00::/8 ");
        let config = load(None).unwrap().service_config(String::new).unwrap();
        let shown: Vec<String> = config
            .http
            .trusted_proxies
            .networks()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);

        clear_env();
        jail.create_file("task.toml", "trusted_proxies = \"127.0.0.1\"\n")?;
        let config = load(Some(Path::new("task.toml")))
            .unwrap()
            .service_config(String::new)
            .unwrap();
        assert!(
            config
                .http
                .trusted_proxies
                .is_trusted("127.0.0.1".parse().unwrap())
        );

        clear_env();
        jail.set_env("TRUSTED_PROXIES", "10.0.0.300");
        let message = load_err(None);
        assert!(
            message.contains("TRUSTED_PROXIES") && message.contains("10.0.0.300"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_in_the_file_are_rejected() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.create_file("task.toml", "prot = 8100\n")?;
        let message = load_err(Some(Path::new("task.toml")));
        assert!(message.contains("prot"), "{message}");
        Ok(())
    });
}

#[test]
fn a_missing_config_file_is_an_error() {
    Jail::expect_with(|_jail| {
        clear_env();
        let message = load_err(Some(Path::new("nope.toml")));
        assert!(message.contains("nope.toml"), "{message}");
        Ok(())
    });
}

#[test]
fn redacted_settings_hide_secrets_and_database_passwords() {
    let settings = Settings {
        jwt_secret: Some("super-secret".to_owned()),
        dapr_api_token: Some("dapr-token".to_owned()),
        database_url: "postgres://app:hunter2@db/tasks".to_owned(),
        ..Settings::default()
    };
    let text = settings.redacted().to_string();
    assert!(
        !text.contains("super-secret") && !text.contains("dapr-token") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(
        text.contains("postgres://app:[redacted]@db/tasks"),
        "{text}"
    );
    assert_eq!(
        redact_url_password("sqlite://pakaura.db"),
        "sqlite://pakaura.db"
    );
}

#[test]
fn passwords_are_redacted_wherever_they_sit_in_a_url() {
    for (url, shown) in [
        (
            "postgres://db/tasks?user=app&password=hunter2",
            "postgres://db/tasks?user=app&password=[redacted]",
        ),
        (
            "postgresql://app:hunter2@db:5432/tasks?sslmode=require&PASSWORD=hunter2#frag",
            "postgresql://app:[redacted]@db:5432/tasks?sslmode=require&PASSWORD=[redacted]#frag",
        ),
        (
            "postgres://app:hunter2@db?password=hunter2",
            "postgres://app:[redacted]@db?password=[redacted]",
        ),
        ("postgres://app@db/tasks", "postgres://app@db/tasks"),
        (
            "postgres://db/tasks?password",
            "postgres://db/tasks?password",
        ),
        (
            "http://user:hunter2@sidecar:3500",
            "http://user:[redacted]@sidecar:3500",
        ),
    ] {
        assert_eq!(redact_url_password(url), shown, "{url}");
    }
    let settings = Settings {
        database_url: "postgres://db/tasks?password=hunter2".to_owned(),
        dapr_http_endpoint: Some("http://u:hunter2@sidecar:3500".to_owned()),
        ..Settings::default()
    };
    let text = settings.redacted().to_string();
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn valid_sources_origins_and_tokens_are_accepted() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.set_env("EVENT_SOURCE", "https://example.com/tasks");
        jail.set_env("FRONTEND_URL", "https://app.example.com/");
        jail.set_env("DAPR_API_TOKEN", "abc.DEF-123_~");
        let config = load(None).unwrap().service_config(String::new).unwrap();
        assert_eq!(config.events.source, "https://example.com/tasks");
        assert_eq!(
            config.http.frontend_url.as_deref(),
            Some("https://app.example.com")
        );
        Ok(())
    });
}

#[test]
fn env_names_match_the_env_sample_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.sample");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let in_sample: BTreeSet<String> = text
        .lines()
        .map(|line| line.trim().trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim().trim_start_matches("export ").to_owned())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let read: BTreeSet<String> = ENV_NAMES.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(
        in_sample, read,
        "names in .env.sample (left) differ from the names the binary reads (right)"
    );
}

#[test]
fn the_cutover_settings_reach_the_service_config() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.set_env(
            "DATABASE_URL",
            "postgresql+asyncpg://u:pw@db:5432/todo?ssl=require",
        );
        jail.set_env("PASSWORD_HASH", "bcrypt");
        jail.set_env("PASSWORD_HASH_CONCURRENCY", "2");
        jail.set_env("PASSWORD_HASH_QUEUE_WAIT_MS", "250");
        jail.set_env("MIGRATE_ON_START", "true");
        let settings = load(None).expect("valid");
        assert!(settings.migrate_on_start);
        assert_eq!(
            settings.database_url_sqlalchemy_form().as_deref(),
            Some("postgresql+asyncpg")
        );
        let config = settings
            .service_config(|| "random".to_owned())
            .expect("config");
        assert_eq!(
            config.database.url,
            "postgresql://u:pw@db:5432/todo?sslmode=require"
        );
        let passwords = &config.auth.passwords;
        assert_eq!(
            passwords.algorithm,
            task_api::config::PasswordHashAlgorithm::Bcrypt
        );
        assert_eq!(passwords.concurrency, 2);
        assert_eq!(passwords.queue_wait, Duration::from_millis(250));
        assert!(!settings.redacted().to_string().contains("pw@"));
        Ok(())
    });
}

/// Issue 18: the library's defaults disagreed with these (an event queue of 10 000 instead of 1 000, no
/// `FRONTEND_URL`), and the integration tests ran on the library's. The test constructors they use now must give
/// exactly what the binary runs with by default, every field included (the `Debug` output shows them all).
#[test]
fn the_test_constructors_give_the_binary_defaults() {
    const SECRET: &str = "the-secret";
    let production = Settings::default()
        .service_config(|| SECRET.to_owned())
        .expect("defaults convert");
    let for_tests =
        task_api::ServiceConfig::defaults_for_tests(production.database.clone(), SECRET);
    assert_eq!(format!("{production:#?}"), format!("{for_tests:#?}"));
    assert_eq!(
        production.auth.jwt_secret.expose_secret(),
        for_tests.auth.jwt_secret.expose_secret()
    );
    assert_eq!(production.events.dispatcher.queue_capacity(), 1_000);
    assert_eq!(
        production.http.frontend_url.as_deref(),
        Some("http://localhost:3000")
    );
}

/// No library value reaches production by default: each one the binary passes is its own, even where the library
/// would pick another (the client's 500 ms connect timeout) or none (the dispatcher has no `Default`).
#[test]
fn the_binary_sets_every_library_setting() {
    let config = Settings::default().service_config(String::new).unwrap();
    let client = &config.events.client;
    assert_eq!(client.connect_timeout(), DAPR_CONNECT_TIMEOUT_CAP);
    assert_ne!(
        client.connect_timeout(),
        task_api::config::ClientConfig::localhost(3500).connect_timeout()
    );
    assert_eq!(client.request_timeout(), Duration::from_secs(2));
    assert_eq!(client.pool_idle_timeout(), DAPR_POOL_IDLE_TIMEOUT);
    assert_eq!(client.pool_max_idle_per_host(), DAPR_POOL_MAX_IDLE);
    let dispatcher = &config.events.dispatcher;
    assert_eq!(dispatcher.queue_capacity(), 1_000);
    assert_eq!(dispatcher.concurrency(), FIRE_AND_FORGET_LANES);
    assert_eq!(dispatcher.max_attempts(), FIRE_AND_FORGET_MAX_ATTEMPTS);
    assert_eq!(dispatcher.max_batch(), 32);
    assert_eq!(dispatcher.linger(), Duration::from_millis(1));
    assert_eq!(config.http.json_body_limit, JSON_BODY_LIMIT_BYTES);
    assert_eq!(config.events.outbox.base_backoff, OUTBOX_FIRST_BACKOFF);
    assert_eq!(config.events.outbox.max_backoff, OUTBOX_MAX_BACKOFF);
    assert_eq!(config.events.outbox.linger, OUTBOX_LINGER);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
}

/// The connect timeout rule, set in one place: the publish deadline, at most one second.
#[test]
fn the_sidecar_connect_timeout_is_the_publish_deadline_at_most_one_second() {
    Jail::expect_with(|jail| {
        for (deadline, connect) in [("0.25", 250), ("1", 1_000), ("2.0", 1_000), ("30", 1_000)] {
            clear_env();
            jail.set_env("DAPR_PUBLISH_TIMEOUT", deadline);
            let config = load(None).unwrap().service_config(String::new).unwrap();
            assert_eq!(
                config.events.client.connect_timeout(),
                Duration::from_millis(connect),
                "DAPR_PUBLISH_TIMEOUT={deadline}"
            );
            assert_eq!(
                config.events.publish_timeout(),
                Duration::from_secs_f64(deadline.parse().unwrap())
            );
        }
        Ok(())
    });
}

/// Names are parsed once, when the settings load, in any case and with blanks around them; the parsed values are
/// what the service configuration gets.
#[test]
fn named_values_are_parsed_when_the_settings_load() {
    Jail::expect_with(|jail| {
        clear_env();
        jail.create_file(
            "task.toml",
            "cookie_samesite = \" Strict \"\nevent_delivery = \"FIRE_AND_FORGET\"\npassword_hash = \"Argon2\"\n\
             log_format = \"text\"\nlog_level = \"WARNING\"\ntrusted_proxies = \"10.0.0.0/8\"\n",
        )?;
        jail.set_env("EVENT_DELIVERY", "Outbox");
        jail.set_env("PASSWORD_HASH", "BCRYPT");
        let settings = load(Some(Path::new("task.toml"))).expect("loads");
        assert_eq!(settings.cookie_samesite, CookieSameSite::Strict);
        assert_eq!(settings.event_delivery, EventDelivery::Outbox);
        assert_eq!(
            settings.password_hash,
            task_api::config::PasswordHashAlgorithm::Bcrypt
        );
        assert_eq!(settings.log_format, crate::logging::LogFormat::Pretty);
        assert_eq!(settings.log_level, slog::Level::Warning);
        assert!(
            settings
                .trusted_proxies
                .is_trusted("10.1.2.3".parse().unwrap())
        );
        let config = settings.service_config(String::new).unwrap();
        assert_eq!(config.auth.cookie_samesite, CookieSameSite::Strict);
        assert_eq!(config.events.delivery, EventDelivery::Outbox);
        assert_eq!(
            config.auth.passwords.algorithm,
            task_api::config::PasswordHashAlgorithm::Bcrypt
        );
        assert_eq!(config.http.trusted_proxies, settings.trusted_proxies);
        Ok(())
    });
}

/// `LOG_LEVEL` takes slog's names (`slog::Level: FromStr`), full or short, in any case.
#[test]
fn log_levels_are_slogs_names() {
    Jail::expect_with(|jail| {
        for (value, level) in [
            ("trace", slog::Level::Trace),
            ("DEBUG", slog::Level::Debug),
            ("info", slog::Level::Info),
            ("warn", slog::Level::Warning),
            ("warning", slog::Level::Warning),
            ("error", slog::Level::Error),
            ("critical", slog::Level::Critical),
            ("crit", slog::Level::Critical),
        ] {
            clear_env();
            jail.set_env("LOG_LEVEL", value);
            assert_eq!(load(None).unwrap().log_level, level, "{value}");
        }
        for bad in ["off", "verbose", "infos"] {
            clear_env();
            jail.set_env("LOG_LEVEL", bad);
            let message = load_err(None);
            assert!(
                message.contains("LOG_LEVEL") && message.contains("expected trace, debug"),
                "{bad}: {message}"
            );
        }
        Ok(())
    });
}

/// `AUTH_USER_CACHE_TTL_MS` reaches the auth configuration (default 5 s, 0 turns the cache off).
#[test]
fn the_user_cache_ttl_reaches_the_auth_config() {
    Jail::expect_with(|jail| {
        clear_env();
        let config = load(None)
            .expect("valid")
            .service_config(|| "random".to_owned())
            .expect("config");
        assert_eq!(config.auth.user_cache_ttl, Duration::from_secs(5));
        for (raw, ttl) in [("250", Duration::from_millis(250)), ("0", Duration::ZERO)] {
            jail.set_env("AUTH_USER_CACHE_TTL_MS", raw);
            let config = load(None)
                .expect("valid")
                .service_config(|| "random".to_owned())
                .expect("config");
            assert_eq!(config.auth.user_cache_ttl, ttl, "{raw}");
        }
        Ok(())
    });
}

/// The startup log line shows the parsed values under their setting's names, as an operator writes them.
#[test]
fn redacted_settings_show_parsed_values_by_name() {
    let settings = Settings {
        trusted_proxies: TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap(),
        ..Settings::default()
    };
    let json = settings.redacted();
    for (key, value) in [
        ("cookie_samesite", "lax"),
        ("event_delivery", "fire-and-forget"),
        ("password_hash", "argon2id"),
        ("log_format", "pretty"),
        ("log_level", "info"),
        ("trusted_proxies", "10.0.0.0/8,192.168.1.7/32"),
    ] {
        assert_eq!(json[key], value, "{key}: {json}");
    }
}
