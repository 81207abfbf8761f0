//! Two `task-api` replicas, each beside its own `daprd`, on one PostgreSQL database in outbox mode (the chart's
//! default `replicaCount: 2`), while requests alternate between them: one `daprd` is killed mid-load and restarted,
//! then one replica is `kill -9`'d and restarted. What Kafka holds, read as a consumer that keeps the first copy of
//! each event id, must lose nothing and keep each task's events in commit order (its `sequence`) in every
//! partition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::json;
use system_tests::KafkaReader;

use crate::api::{Api, Trace};
use crate::events::{self, PARTITIONS, Received, TOPICS};
use crate::harness::{self, Daprd, Database, Env, TaskApi};

const USERS: usize = 4;
const TASKS_PER_USER: usize = 2;

/// The replicas' addresses (a restarted replica gets a new port) and which one is down.
struct Replicas {
    bases: RwLock<[String; 2]>,
    down: [AtomicBool; 2],
}

impl Replicas {
    /// The replica for request `n`: alternating, skipping one that is down.
    fn pick(&self, n: usize) -> Api {
        let mut index = n % 2;
        if self.down[index].load(Ordering::SeqCst) {
            index = 1 - index;
        }
        Api::new(&self.bases.read().expect("bases lock")[index])
    }
}

/// What one user's worker did: per task, the events its successful requests must have caused
/// (`type` → count), and the tasks where a request failed without an answer (it may or may not have committed).
#[derive(Default)]
struct Done {
    expected: HashMap<(String, String), usize>,
    uncertain: HashSet<String>,
}

