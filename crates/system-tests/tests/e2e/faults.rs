//! Fault injection while requests flow: a killed sidecar (fire-and-forget and outbox), a stopped Kafka (outbox), a
//! `kill -9` of the service with undelivered outbox rows, and a sidecar that accepts connections and never answers.
//! Each test prints its latencies and its counts (sent, delivered, duplicated, lost): the test output is the report.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::json;
use system_tests::KafkaReader;

use crate::api::{Api, Trace};
use crate::events::{self, Counts, PARTITIONS, TOPICS};
use crate::harness::{self, Daprd, Env, KafkaBackUp, TaskApi};

/// The phases of a fault test, relative to the fault.
const BEFORE: u8 = 0;
const DURING: u8 = 1;
const AFTER: u8 = 2;
const PHASES: [&str; 3] = ["before", "during", "after"];

/// One request of the load.
#[derive(Debug)]
struct Sample {
    phase: u8,
    task: Option<String>,
    status: u16,
    took: Duration,
}

/// A steady load of `POST /tasks` from `users`, one request at a time per user with `pause` between them, until
/// stopped; each sample is tagged with the phase current when it started.
struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    workers: tokio::task::JoinSet<Vec<Sample>>,
}

impl Load {
    fn start(api: &Api, users: &[(String, String)], pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU8::new(BEFORE));
        let mut workers = tokio::task::JoinSet::new();
        for token in users.iter().map(|(_, token)| token.clone()) {
            let (api, stop, phase) = (api.clone(), Arc::clone(&stop), Arc::clone(&phase));
            workers.spawn(async move {
                let mut samples = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let current = phase.load(Ordering::SeqCst);
                    let body = json!({"title": format!("load {n}")});
                    let sample = match api
                        .call(
                            "POST",
                            "/api/v1/tasks",
                            Some(&token),
                            &Trace::None,
                            Some(&body),
                        )
                        .await
                    {
                        Ok(answer) => Sample {
                            phase: current,
                            task: answer.body["id"].as_str().map(str::to_owned),
                            status: answer.status,
                            took: answer.took,
                        },
                        // No answer within 10 s, or no connection: a failed request.
                        Err(_) => Sample {
                            phase: current,
                            task: None,
                            status: 0,
                            took: Duration::from_secs(10),
                        },
                    };
                    samples.push(sample);
                    tokio::time::sleep(pause).await;
                }
                samples
            });
        }
        Self {
            stop,
            phase,
            workers,
        }
    }

    fn phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    async fn stop(mut self) -> anyhow::Result<Vec<Sample>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        while let Some(joined) = self.workers.join_next().await {
            all.extend(joined.context("a load worker panicked")?);
        }
        Ok(all)
    }
}

/// p50, p99 and max of the latencies of `phase`, and the number of requests.
fn latency(samples: &[Sample], phase: u8) -> (Duration, Duration, Duration, usize) {
    let mut took: Vec<Duration> = samples
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| s.took)
        .collect();
    took.sort();
    if took.is_empty() {
        return (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
    }
    let at = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index"
        )]
        let i = ((took.len() - 1) as f64 * q).round() as usize;
        took[i]
    };
    (at(0.5), at(0.99), took[took.len() - 1], took.len())
}

/// The tasks created in each phase.
type PhaseTasks = [Vec<String>; 3];

/// Prints the latencies per phase and checks that every request succeeded; returns the expected events of the
/// successful ones (`task.created` + `sync.task` per task) and the tasks of each phase.
#[expect(clippy::print_stderr, reason = "the test output is the report")]
fn summarize(
    name: &str,
    samples: &[Sample],
) -> anyhow::Result<(HashSet<(String, String)>, PhaseTasks)> {
    for (phase, label) in PHASES.iter().enumerate() {
        let (p50, p99, max, n) = latency(samples, u8::try_from(phase).unwrap_or_default());
        eprintln!(
            "{name}: {label} the fault: {n} requests, latency p50 {p50:?}, p99 {p99:?}, max {max:?}"
        );
    }
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.status != 201).collect();
    ensure!(
        failed.is_empty(),
        "{name}: {} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
    let mut expected = HashSet::new();
    let mut by_phase = PhaseTasks::default();
    for sample in samples {
        let task = sample.task.clone().context("a 201 without a task id")?;
        expected.insert((task.clone(), "task.created".to_owned()));
        expected.insert((task.clone(), "sync.task".to_owned()));
        by_phase[usize::from(sample.phase)].push(task);
    }
    Ok((expected, by_phase))
}

#[expect(clippy::print_stderr, reason = "the test output is the report")]
fn report(name: &str, counts: &Counts) {
    eprintln!("{name}: COUNTS {counts}");
}

/// Registers `n` users.
async fn users(api: &Api, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut users = Vec::new();
    for _ in 0..n {
        users.push(api.register().await?);
    }
    Ok(users)
}

