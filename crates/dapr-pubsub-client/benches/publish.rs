//! Publish benchmark: this client against a bare hyper request, a new client per publish and
//! (with a real daprd) the `dapr` crate's gRPC publish, plus the dispatcher's sustained rate.
//!
//! Run: `cargo bench -p dapr-pubsub-client --bench publish`. Every variant talks to the same
//! local no-op HTTP sink (a hyper server in this process answering 204). Rounds of the variants
//! are interleaved and the best round is reported, because shared machines are noisy.
//!
//! Knobs (environment): `BENCH_ROUNDS` (9), `BENCH_SEQUENTIAL` (1000 requests per round),
//! `BENCH_CONCURRENT` (10000 requests per round), `BENCH_CONCURRENCY` (16),
//! `BENCH_DISPATCH_EVENTS` (10000), `BENCH_WORKERS` (2 runtime threads), `BENCH_PACED_RATE`
//! (4000 events/s) and `BENCH_PACED_MS` (2000) for the paced batching comparison,
//! `BENCH_ONLY=batching` to run only the batching comparisons.
//! With `PAKAURA_DAPR_HTTP_ENDPOINT` set, the same comparisons also run against that daprd
//! (pubsub `pubsub-kafka`, topic `task-events`), and with `PAKAURA_DAPR_GRPC_ENDPOINT` the
//! `dapr` crate is measured against its gRPC port.
#![expect(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloudevents_model::CloudEvent;
use dapr_pubsub_client::{
    ClientConfig, Dispatcher, DispatcherConfig, PubSubClient, PublishOptions,
};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

const PUBSUB: &str = "pubsub-kafka";
/// The topic: `BENCH_TOPIC`, else `task-events` (the local sink ignores it; with a real daprd
/// pick a scratch topic so that the benchmark's events do not mix with real ones).
fn topic() -> &'static str {
    static TOPIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOPIC.get_or_init(|| {
        std::env::var("BENCH_TOPIC")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "task-events".to_owned())
    })
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    rounds: usize,
    sequential: usize,
    concurrent: usize,
    concurrency: usize,
    dispatch_events: usize,
    warmup: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then only a quick
    // smoke run checks that every variant works.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let scale = |full: usize, quick: usize| if smoke { quick } else { full };
    let workers = env_usize("BENCH_WORKERS", 2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let settings = Settings {
        rounds: env_usize("BENCH_ROUNDS", scale(9, 1)).max(1),
        sequential: env_usize("BENCH_SEQUENTIAL", scale(1000, 20)).max(1),
        concurrent: env_usize("BENCH_CONCURRENT", scale(10_000, 200)).max(1),
        concurrency: env_usize("BENCH_CONCURRENCY", 16).max(1),
        dispatch_events: env_usize("BENCH_DISPATCH_EVENTS", scale(10_000, 500)).max(1),
        warmup: scale(200, 5),
    };
    if smoke {
        println!("smoke run (no --bench argument): tiny counts, numbers meaningless");
    }
    println!(
        "# dapr-pubsub-client publish benchmark ({workers} runtime threads, {} rounds, best round shown)\n",
        settings.rounds
    );
    runtime.block_on(async {
        let sink = spawn_sink().await;
        let base = format!("http://{sink}");
        println!("## local no-op sink ({base})\n");
        let only_batching = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "batching");
        if !only_batching {
            compare(&settings, &base, None).await;
            dispatcher_rate(&settings, &base).await;
        }
        batching_burst(&base, settings.dispatch_events, settings.rounds.min(5)).await;
        batching_paced(&settings, &base).await;

        match std::env::var("PAKAURA_DAPR_HTTP_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(endpoint) => {
                println!("\n## real daprd ({endpoint})\n");
                let grpc = std::env::var("PAKAURA_DAPR_GRPC_ENDPOINT")
                    .ok()
                    .filter(|v| !v.is_empty());
                if grpc.is_none() {
                    println!("(dapr crate skipped: PAKAURA_DAPR_GRPC_ENDPOINT is not set)\n");
                }
                if !only_batching {
                    compare(&settings, endpoint.trim_end_matches('/'), grpc).await;
                }
                // Kafka acknowledgements make daprd slow per request: fewer events, two rounds.
                batching_burst(
                    endpoint.trim_end_matches('/'),
                    settings.dispatch_events.min(2000),
                    settings.rounds.min(2),
                )
                .await;
            }
            None => println!(
                "\nreal daprd and dapr crate runs skipped: PAKAURA_DAPR_HTTP_ENDPOINT is not set"
            ),
        }
    });
}