/// One user's sequential load until `stop`: per step, on one of its tasks, a PATCH with a unique title or a
/// completion flip; each changes the task, so each success causes exactly one task event and one `sync.task`.
async fn user_load(
    replicas: Arc<Replicas>,
    token: String,
    tasks: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Done {
    let mut done = Done::default();
    let mut completed = vec![false; tasks.len()];
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let which = n % tasks.len();
        let task = &tasks[which];
        let (method, path, body, ty) = if n % 3 == 0 {
            let ty = if completed[which] {
                "task.uncompleted"
            } else {
                "task.completed"
            };
            let action = if completed[which] {
                "uncomplete"
            } else {
                "complete"
            };
            ("POST", format!("/api/v1/tasks/{task}/{action}"), None, ty)
        } else {
            (
                "PATCH",
                format!("/api/v1/tasks/{task}"),
                Some(json!({"title": format!("{task} step {n}")})),
                "task.updated",
            )
        };
        let api = replicas.pick(n);
        match api
            .call(method, &path, Some(&token), &Trace::None, body.as_ref())
            .await
        {
            Ok(answer) if answer.status == 200 => {
                if ty != "task.updated" {
                    completed[which] = !completed[which];
                }
                for ty in [ty, "sync.task"] {
                    *done
                        .expected
                        .entry((task.clone(), ty.to_owned()))
                        .or_default() += 1;
                }
            }
            // A replica killed under the request: it may have committed. Its completion state is unknown too.
            _ => {
                done.uncertain.insert(task.clone());
                return done;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done
}

/// The rows still in `event_outbox`.
fn outbox_backlog(database: &Database) -> anyhow::Result<usize> {
    let count = harness::sql(database.url(), "SELECT count(*) FROM event_outbox")?;
    count
        .trim()
        .parse()
        .with_context(|| format!("counting the outbox: {count:?}"))
}

#[expect(
    clippy::print_stderr,
    reason = "the test prints its counts: the test output is the report"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_two_daprds_keep_per_task_order_and_lose_nothing_through_faults()
-> anyhow::Result<()> {
    let _serial = crate::SERIAL.lock().await;
    let Some(env) = Env::get() else {
        return Ok(());
    };
    let mut kafka = KafkaReader::connect(&env.kafka, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;
    let database = Database::empty(&env.database_url).await?;
    harness::migrate(&env.task_api, database.url())?;
    let mut daprds = [
        Daprd::start(&env.daprd).await?,
        Daprd::start(&env.daprd).await?,
    ];
    let service_env =
        |daprd: &Daprd| crate::service_env(database.url(), &daprd.endpoint(), "outbox");
    let mut servers = [
        TaskApi::start(&env.task_api, &service_env(&daprds[0]))?,
        TaskApi::start(&env.task_api, &service_env(&daprds[1]))?,
    ];
    let replicas = Arc::new(Replicas {
        bases: RwLock::new([servers[0].base(), servers[1].base()]),
        down: [AtomicBool::new(false), AtomicBool::new(false)],
    });

    // Users and their tasks, created through both replicas.
    let mut users = Vec::new();
    let mut created = Vec::new();
    for u in 0..USERS {
        let (user, token) = replicas.pick(u).register().await?;
        let mut tasks = Vec::new();
        for t in 0..TASKS_PER_USER {
            let answer = replicas
                .pick(u + t)
                .expect(
                    201,
                    "POST",
                    "/api/v1/tasks",
                    Some(&token),
                    &Trace::None,
                    Some(&json!({"title": format!("task {t} of user {u}")})),
                )
                .await?;
            let id = answer.body["id"].as_str().context("task id")?.to_owned();
            created.push(id.clone());
            tasks.push(id);
        }
        users.push((user, token, tasks));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for (_, token, tasks) in &users {
        workers.spawn(user_load(
            Arc::clone(&replicas),
            token.clone(),
            tasks.clone(),
            Arc::clone(&stop),
        ));
    }
    // Fault 1: the first replica's sidecar dies for 4 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daprds[0].kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    daprds[0].restart().await?;
    // Fault 2: the second replica is killed (kill -9) with whatever it had leased, then restarted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    replicas.down[1].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    servers[1].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers[1] = TaskApi::start(&env.task_api, &service_env(&daprds[1]))?;
    replicas.bases.write().expect("bases lock")[1] = servers[1].base();
    replicas.down[1].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut expected: HashMap<(String, String), usize> = HashMap::new();
    let mut uncertain = HashSet::new();
    while let Some(done) = workers.join_next().await {
        let done = done.context("a load worker panicked")?;
        for (key, count) in done.expected {
            *expected.entry(key).or_default() += count;
        }
        uncertain.extend(done.uncertain);
    }
    for task in &created {
        for ty in ["task.created", "sync.task"] {
            *expected.entry((task.clone(), ty.to_owned())).or_default() += 1;
        }
    }
    let sent: usize = expected.values().sum();

    // The relays drain the outbox; then every event must be in Kafka.
    let drained = harness::eventually(Duration::from_secs(120), || async {
        outbox_backlog(&database).ok().filter(|rows| *rows == 0)
    })
    .await;
    ensure!(
        drained.is_some(),
        "the outbox did not drain: {:?} rows left\n{}\n{}",
        outbox_backlog(&database),
        servers[0].log_tail(20),
        servers[1].log_tail(20)
    );
    let user_ids: HashSet<String> = users.iter().map(|(id, ..)| id.clone()).collect();
    let received = events::collect(&kafka, &user_ids, Duration::from_secs(60), |records| {
        distinct_ids(records) >= sent
    })
    .await?;
    for record in &received {
        events::check_envelope(record)
            .with_context(|| format!("record {}: {}", record.offset, record.raw))?;
    }

    // Nothing lost: each task has as many distinct event ids of each type as its successful requests caused.
    let mut ids: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for record in &received {
        ids.entry(record.what()).or_default().insert(record.id());
    }
    let mut lost = Vec::new();
    for ((task, ty), count) in &expected {
        let got = ids.get(&(task.clone(), ty.clone())).map_or(0, HashSet::len);
        let exact = !uncertain.contains(task);
        if got < *count || (exact && got != *count) {
            lost.push(format!("{task} {ty}: expected {count}, got {got}"));
        }
    }
    ensure!(lost.is_empty(), "events lost or extra: {lost:#?}");

    // Commit order per task in every partition, for a consumer that keeps the first copy of each id.
    let mut partitions: BTreeMap<(String, i32), Vec<&Received>> = BTreeMap::new();
    for record in &received {
        partitions
            .entry((record.topic.clone(), record.partition))
            .or_default()
            .push(record);
    }
    let mut first_copies: HashMap<String, Vec<&Received>> = HashMap::new();
    for records in partitions.values_mut() {
        records.sort_by_key(|record| record.offset);
        let mut seen = HashSet::new();
        let mut last: HashMap<&str, &str> = HashMap::new();
        for record in records.iter() {
            if !seen.insert(record.id()) {
                continue;
            }
            let subject = record.raw["subject"].as_str().unwrap_or_default();
            let sequence = record.raw["sequence"].as_str().unwrap_or_default();
            if let Some(before) = last.insert(subject, sequence) {
                ensure!(
                    before < sequence,
                    "{} partition {}: task {subject} has sequence {sequence} at offset {} after {before}",
                    record.topic,
                    record.partition,
                    record.offset
                );
            }
            first_copies
                .entry(subject.to_owned())
                .or_default()
                .push(record);
        }
    }

    // The last title a first-copy consumer applies is the stored title.
    for (_, token, tasks) in &users {
        for task in tasks {
            let stored = replicas
                .pick(0)
                .expect(
                    200,
                    "GET",
                    &format!("/api/v1/tasks/{task}"),
                    Some(token),
                    &Trace::None,
                    None,
                )
                .await?;
            let last_title = first_copies
                .get(task)
                .into_iter()
                .flatten()
                .filter(|record| {
                    matches!(
                        record.raw["type"].as_str(),
                        Some("task.created" | "task.updated")
                    )
                })
                .filter_map(|record| record.raw["data"]["title"].as_str())
                .next_back();
            ensure!(
                last_title == stored.body["title"].as_str(),
                "task {task}: the consumer ends with title {last_title:?}, the service has {}",
                stored.body["title"]
            );
        }
    }
    let duplicates = received.len() - distinct_ids(&received);
    eprintln!(
        "two replicas: sent {sent}, records {}, duplicates {duplicates}, uncertain tasks {}",
        received.len(),
        uncertain.len()
    );
    Ok(())
}

fn distinct_ids(records: &[Received]) -> usize {
    records
        .iter()
        .map(Received::id)
        .collect::<HashSet<_>>()
        .len()
}
