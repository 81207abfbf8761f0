//! Round trips through real Dapr and Kafka: task events published with `dapr-pubsub-client` through the
//! local stack's `pakaura-api` daprd reach the subscriber example (in-process, behind its own daprd) exactly
//! once each, RETRY makes Dapr redeliver and DROP does not; and the tail example prints each event once.
//!
//! Needs the local stack (`scripts/stack up`, then `eval "$(scripts/stack env)"`): without
//! `PAKAURA_DAPR_HTTP_ENDPOINT` it prints `skipped: …` and passes, unless `CI` is set, where it fails.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use dapr_pubsub_client::{ClientConfig, PubSubClient, PublishOptions};
use examples::events::{
    PUBSUB_NAME, TASK_CREATED, TOPIC_REMINDERS, TOPIC_TASK_EVENTS, TOPIC_TASK_UPDATES,
    TaskEventFactory, Topical, payload,
};
use examples::subscriber::{
    self, IdRecord, Outcome, Route, SIMULATE_FAILURES_EXTENSION, SubscriberConfig, SubscriberState,
};
use examples::tail::{self, TailConfig, TailState};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use slog::{Drain as _, Logger, o};
use uuid::Uuid;

/// Upper bound on the whole test, so that a stuck sidecar cannot hang the suite.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(150);
/// The subscriber's app id in this test: its own consumer group (`{appID}`), in the scopes of examples/dapr.
const SUBSCRIBER_APP_ID: &str = "task-subscriber-it";
/// The tail's app id in this test (its own consumer group).
const TAIL_APP_ID: &str = "task-events-tail-it";
const USERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_reach_the_subscriber_through_dapr_exactly_once() {
    let Some(publisher_endpoint) = stack_endpoint() else {
        return;
    };
    match tokio::time::timeout(OVERALL_TIMEOUT, round_trip(&publisher_endpoint)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("round trip failed: {err:#}"),
        Err(_) => panic!("round trip did not finish within {OVERALL_TIMEOUT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_prints_each_event_of_the_three_topics_once() {
    let Some(publisher_endpoint) = stack_endpoint() else {
        return;
    };
    match tokio::time::timeout(OVERALL_TIMEOUT, tail_round_trip(&publisher_endpoint)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => panic!("tail round trip failed: {err:#}"),
        Err(_) => panic!("tail round trip did not finish within {OVERALL_TIMEOUT:?}"),
    }
}

/// The endpoint of the stack's daprd, or `None` (skip) when the stack is not up; under `CI` a missing
/// stack is a failure.
fn stack_endpoint() -> Option<String> {
    match std::env::var("PAKAURA_DAPR_HTTP_ENDPOINT") {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "PAKAURA_DAPR_HTTP_ENDPOINT is not set and CI is: the local stack must be up (scripts/stack up)"
            );
            #[expect(clippy::print_stderr, reason = "the skip notice of a gated test")]
            {
                eprintln!(
                    "skipped: PAKAURA_DAPR_HTTP_ENDPOINT is not set (scripts/stack up; eval \"$(scripts/stack env)\")"
                );
            }
            None
        }
    }
}