/// A hyper HTTP/1 server that reads each request body and answers 204 (also to bulk publish
/// requests, as daprd does when every entry was published).
async fn spawn_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the sink");
    let addr = listener.local_addr().expect("sink address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn event(i: usize) -> CloudEvent {
    CloudEvent::builder(format!("bench-{i}"), "pakaura/api", "task.created")
        .subject(format!("task-{i}"))
        .json_data(&serde_json::json!({
            "task_id": format!("task-{i}"),
            "user_id": format!("user-{}", i % 64),
            "action": "created",
            "title": "benchmark the publisher",
            "completed": false,
            "timestamp": "2026-01-01T00:00:00Z",
        }))
        .extension("partitionkey", format!("user-{}", i % 64))
        .build()
        .expect("a valid event")
}

/// A bare hyper client sending exactly what the publish client sends, with a pre-built body.
#[derive(Clone)]
struct Bare {
    http: Client<HttpConnector, Full<Bytes>>,
    base: Arc<str>,
    body: Bytes,
}

impl Bare {
    fn new(base: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            http: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_max_idle_per_host(64)
                .build(connector),
            base: base.into(),
            body: Bytes::from(serde_json::to_vec(&event(0)).expect("serialize")),
        }
    }

    /// Sends event `i`: serialized now (`serialize`), as a hand-written publish would, or the
    /// pre-serialized body (the floor: HTTP only).
    async fn publish(&self, i: usize, serialize: bool) {
        let body = if serialize {
            Bytes::from(serde_json::to_vec(&events()[i % 64]).expect("serialize"))
        } else {
            self.body.clone()
        };
        let uri = format!(
            "{}/v1.0/publish/{PUBSUB}/{}?metadata.partitionKey=user-{}",
            self.base,
            topic(),
            i % 64
        );
        let request = Request::post(uri)
            .header("content-type", "application/cloudevents+json")
            .body(Full::new(body))
            .expect("a request");
        let response = self.http.request(request).await.expect("the sink answers");
        assert!(response.status().is_success(), "{}", response.status());
        let _ = response.into_body().collect().await;
    }
}

fn client(base: &str) -> PubSubClient {
    PubSubClient::new(
        ClientConfig::new(base)
            .expect("a base url")
            .with_pool_max_idle_per_host(64),
        None,
    )
}

/// Events built once (64 users), so that building them is not part of any measurement.
fn events() -> &'static [CloudEvent] {
    static EVENTS: std::sync::OnceLock<Vec<CloudEvent>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| (0..64).map(event).collect())
}

/// A publish variant under test.
#[derive(Clone)]
enum Variant {
    /// Hand-written with hyper: serialize the event, build the URL, send.
    Bare(Bare),
    /// The same with a pre-serialized body: the cost of the HTTP exchange alone.
    BarePreSerialized(Bare),
    Client(PubSubClient),
    NewClientPerPublish(Arc<str>),
    DaprCrate(dapr::Client<dapr::client::TonicClientWithAuth>),
}