fn user_ids(users: &[(String, String)]) -> HashSet<String> {
    users.iter().map(|(id, _)| id.clone()).collect()
}

/// What a daprd-killed run gives its test to check.
struct Outcome {
    counts: Counts,
    samples: Vec<Sample>,
    by_phase: PhaseTasks,
    /// The `(task id, type)` of every record that arrived.
    arrived: HashSet<(String, String)>,
}

/// Kill the private sidecar while requests flow, bring it back; shared by both delivery modes.
async fn daprd_killed(delivery: &str) -> anyhow::Result<Option<Outcome>> {
    let Some(env) = Env::get() else {
        return Ok(None);
    };
    let name = format!("fault daprd-killed ({delivery})");
    let mut kafka = KafkaReader::connect(&env.kafka, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;
    let mut daprd = Daprd::start(&env.daprd).await?;
    let (_database, server) = crate::start_service(
        &env.task_api,
        &env.database_url,
        &daprd.endpoint(),
        delivery,
    )
    .await?;
    let api = Api::new(&server.base());
    let users = users(&api, 2).await?;

    let load = Load::start(&api, &users, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.phase(DURING);
    daprd.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    daprd.restart().await?;
    // Give the service a moment to notice the sidecar is back before the "after" phase.
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.phase(AFTER);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.stop().await?;
    let (expected, by_phase) = summarize(&name, &samples)?;

    let within = if delivery == "outbox" { 120 } else { 30 };
    let received = events::collect(
        &kafka,
        &user_ids(&users),
        Duration::from_secs(within),
        |records| events::distinct(records) >= expected.len(),
    )
    .await?;
    let counts = events::count(&expected, &received).with_context(|| server.log_tail(20))?;
    report(&name, &counts);
    ensure!(counts.unexpected == 0, "{name}: unexpected events");
    ensure!(
        counts.id_changes == 0,
        "{name}: a redelivered event changed its id"
    );
    let arrived = received.iter().map(events::Received::what).collect();
    Ok(Some(Outcome {
        counts,
        samples,
        by_phase,
        arrived,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_and_forget_requests_neither_fail_nor_slow_down_while_daprd_is_killed()
-> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(Outcome {
        counts,
        samples,
        by_phase,
        arrived,
    }) = daprd_killed("fire-and-forget").await?
    else {
        return Ok(());
    };
    ensure!(
        counts.duplicated == 0,
        "fire-and-forget delivered duplicates: {counts}"
    );
    let (_, before_p99, _, _) = latency(&samples, BEFORE);
    let (_, during_p99, during_max, _) = latency(&samples, DURING);
    // Publishing is off the request path: the sidecar being gone costs the requests nothing measurable. The bound
    // is generous because the machine is shared; waiting for the sidecar would cost a publish deadline (2 s).
    ensure!(
        during_p99 <= before_p99 * 3 + Duration::from_millis(250)
            && during_max < Duration::from_secs(2),
        "requests slowed down while daprd was gone: p99 {during_p99:?} (before {before_p99:?}), max {during_max:?}"
    );
    // Events of requests made after the sidecar returned all arrive: fire-and-forget loses only what it could not
    // publish while the sidecar was gone.
    let after = &by_phase[usize::from(AFTER)];
    ensure!(!after.is_empty(), "no requests after daprd returned");
    let lost_after: Vec<&String> = after
        .iter()
        .filter(|task| {
            !arrived.contains(&((*task).clone(), "task.created".to_owned()))
                || !arrived.contains(&((*task).clone(), "sync.task".to_owned()))
        })
        .collect();
    ensure!(
        lost_after.is_empty(),
        "events of {} tasks created after daprd returned never arrived: {counts}",
        lost_after.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_every_event_once_daprd_returns_after_being_killed() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(Outcome { counts, .. }) = daprd_killed("outbox").await? else {
        return Ok(());
    };
    ensure!(counts.lost == 0, "the outbox lost events: {counts}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_delivers_every_event_after_kafka_was_stopped() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    let name = "fault kafka-stopped (outbox)";
    let mut kafka = KafkaReader::connect(&env.kafka, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;
    let daprd = Daprd::start(&env.daprd).await?;
    let (_database, server) = crate::start_service(
        &env.task_api,
        &env.database_url,
        &daprd.endpoint(),
        "outbox",
    )
    .await?;
    let api = Api::new(&server.base());
    let users = users(&api, 2).await?;

    let load = Load::start(&api, &users, Duration::from_millis(200));
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.phase(DURING);
    let back_up = KafkaBackUp;
    tokio::task::spawn_blocking(|| harness::stack(&["down", "kafka"])).await??;
    tokio::time::sleep(Duration::from_secs(5)).await;
    load.phase(AFTER);
    let samples = load.stop().await?;
    tokio::task::spawn_blocking(|| harness::stack(&["up", "kafka"])).await??;
    drop(back_up);
    let (expected, _) = summarize(name, &samples)?;

    kafka.reconnect(&env.kafka, &TOPICS, PARTITIONS).await?;
    let received = events::collect(
        &kafka,
        &user_ids(&users),
        Duration::from_secs(240),
        |records| events::distinct(records) >= expected.len(),
    )
    .await?;
    let counts = events::count(&expected, &received).with_context(|| server.log_tail(20))?;
    report(name, &counts);
    ensure!(counts.lost == 0, "{name}: the outbox lost events: {counts}");
    ensure!(
        counts.id_changes == 0 && counts.unexpected == 0,
        "{name}: {counts}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stderr, reason = "the test output is the report")]
async fn outbox_rows_left_by_a_killed_service_are_delivered_after_restart() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    let name = "fault task-api-killed (outbox)";
    let mut kafka = KafkaReader::connect(&env.kafka, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;
    let mut daprd = Daprd::start(&env.daprd).await?;
    let (database, mut server) = crate::start_service(
        &env.task_api,
        &env.database_url,
        &daprd.endpoint(),
        "outbox",
    )
    .await?;
    let api = Api::new(&server.base());
    let users = users(&api, 2).await?;

    // Some events delivered, then the sidecar goes away and the rest pile up in the outbox.
    let load = Load::start(&api, &users, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.phase(DURING);
    daprd.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = load.stop().await?;
    let (expected, _) = summarize(name, &samples)?;
    let pending = harness::sql(
        database.url(),
        "SELECT count(*) FROM event_outbox WHERE failed_at IS NULL",
    )?;
    eprintln!("{name}: {pending} undelivered outbox rows when task-api gets kill -9");
    ensure!(
        pending.parse::<u64>().unwrap_or_default() > 0,
        "{name}: no undelivered rows to test with"
    );
    server.kill();
    drop(server);

    daprd.restart().await?;
    let env_vars = crate::service_env(database.url(), &daprd.endpoint(), "outbox");
    let restarted = TaskApi::start(&env.task_api, &env_vars)?;
    let received = events::collect(
        &kafka,
        &user_ids(&users),
        Duration::from_secs(120),
        |records| events::distinct(records) >= expected.len(),
    )
    .await?;
    let counts = events::count(&expected, &received).with_context(|| restarted.log_tail(20))?;
    report(name, &counts);
    ensure!(counts.lost == 0, "{name}: the outbox lost events: {counts}");
    ensure!(
        counts.id_changes == 0 && counts.unexpected == 0,
        "{name}: {counts}"
    );
    let left = harness::eventually(Duration::from_secs(30), || async {
        harness::sql(
            database.url(),
            "SELECT count(*) FROM event_outbox WHERE failed_at IS NULL",
        )
        .ok()
        .filter(|n| n == "0")
    })
    .await;
    ensure!(left.is_some(), "{name}: delivered rows stay in the outbox");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::print_stderr, reason = "the test output is the report")]
async fn requests_stay_fast_when_the_sidecar_hangs() -> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    // A "sidecar" that accepts connections, reads nothing and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let accepted = Arc::new(AtomicUsize::new(0));
    let hang = {
        let accepted = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        })
    };
    for delivery in ["fire-and-forget", "outbox"] {
        let name = format!("fault hanging-sidecar ({delivery})");
        let (database, server) =
            crate::start_service(&env.task_api, &env.database_url, &endpoint, delivery).await?;
        let api = Api::new(&server.base());
        let users = users(&api, 2).await?;
        let load = Load::start(&api, &users, Duration::from_millis(50));
        load.phase(DURING);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let samples = load.stop().await?;
        let (expected, _) = summarize(&name, &samples)?;
        let (_, p99, max, _) = latency(&samples, DURING);
        ensure!(
            p99 < Duration::from_secs(1) && max < Duration::from_secs(2),
            "{name}: requests waited for the hanging sidecar: p99 {p99:?}, max {max:?}"
        );
        ensure!(
            accepted.load(Ordering::SeqCst) > 0,
            "{name}: the service never tried the sidecar"
        );
        let pending = if delivery == "outbox" {
            harness::sql(
                database.url(),
                "SELECT count(*) FROM event_outbox WHERE failed_at IS NULL",
            )?
        } else {
            "none (fire-and-forget)".to_owned()
        };
        eprintln!(
            "{name}: sent {} events, delivered 0 (the sidecar never answers), {} connections to it, kept in the outbox: {pending}",
            expected.len(),
            accepted.load(Ordering::SeqCst)
        );
        if delivery == "outbox" {
            ensure!(
                pending.parse::<usize>().unwrap_or_default() == expected.len(),
                "{name}: {pending} rows pending in the outbox, expected all {}",
                expected.len()
            );
        }
    }
    hang.abort();
    Ok(())
}