async fn round_trip(publisher_endpoint: &str) -> anyhow::Result<()> {
    let log = test_logger();
    let started = Instant::now();

    // The subscriber example, in-process on a loopback port.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app_port = listener.local_addr()?.port();
    let state = Arc::new(SubscriberState::new(
        SubscriberConfig {
            recent_capacity: 100_000,
            ..SubscriberConfig::default()
        },
        log.clone(),
    ));
    let server = subscriber::serve(listener, Arc::clone(&state), false)?;
    let server_handle = server.handle();
    tokio::spawn(server);

    // Its own daprd, started the way examples/run-with-daprd starts it.
    let sidecar = Sidecar::start(SUBSCRIBER_APP_ID, app_port)?;
    sidecar.wait_healthy().await?;
    let sidecar_url = sidecar.url();

    // Both subscription kinds are in place: task-events from GET /dapr/subscribe, task-updates from the YAML.
    let subscriptions = wait_for(
        Duration::from_secs(20),
        "daprd to list the subscriptions",
        async || {
            sidecar.check_alive()?;
            let Ok((_, body)) = get(&format!("{sidecar_url}/v1.0/metadata")).await else {
                return Ok(None);
            };
            let Ok(metadata) = serde_json::from_slice::<Value>(&body) else {
                return Ok(None);
            };
            let kinds: HashMap<String, String> = metadata["subscriptions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sub| {
                    (
                        sub["topic"].as_str().unwrap_or_default().to_owned(),
                        sub["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            Ok((kinds.len() >= 2).then_some(kinds))
        },
    )
    .await
    .map_err(|err| sidecar.with_log(err))?;
    ensure!(
        subscriptions.get(TOPIC_TASK_EVENTS).map(String::as_str) == Some("PROGRAMMATIC"),
        "{subscriptions:?}"
    );
    ensure!(
        subscriptions.get(TOPIC_TASK_UPDATES).map(String::as_str) == Some("DECLARATIVE"),
        "{subscriptions:?}"
    );

    // The publisher: the stack's pakaura-api daprd.
    let client = PubSubClient::new(ClientConfig::new(publisher_endpoint)?, log.clone());
    client.wait_until_ready(Duration::from_secs(10)).await?;
    let factory = TaskEventFactory::new("pakaura/examples-round-trip", Uuid::new_v4());
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();

    warm_up(
        &sidecar,
        &client,
        || {
            let mut round = Vec::new();
            for user in &users {
                let [created, _] = factory.created(*user, Uuid::new_v4(), "warm-up")?;
                round.push(created);
            }
            Ok(round)
        },
        |id| state.record(id).is_some(),
    )
    .await?;
    let warmed_up = started.elapsed();

    // Traffic. First the special cases, then each user's task lifecycle (8 events on two topics): events of
    // one user share a partition and keep their order, so once a user's last event is processed, Dapr is
    // done with everything published before it for that user.
    let retried = {
        let [created, _] = factory.created(users[0], Uuid::new_v4(), "fails twice, then works")?;
        let event = created
            .event
            .into_builder()
            .extension(SIMULATE_FAILURES_EXTENSION, 2)
            .build()?;
        client
            .publish(PUBSUB_NAME, TOPIC_TASK_EVENTS, &event)
            .await?;
        event.id().to_owned()
    };
    let invalid = Uuid::new_v4().to_string();
    {
        // Not a valid CloudEvent (`time` is no timestamp); published as raw bytes, so nothing checks it on the way.
        let task_id = Uuid::new_v4();
        let body = json!({
            "specversion": "1.0", "id": invalid, "source": "pakaura/examples-round-trip", "type": TASK_CREATED,
            "time": "yesterday", "subject": task_id.to_string(), "datacontenttype": "application/json",
            "data": payload(users[1], task_id, "created", [("title", json!("bad time"))]),
        });
        let options = PublishOptions::new().with_partition_key(users[1].to_string());
        client
            .publish_bytes(
                PUBSUB_NAME,
                TOPIC_TASK_EVENTS,
                cloudevents_model::CONTENT_TYPE,
                serde_json::to_vec(&body)?,
                &options,
            )
            .await?;
    }
    let unknown = {
        let task_id = Uuid::new_v4();
        let event = factory.event(
            "task.archived",
            users[1],
            task_id,
            &payload(users[1], task_id, "archived", []),
        )?;
        client
            .publish(PUBSUB_NAME, TOPIC_TASK_EVENTS, &event)
            .await?;
        event.id().to_owned()
    };
    let mut expected: Vec<(Uuid, Topical)> = Vec::new();
    for user in &users {
        for topical in factory.lifecycle(*user, "round trip")? {
            client
                .publish(PUBSUB_NAME, topical.topic, &topical.event)
                .await?;
            expected.push((*user, topical));
        }
    }
    // One last event per user and topic: everything before it on that partition has been handled when it is.
    let mut sentinels = Vec::new();
    for user in &users {
        for topical in factory.created(*user, Uuid::new_v4(), "sentinel")? {
            client
                .publish(PUBSUB_NAME, topical.topic, &topical.event)
                .await?;
            sentinels.push(topical.event.id().to_owned());
        }
    }
    let published = started.elapsed();

    wait_for(
        Duration::from_secs(60),
        "every event to reach the subscriber",
        async || {
            sidecar.check_alive()?;
            let pending = expected
                .iter()
                .map(|(_, topical)| topical.event.id().to_owned())
                .chain(sentinels.iter().cloned())
                .chain([retried.clone()])
                .filter(|id| state.record(id).is_none_or(|record| record.processed == 0))
                .count();
            Ok((pending == 0).then_some(()))
        },
    )
    .await
    .map_err(|err| sidecar.with_log(err))?;
    let delivered = started.elapsed();

    // Exactly once, through the right subscription, with the user id as the Kafka key.
    let report = state.report();
    let deliveries_of = |id: &str| {
        report
            .recent
            .iter()
            .filter(|r| r.id.as_deref() == Some(id))
            .collect::<Vec<_>>()
    };
    for (user, topical) in &expected {
        let id = topical.event.id();
        let record = state.record(id).context("record")?;
        ensure!(
            record
                == IdRecord {
                    deliveries: 1,
                    processed: 1,
                    outcomes: vec![Outcome::Processed]
                },
            "{} {id} on {}: {record:?}",
            topical.event.ty(),
            topical.topic
        );
        let found = deliveries_of(id);
        let [delivery] = found.as_slice() else {
            bail!("{id}: {} deliveries in the report", found.len())
        };
        let route = if topical.topic == TOPIC_TASK_EVENTS {
            Route::Tasks
        } else {
            Route::Sync
        };
        ensure!(
            delivery.route == route,
            "{id}: came through {:?}",
            delivery.route
        );
        ensure!(
            delivery.topic.as_deref() == Some(topical.topic),
            "{id}: topic {:?}",
            delivery.topic
        );
        ensure!(
            delivery.kafka.key.as_deref() == Some(user.to_string().as_str()),
            "{id}: kafka {:?}",
            delivery.kafka
        );
        ensure!(
            delivery.correlationid.as_deref()
                == Some(factory.correlation_id().to_string().as_str()),
            "{id}: correlation id {:?}",
            delivery.correlationid
        );
    }
    // RETRY: Dapr delivered it again until the app accepted it; processed once.
    let record = state.record(&retried).context("retried event")?;
    ensure!(
        record
            == IdRecord {
                deliveries: 3,
                processed: 1,
                outcomes: vec![Outcome::Retry, Outcome::Retry, Outcome::Processed]
            },
        "retried event: {record:?}"
    );
    // DROP: delivered once, not again (later events of the same user were delivered after it).
    for (what, id) in [("invalid CloudEvent", &invalid), ("unknown type", &unknown)] {
        let record = state
            .record(id)
            .with_context(|| format!("{what} never delivered"))?;
        ensure!(
            record
                == IdRecord {
                    deliveries: 1,
                    processed: 0,
                    outcomes: vec![Outcome::Drop]
                },
            "{what}: {record:?}"
        );
    }
    // GET /received shows the same counters.
    let (status, body) = get(&format!("http://127.0.0.1:{app_port}/received")).await?;
    let received: Value = serde_json::from_slice(&body)?;
    ensure!(
        status == 200
            && received["stats"]["processed"].as_u64()
                >= Some((expected.len() + sentinels.len() + 1) as u64),
        "{received}"
    );

    slog::info!(log, "round trip done";
        "warm_up_ms" => warmed_up.as_millis() as u64, "published_ms" => published.as_millis() as u64,
        "delivered_ms" => delivered.as_millis() as u64, "events" => expected.len() + sentinels.len() + 3,
        "stats" => %serde_json::to_string(&report.stats)?);

    server_handle.stop(true).await;
    drop(sidecar);
    Ok(())
}

/// A daprd child process, stopped (SIGTERM, then SIGKILL) when dropped, also when the test fails.
struct Sidecar {
    child: Mutex<Child>,
    http_port: u16,
    log_path: PathBuf,
    /// Set once an error quoted the log: the log file is then kept for a closer look.
    keep_log: AtomicBool,
}

impl Sidecar {
    /// Starts a daprd for `app_id` whose app listens on `app_port`, with the command line that
    /// examples/run-with-daprd builds.
    fn start(app_id: &str, app_port: u16) -> anyhow::Result<Self> {
        let (http_port, grpc_port) = (free_port()?, free_port()?);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-with-daprd");
        let output = Command::new(&script)
            .args(["--app-id", app_id, "--print-command"])
            .args(["--app-port", &app_port.to_string()])
            .args(["--dapr-http-port", &http_port.to_string()])
            .args(["--dapr-grpc-port", &grpc_port.to_string()])
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            output.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let argv: Vec<String> = String::from_utf8(output.stdout)?
            .lines()
            .map(str::to_owned)
            .collect();
        let (program, args) = argv.split_first().context("empty daprd command")?;
        let log_path = std::env::temp_dir().join(format!(
            "examples-daprd-{app_id}-{}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log_path)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Self {
            child: Mutex::new(child),
            http_port,
            log_path,
            keep_log: AtomicBool::new(false),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Waits until daprd is healthy with its app connected (`/v1.0/healthz`).
    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let url = format!("{}/v1.0/healthz", self.url());
        wait_for(Duration::from_secs(30), "daprd to be healthy", async || {
            self.check_alive()?;
            let healthy = get(&url).await.is_ok_and(|(status, _)| status == 204);
            Ok(healthy.then_some(()))
        })
        .await
        .map_err(|err| self.with_log(err))
    }

    /// Fails once daprd has exited (a failed start, a crash).
    fn check_alive(&self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .lock()
            .map_err(|_| anyhow::anyhow!("daprd handle poisoned"))?;
        match child.try_wait()? {
            Some(status) => bail!("daprd exited ({status})"),
            None => Ok(()),
        }
    }

    /// Adds the end of daprd's log to an error.
    fn with_log(&self, err: anyhow::Error) -> anyhow::Error {
        self.keep_log.store(true, Ordering::Relaxed);
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        err.context(format!("daprd log ({}):\n{tail}", self.log_path.display()))
    }
}

/// A consumer group that has just joined starts at the newest offset once its partitions are assigned.
/// Publishes rounds of events until one round arrives whole, so that every partition the test's partition
/// keys map to is being consumed before the real traffic starts.
async fn warm_up(
    sidecar: &Sidecar,
    client: &PubSubClient,
    round: impl Fn() -> anyhow::Result<Vec<Topical>>,
    seen: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    wait_for(
        Duration::from_secs(60),
        "the consumer group to receive a whole round of events",
        async || {
            sidecar.check_alive()?;
            let mut ids = Vec::new();
            for topical in round()? {
                client
                    .publish(PUBSUB_NAME, topical.topic, &topical.event)
                    .await?;
                ids.push(topical.event.id().to_owned());
            }
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                if ids.iter().all(|id| seen(id)) {
                    return Ok(Some(()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(None)
        },
    )
    .await
    .map_err(|err| sidecar.with_log(err))
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SIGTERM first: daprd leaves its Kafka consumer group cleanly, so the next run joins without waiting
        // for the group's session timeout.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                if !self.keep_log.load(Ordering::Relaxed) {
                    let _ = std::fs::remove_file(&self.log_path);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `check` every 100 ms until it yields a value or `limit` passes; an error ends the wait at once.
async fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() >= limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(url: &str) -> anyhow::Result<(u16, Bytes)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse()?)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Quiet unless `TEST_LOG=1`.
fn test_logger() -> Logger {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
        let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
        Logger::root(slog_term::FullFormat::new(decorator).build().fuse(), o!())
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// The tail example in-process behind its own daprd: every event of the three topics is printed once,
/// with its Kafka key and correlation id.
async fn tail_round_trip(publisher_endpoint: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let app_port = listener.local_addr()?.port();
    let output = SharedBuffer::default();
    let state = Arc::new(TailState::new(
        TailConfig::default(),
        Box::new(output.clone()),
    ));
    let server = tail::serve(listener, Arc::clone(&state), false)?;
    let server_handle = server.handle();
    tokio::spawn(server);
    let sidecar = Sidecar::start(TAIL_APP_ID, app_port)?;
    sidecar.wait_healthy().await?;

    let client = PubSubClient::new(ClientConfig::new(publisher_endpoint)?, test_logger());
    client.wait_until_ready(Duration::from_secs(10)).await?;
    let factory = TaskEventFactory::new("pakaura/examples-tail", Uuid::new_v4());
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    // One event per user on each of the three topics.
    let round = || -> anyhow::Result<Vec<Topical>> {
        let mut events = Vec::new();
        for user in &users {
            let task_id = Uuid::new_v4();
            events.extend(factory.created(*user, task_id, "tail")?);
            let data = payload(
                *user,
                task_id,
                "scheduled",
                [("due_date", json!("2026-12-01T09:00:00Z"))],
            );
            events.push(Topical::new(
                TOPIC_REMINDERS,
                factory.event("reminder.scheduled", *user, task_id, &data)?,
            ));
        }
        Ok(events)
    };
    warm_up(&sidecar, &client, &round, |id| output.text().contains(id)).await?;

    let expected = round()?;
    for topical in &expected {
        client
            .publish(PUBSUB_NAME, topical.topic, &topical.event)
            .await?;
    }
    wait_for(
        Duration::from_secs(30),
        "the tail to print every event",
        async || {
            sidecar.check_alive()?;
            let text = output.text();
            Ok(expected
                .iter()
                .all(|topical| text.contains(topical.event.id()))
                .then_some(()))
        },
    )
    .await
    .map_err(|err| sidecar.with_log(err))?;

    let text = output.text();
    for topical in &expected {
        let id = topical.event.id();
        let lines: Vec<&str> = text.lines().filter(|line| line.contains(id)).collect();
        let [line] = lines.as_slice() else {
            bail!("{id}: printed {} times", lines.len())
        };
        let key = topical
            .event
            .extension("partitionkey")
            .and_then(|value| value.as_str())
            .context("partitionkey")?;
        for part in [
            format!("  {}/", topical.topic),
            format!("  key={key}  "),
            format!("  {}  ", topical.event.ty()),
            format!("  correlationid={}  ", factory.correlation_id()),
        ] {
            ensure!(line.contains(&part), "{line:?} lacks {part:?}");
        }
        ensure!(!line.contains("INVALID"), "{line}");
    }
    ensure!(state.printed() >= expected.len() as u64);

    server_handle.stop(true).await;
    drop(sidecar);
    Ok(())
}

/// A line sink the test can read.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