impl Variant {
    fn name(&self) -> &'static str {
        match self {
            Self::Bare(_) => "bare hyper request (serde_json + hyper)",
            Self::BarePreSerialized(_) => "bare hyper, pre-serialized body",
            Self::Client(_) => "PubSubClient::publish",
            Self::NewClientPerPublish(_) => "new client per publish",
            Self::DaprCrate(_) => "dapr crate publish_event (gRPC)",
        }
    }

    fn publish(&self, i: usize) -> impl Future<Output = ()> + Send + 'static {
        let variant = self.clone();
        async move {
            match variant {
                Variant::Bare(bare) => bare.publish(i, true).await,
                Variant::BarePreSerialized(bare) => bare.publish(i, false).await,
                Variant::Client(client) => client
                    .publish(PUBSUB, topic(), &events()[i % 64])
                    .await
                    .expect("publish"),
                Variant::NewClientPerPublish(base) => client(&base)
                    .publish(PUBSUB, topic(), &events()[i % 64])
                    .await
                    .expect("publish"),
                Variant::DaprCrate(mut dapr) => {
                    let body = serde_json::to_vec(&events()[i % 64]).expect("serialize");
                    let metadata =
                        HashMap::from([("partitionKey".to_owned(), format!("user-{}", i % 64))]);
                    dapr.publish_event(
                        PUBSUB,
                        topic(),
                        "application/cloudevents+json",
                        body,
                        Some(metadata),
                    )
                    .await
                    .expect("dapr publish");
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Round {
    per_second: f64,
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

async fn sequential_round(variant: &Variant, requests: usize) -> Round {
    let mut latencies = Vec::with_capacity(requests);
    let started = Instant::now();
    for i in 0..requests {
        let t = Instant::now();
        variant.publish(i).await;
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    Round {
        per_second: requests as f64 / total.as_secs_f64(),
        mean: total / requests as u32,
        p50: latencies[latencies.len() / 2],
        p99: latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)],
    }
}

async fn concurrent_round(variant: &Variant, requests: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let per_task = requests.div_ceil(concurrency);
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let variant = variant.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    variant.publish(task * per_task + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a publishing task");
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

/// The fastest round: background load on a shared machine only ever slows a round down, so
/// the best round is the least disturbed estimate.
fn best<T: Clone>(values: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    values
        .into_iter()
        .max_by(|a, b| key(a).total_cmp(&key(b)))
        .expect("at least one round")
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Sequential latency and concurrent throughput of each variant, interleaved per round.
async fn compare(settings: &Settings, base: &str, grpc: Option<String>) {
    let mut variants = vec![
        Variant::Bare(Bare::new(base)),
        Variant::Client(client(base)),
        Variant::BarePreSerialized(Bare::new(base)),
        Variant::NewClientPerPublish(base.into()),
    ];
    if let Some(grpc) = grpc {
        let options = dapr::client::ClientOptions::new().with_address(grpc);
        let dapr = dapr::Client::<dapr::client::TonicClientWithAuth>::from_options(options)
            .await
            .expect("connect the dapr crate to PAKAURA_DAPR_GRPC_ENDPOINT");
        variants.push(Variant::DaprCrate(dapr));
    }
    // Warm up pools and code paths.
    for variant in &variants {
        for i in 0..settings.warmup {
            variant.publish(i).await;
        }
    }

    let mut sequential: Vec<Vec<Round>> = variants.iter().map(|_| Vec::new()).collect();
    let mut concurrent: Vec<Vec<f64>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..settings.rounds {
        for (index, variant) in variants.iter().enumerate() {
            let requests = match variant {
                // Every publish opens a connection: fewer of them keep the run short.
                Variant::NewClientPerPublish(_) => (settings.sequential / 4).max(1),
                _ => settings.sequential,
            };
            sequential[index].push(sequential_round(variant, requests).await);
            let requests = match variant {
                Variant::NewClientPerPublish(_) => (settings.concurrent / 10).max(1),
                _ => settings.concurrent,
            };
            concurrent[index].push(concurrent_round(variant, requests, settings.concurrency).await);
        }
    }

    let sequential: Vec<Round> = sequential
        .into_iter()
        .map(|rounds| best(rounds, |r| r.per_second))
        .collect();
    let concurrent: Vec<f64> = concurrent
        .into_iter()
        .map(|rounds| best(rounds, |r| *r))
        .collect();
    let reference_latency = sequential[1].mean.as_secs_f64();
    let reference_rate = concurrent[1];
    println!(
        "| variant | sequential mean | p50 | p99 | sequential req/s | {}-way req/s | mean latency vs PubSubClient | throughput vs PubSubClient |",
        settings.concurrency
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (index, variant) in variants.iter().enumerate() {
        let round = &sequential[index];
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.3}× | {:.3}× |",
            variant.name(),
            micros(round.mean),
            micros(round.p50),
            micros(round.p99),
            round.per_second,
            concurrent[index],
            round.mean.as_secs_f64() / reference_latency,
            concurrent[index] / reference_rate,
        );
    }
    for (reference, label) in [
        (0, "bare hyper + serde_json"),
        (2, "bare hyper, pre-serialized"),
    ] {
        let overhead_latency =
            sequential[1].mean.as_secs_f64() / sequential[reference].mean.as_secs_f64() - 1.0;
        let overhead_p50 =
            sequential[1].p50.as_secs_f64() / sequential[reference].p50.as_secs_f64() - 1.0;
        let overhead_rate = 1.0 - concurrent[1] / concurrent[reference];
        println!(
            "\nPubSubClient over {label}: {:+.1}% mean latency, {:+.1}% p50 latency (sequential), {:+.1}% throughput cost ({}-way)",
            overhead_latency * 100.0,
            overhead_p50 * 100.0,
            overhead_rate * 100.0,
            settings.concurrency
        );
    }
    println!();
}

/// Sustained dispatcher rate: another thread submits everything (as web-server threads would),
/// the runtime delivers; measured from the first submit until the queue is drained.
async fn dispatcher_rate(settings: &Settings, base: &str) {
    // Cost of `submit` alone (serialize + enqueue): the single lane is stuck on a sidecar that
    // never answers, so no delivery work competes with the loop.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let events: Arc<Vec<CloudEvent>> = Arc::new((0..settings.dispatch_events).map(event).collect());
    let mut submit_costs = Vec::new();
    for _ in 0..settings.rounds.min(5) {
        let dispatcher = Dispatcher::spawn(
            client(&silent_url),
            DispatcherConfig::new()
                .with_concurrency(1)
                .with_queue_capacity(settings.dispatch_events + 1),
            None,
        );
        dispatcher
            .submit(PUBSUB, topic(), &events[0], PublishOptions::new())
            .expect("room in the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        for event in events.iter() {
            dispatcher
                .submit(PUBSUB, topic(), event, PublishOptions::new())
                .expect("room in the queue");
        }
        submit_costs.push(started.elapsed().as_nanos() as f64 / settings.dispatch_events as f64);
        let _ = dispatcher.shutdown(Duration::from_millis(1)).await;
    }
    let submit_cost = best(submit_costs, |ns| -*ns);
    println!("dispatcher `submit` alone: {submit_cost:.0} ns per event (serialize + enqueue)\n");

    println!("| dispatcher lanes | events | submitted in | drained in | events/s |");
    println!("|---|---|---|---|---|");
    for lanes in [8, 16, 32] {
        let mut rounds = Vec::new();
        for _ in 0..settings.rounds.min(5) {
            let dispatcher = Dispatcher::spawn(
                client(base),
                DispatcherConfig::new()
                    .with_concurrency(lanes)
                    .with_queue_capacity(settings.dispatch_events),
                None,
            );
            let started = Instant::now();
            let submitter = {
                let dispatcher = dispatcher.clone();
                let events = Arc::clone(&events);
                std::thread::spawn(move || {
                    for event in events.iter() {
                        dispatcher
                            .submit(PUBSUB, topic(), event, PublishOptions::new())
                            .expect("room in the queue");
                    }
                    started.elapsed()
                })
            };
            let submitted =
                tokio::task::spawn_blocking(move || submitter.join().expect("submitter"))
                    .await
                    .expect("join");
            let report = dispatcher.shutdown(Duration::from_secs(600)).await;
            let elapsed = started.elapsed();
            assert!(report.is_complete(), "everything delivered");
            assert_eq!(report.metrics.published as usize, settings.dispatch_events);
            rounds.push((submitted, elapsed));
        }
        let (submitted, elapsed) = best(rounds, |(_, e)| -e.as_secs_f64());
        println!(
            "| {lanes} | {} | {:.0} ms | {:.0} ms | {:.0} |",
            settings.dispatch_events,
            submitted.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3,
            settings.dispatch_events as f64 / elapsed.as_secs_f64(),
        );
    }
}

/// CPU time used by this process so far (user + system, all threads), from `/proc/self/stat`
/// (clock ticks of 10 ms); `None` off Linux.
fn process_cpu() -> Option<Duration> {
    cpu_of("/proc/self/stat")
}

/// CPU time used by the calling thread so far, like [`process_cpu`].
fn thread_cpu() -> Option<Duration> {
    cpu_of("/proc/thread-self/stat")
}

fn cpu_of(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What one dispatcher run cost.
#[derive(Clone, Copy)]
struct BatchRun {
    elapsed: Duration,
    /// CPU of the process minus the submitting thread: dispatcher, client and sink.
    cpu: Option<Duration>,
    requests: u64,
    bulk_requests: u64,
    bulk_entries: u64,
}

/// Submits `events` from another thread (paced at `rate` events/s, or as fast as possible when
/// `rate` is 0), `keys` partition keys, and waits for the queue to drain.
async fn batch_run(
    base: &str,
    config: DispatcherConfig,
    events: usize,
    keys: usize,
    rate: usize,
) -> BatchRun {
    let dispatcher = Dispatcher::spawn(client(base), config.with_queue_capacity(events + 1), None);
    let cpu_before = process_cpu();
    let started = Instant::now();
    let submitter = {
        let dispatcher = dispatcher.clone();
        std::thread::spawn(move || {
            let events_list = events_for_keys(keys);
            let cpu_at_start = thread_cpu();
            for i in 0..events {
                if rate > 0 {
                    // Paced: event i is due at i / rate seconds.
                    let due = Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let event = &events_list[i % events_list.len()];
                dispatcher
                    .submit(PUBSUB, topic(), event, PublishOptions::new())
                    .expect("room in the queue");
            }
            thread_cpu()
                .zip(cpu_at_start)
                .map(|(end, start)| end.saturating_sub(start))
        })
    };
    let submit_cpu = tokio::task::spawn_blocking(move || submitter.join().expect("submitter"))
        .await
        .expect("join");
    let report = dispatcher.shutdown(Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    assert!(report.is_complete(), "everything delivered");
    assert_eq!(report.metrics.published as usize, events);
    BatchRun {
        elapsed,
        cpu: process_cpu()
            .zip(cpu_before)
            .zip(submit_cpu)
            .map(|((after, before), submit)| after.saturating_sub(before).saturating_sub(submit)),
        // HTTP requests: one per event published alone (no retries happen against a sink that
        // always answers 204), plus the bulk requests.
        requests: report.metrics.published - report.metrics.bulk_entries
            + report.metrics.bulk_requests,
        bulk_requests: report.metrics.bulk_requests,
        bulk_entries: report.metrics.bulk_entries,
    }
}

/// 64 events spread over `keys` partition keys (`user-0` … ), built once per run.
fn events_for_keys(keys: usize) -> Vec<CloudEvent> {
    (0..64)
        .map(|i| {
            let key = format!("user-{}", i % keys.max(1));
            CloudEvent::builder(format!("bench-{i}"), "pakaura/api", "task.created")
                .subject(format!("task-{i}"))
                .json_data(&serde_json::json!({
                    "task_id": format!("task-{i}"),
                    "user_id": key,
                    "action": "created",
                    "title": "benchmark the publisher",
                    "completed": false,
                    "timestamp": "2026-01-01T00:00:00Z",
                }))
                .extension("partitionkey", key)
                .build()
                .expect("a valid event")
        })
        .collect()
}

/// Events per HTTP request (single and bulk requests together), and the mean size of the bulk
/// requests alone.
fn per_request(run: &BatchRun, events: usize) -> String {
    let requests = run.requests.max(1) as f64;
    if run.bulk_requests == 0 {
        format!("{:.2} | –", events as f64 / requests)
    } else {
        format!(
            "{:.2} | {:.1}",
            events as f64 / requests,
            run.bulk_entries as f64 / run.bulk_requests as f64
        )
    }
}

/// Burst: every event submitted at once (64 keys, 8 lanes); unbatched and batched runs
/// interleaved round by round, best round of each.
async fn batching_burst(base: &str, events: usize, rounds: usize) {
    let variants = [
        (
            "unbatched (max_batch 1)",
            DispatcherConfig::new().with_concurrency(8),
        ),
        (
            "batched (max_batch 32)",
            DispatcherConfig::new()
                .with_concurrency(8)
                .with_max_batch(32),
        ),
    ];
    let mut runs: Vec<Vec<BatchRun>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds.max(1) {
        for offset in 0..variants.len() {
            let index = (round + offset) % variants.len();
            runs[index].push(batch_run(base, variants[index].1.clone(), events, 64, 0).await);
        }
    }
    let best_runs: Vec<BatchRun> = runs
        .into_iter()
        .map(|r| best(r, |run| -run.elapsed.as_secs_f64()))
        .collect();
    let base_rate = events as f64 / best_runs[0].elapsed.as_secs_f64();
    println!(
        "\n### dispatcher batching, burst ({events} events submitted at once, 64 keys, 8 lanes, {base})\n"
    );
    println!(
        "| variant | drained in | events/s | vs unbatched | requests | events per request | mean bulk batch |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((name, _), run) in variants.iter().zip(&best_runs) {
        let rate = events as f64 / run.elapsed.as_secs_f64();
        println!(
            "| {name} | {:.0} ms | {rate:.0} | {:.2}× | {} | {} |",
            run.elapsed.as_secs_f64() * 1e3,
            rate / base_rate,
            run.requests,
            per_request(run, events),
        );
    }
}

/// Paced: events submitted at a steady rate (like a web server's), for one key (all on one lane,
/// as in the load benchmark's one user) and for 64 keys; CPU time of delivery (dispatcher,
/// client and the in-process sink standing in for the sidecar: the process minus the submitting
/// thread) per 1000 events.
async fn batching_paced(settings: &Settings, base: &str) {
    let rate = env_usize("BENCH_PACED_RATE", 4000).max(1);
    let millis = env_usize(
        "BENCH_PACED_MS",
        if settings.rounds > 1 { 2000 } else { 100 },
    )
    .max(1);
    let events = (rate * millis / 1000).max(1);
    let variants = [
        (
            "unbatched (max_batch 1)",
            DispatcherConfig::new().with_concurrency(8),
        ),
        (
            "max_batch 32, linger 0",
            DispatcherConfig::new()
                .with_concurrency(8)
                .with_max_batch(32),
        ),
        (
            "max_batch 32, linger 1 ms",
            DispatcherConfig::new()
                .with_concurrency(8)
                .with_max_batch(32)
                .with_linger(Duration::from_millis(1)),
        ),
        (
            "max_batch 32, linger 2 ms",
            DispatcherConfig::new()
                .with_concurrency(8)
                .with_max_batch(32)
                .with_linger(Duration::from_millis(2)),
        ),
        (
            "max_batch 32, linger 5 ms",
            DispatcherConfig::new()
                .with_concurrency(8)
                .with_max_batch(32)
                .with_linger(Duration::from_millis(5)),
        ),
    ];
    for keys in [1, 64] {
        let mut runs: Vec<Vec<BatchRun>> = vec![Vec::new(); variants.len()];
        for round in 0..settings.rounds.min(3) {
            for offset in 0..variants.len() {
                let index = (round + offset) % variants.len();
                runs[index]
                    .push(batch_run(base, variants[index].1.clone(), events, keys, rate).await);
            }
        }
        let best_runs: Vec<BatchRun> = runs
            .into_iter()
            .map(|r| best(r, |run| -run.cpu.map_or(0.0, |cpu| cpu.as_secs_f64())))
            .collect();
        println!(
            "\n### dispatcher batching, paced ({rate} events/s for {millis} ms = {events} events, {keys} key(s), 8 lanes; least CPU of the rounds)\n"
        );
        println!(
            "| variant | requests | events per request | mean bulk batch | delivery CPU ms per 1000 events | CPU vs unbatched |"
        );
        println!("|---|---|---|---|---|---|");
        let base_cpu = best_runs[0].cpu;
        for ((name, _), run) in variants.iter().zip(&best_runs) {
            let per_k = run
                .cpu
                .map(|cpu| cpu.as_secs_f64() * 1e3 * 1000.0 / events as f64);
            let ratio = run
                .cpu
                .zip(base_cpu)
                .filter(|(_, base)| !base.is_zero())
                .map(|(cpu, base)| cpu.as_secs_f64() / base.as_secs_f64());
            println!(
                "| {name} | {} | {} | {} | {} |",
                run.requests,
                per_request(run, events),
                per_k.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}")),
                ratio.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}×")),
            );
        }
    }
}
