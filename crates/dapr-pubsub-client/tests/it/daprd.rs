//! The publish paths against a real daprd (with its `pubsub-kafka` component on Kafka).
//!
//! Runs when `PAKAURA_DAPR_HTTP_ENDPOINT` is set (`scripts/stack env` prints it). Without it each
//! test prints a "skipped" line and passes, unless `CI` is set: then it fails. The batching tests
//! also read Kafka at `PAKAURA_KAFKA_BOOTSTRAP`, under the same rule.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudevents_model::CloudEvent;
use dapr_pubsub_client::{
    BulkEntry, ClientConfig, DAPR_API_TOKEN, Dispatcher, DispatcherConfig, PubSubClient,
    PublishOptions,
};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use serde_json::{Value, json};

use crate::support::{CapturedLogs, event};

const PUBSUB: &str = "pubsub-kafka";

/// The real sidecar, or `None` (after saying why) when the stack is not running.
async fn real_sidecar(test: &str) -> Option<PubSubClient> {
    real_sidecar_logging(test, CapturedLogs::default()).await
}

/// [`real_sidecar`], logging into `logs`.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so on the test output"
)]
async fn real_sidecar_logging(test: &str, logs: CapturedLogs) -> Option<PubSubClient> {
    let endpoint = std::env::var("PAKAURA_DAPR_HTTP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(endpoint) = endpoint else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PAKAURA_DAPR_HTTP_ENDPOINT is not set but CI is: the daprd tests must run in CI ({test})"
        );
        eprintln!(
            "skipped: {test}: PAKAURA_DAPR_HTTP_ENDPOINT is not set (start the stack: scripts/stack up)"
        );
        return None;
    };
    let mut config = ClientConfig::new(&endpoint)
        .expect("PAKAURA_DAPR_HTTP_ENDPOINT is an http URL")
        .with_request_timeout(Duration::from_secs(10));
    if let Some(token) = std::env::var(DAPR_API_TOKEN).ok().filter(|v| !v.is_empty()) {
        config = config.with_api_token(token);
    }
    let client = PubSubClient::new(config, logs.logger());
    client
        .wait_until_ready(Duration::from_secs(30))
        .await
        .expect("the daprd at PAKAURA_DAPR_HTTP_ENDPOINT becomes ready");
    Some(client)
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

#[tokio::test]
async fn daprd_accepts_a_structured_cloud_event_with_a_partition_key() {
    let Some(client) =
        real_sidecar("daprd_accepts_a_structured_cloud_event_with_a_partition_key").await
    else {
        return;
    };
    let options = PublishOptions::new()
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    client
        .publish_with(
            PUBSUB,
            "task-events",
            &event(&unique("it-ce"), "user-it"),
            &options,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn daprd_accepts_plain_json_and_text() {
    let Some(client) = real_sidecar("daprd_accepts_plain_json_and_text").await else {
        return;
    };
    client
        .publish_json(
            PUBSUB,
            "task-updates",
            &json!({"task_id": unique("t"), "action": "created"}),
            &PublishOptions::new().with_partition_key("user-it"),
        )
        .await
        .unwrap();
    client
        .publish_bytes(
            PUBSUB,
            "reminders",
            "text/plain",
            "reminder",
            &PublishOptions::new(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn daprd_bulk_publishes_every_entry() {
    let logs = CapturedLogs::default();
    let Some(client) = real_sidecar_logging("daprd_bulk_publishes_every_entry", logs.clone()).await
    else {
        return;
    };
    let entries = vec![
        BulkEntry::cloud_event(&event(&unique("bulk-a"), "user-it")).unwrap(),
        BulkEntry::json(unique("bulk-b"), &json!({"n": 2})).unwrap(),
        BulkEntry::text(unique("bulk-c"), "text/plain", "three").unwrap(),
    ];
    let outcome = client
        .publish_bulk(PUBSUB, "reminders", &entries, &PublishOptions::new())
        .await
        .unwrap();
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.published_count(), 3);
    // daprd 1.18 serves the stable route: no fallback to the alpha one.
    let routes: Vec<String> = logs
        .records()
        .into_iter()
        .filter(|r| r.message.starts_with("bulk publishing through"))
        .map(|r| r.kv["route"].clone())
        .collect();
    assert_eq!(routes, ["/v1.0/publish/bulk"]);
}

#[tokio::test]
async fn daprd_rejects_an_unknown_pubsub_as_not_found() {
    let Some(client) = real_sidecar("daprd_rejects_an_unknown_pubsub_as_not_found").await else {
        return;
    };
    let err = client
        .publish("no-such-pubsub", "task-events", &event(&unique("nf"), "u"))
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("ERR_PUBSUB_NOT_FOUND"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn daprd_receives_everything_the_dispatcher_is_given() {
    let Some(client) = real_sidecar("daprd_receives_everything_the_dispatcher_is_given").await
    else {
        return;
    };
    let dispatcher = Dispatcher::spawn(client, DispatcherConfig::new().with_concurrency(4), None);
    for i in 0..100 {
        dispatcher
            .submit(
                PUBSUB,
                "task-events",
                &event(&unique(&format!("disp-{i}")), &format!("user-{}", i % 7)),
                PublishOptions::new(),
            )
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.metrics.published, report.metrics.failed), (100, 0));
}

/// The Kafka bootstrap address behind the daprd, or `None` (after saying why).
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so on the test output"
)]
fn kafka_bootstrap(test: &str) -> Option<String> {
    let bootstrap = std::env::var("PAKAURA_KAFKA_BOOTSTRAP")
        .ok()
        .filter(|v| !v.is_empty());
    if bootstrap.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PAKAURA_KAFKA_BOOTSTRAP is not set but CI is: the daprd tests must run in CI ({test})"
        );
        eprintln!(
            "skipped: {test}: PAKAURA_KAFKA_BOOTSTRAP is not set (scripts/stack env prints it)"
        );
    }
    bootstrap
}

/// One record read back from Kafka.
struct Landed {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    envelope: Value,
}

/// Every partition of one topic, read from the offsets noted at connect time.
struct TopicReader {
    partitions: Vec<(PartitionClient, i64)>,
}

impl TopicReader {
    /// Connects and notes the current end of every partition of `topic`.
    async fn connect(bootstrap: &str, topic: &str) -> Self {
        // rskafka keeps retrying while no broker answers: bound it.
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            rskafka::client::ClientBuilder::new(vec![bootstrap.to_owned()])
                .client_id("dapr-pubsub-client-tests")
                .build(),
        )
        .await
        .expect("a Kafka broker answers at PAKAURA_KAFKA_BOOTSTRAP within 30 s")
        .expect("connecting to Kafka");
        let topics = client.list_topics().await.expect("listing Kafka topics");
        let found = topics
            .iter()
            .find(|t| t.name == topic)
            .unwrap_or_else(|| panic!("Kafka topic {topic} exists (scripts/stack up creates it)"));
        let mut partitions = Vec::new();
        for &partition in &found.partitions {
            let client = client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .expect("a partition client");
            let start = client
                .get_offset(OffsetAt::Latest)
                .await
                .expect("the end offset");
            partitions.push((client, start));
        }
        Self { partitions }
    }

    /// Everything written since `connect`, up to the current end of each partition.
    async fn read_new(&self) -> Vec<Landed> {
        let mut out = Vec::new();
        for (partition, start) in &self.partitions {
            let end = partition
                .get_offset(OffsetAt::Latest)
                .await
                .expect("the end offset");
            let mut offset = *start;
            while offset < end {
                let (records, _) = partition
                    .fetch_records(offset, 1..4_000_000, 500)
                    .await
                    .expect("fetching records");
                let Some(last) = records.last() else { break };
                offset = last.offset + 1;
                for record in records.into_iter().filter(|r| r.offset < end) {
                    let envelope = record
                        .record
                        .value
                        .as_deref()
                        .and_then(|value| serde_json::from_slice(value).ok())
                        .unwrap_or(Value::Null);
                    out.push(Landed {
                        partition: partition.partition(),
                        offset: record.offset,
                        key: record.record.key,
                        envelope,
                    });
                }
            }
        }
        out
    }
}

/// An event of test run `run` for `key`, numbered `seq` in its key's order.
fn run_event(run: &str, key: &str, seq: usize, text: &str) -> CloudEvent {
    CloudEvent::builder(
        unique(&format!("{run}-{key}-{seq}")),
        "pakaura/it",
        "task.updated",
    )
    .json_data(&json!({"run": run, "seq": seq, "text": text}))
    .extension("partitionkey", key)
    .build()
    .unwrap()
}

/// The records of `run`: event id → where it landed.
fn of_run<'a>(landed: &'a [Landed], run: &str) -> Vec<&'a Landed> {
    landed
        .iter()
        .filter(|record| record.envelope["data"]["run"] == run)
        .collect()
}

#[tokio::test]
async fn daprd_delivers_batched_events_to_kafka_once_in_order_with_their_partition_key() {
    const TEST: &str =
        "daprd_delivers_batched_events_to_kafka_once_in_order_with_their_partition_key";
    const TOPIC: &str = "task-events";
    const KEYS: usize = 10;
    const PER_KEY: usize = 30;
    let Some(client) = real_sidecar(TEST).await else {
        return;
    };
    let Some(bootstrap) = kafka_bootstrap(TEST) else {
        return;
    };
    let reader = TopicReader::connect(&bootstrap, TOPIC).await;
    let run = unique("batch");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("{run}-user-{k}")).collect();

    // The reference: one single publish per key says which partition that key goes to.
    let mut reference = Vec::new();
    for key in &keys {
        let event = run_event(&run, key, 0, "single");
        client.publish(PUBSUB, TOPIC, &event).await.unwrap();
        reference.push(event.id().to_owned());
    }
    // Then the dispatcher, batching: all events are queued before the lanes run (the test
    // runtime is single-threaded), keys interleaved.
    let dispatcher = Dispatcher::spawn(
        client,
        DispatcherConfig::new()
            .with_concurrency(2)
            .with_max_batch(16),
        None,
    );
    for seq in 1..=PER_KEY {
        for key in &keys {
            dispatcher
                .submit(
                    PUBSUB,
                    TOPIC,
                    &run_event(&run, key, seq, "batched"),
                    PublishOptions::new(),
                )
                .unwrap();
        }
    }
    let report = dispatcher.shutdown(Duration::from_secs(60)).await;
    assert!(report.is_complete(), "{report:?}");
    let metrics = &report.metrics;
    assert_eq!(
        (metrics.published, metrics.failed),
        ((KEYS * PER_KEY) as u64, 0)
    );
    assert!(
        metrics.bulk_requests > 0 && metrics.bulk_entries >= 4 * metrics.bulk_requests,
        "the queued events went out in batches: {metrics:?}"
    );

    let landed = reader.read_new().await;
    let ours = of_run(&landed, &run);
    assert_eq!(
        ours.len(),
        KEYS * (PER_KEY + 1),
        "every event once, nothing else"
    );
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &ours {
        *per_id
            .entry(record.envelope["id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 1), "no duplicates");
    for (key, reference_id) in keys.iter().zip(&reference) {
        let mut of_key: Vec<&&Landed> = ours
            .iter()
            .filter(|record| record.envelope["partitionkey"] == key.as_str())
            .collect();
        assert_eq!(of_key.len(), PER_KEY + 1);
        let partition = of_key
            .iter()
            .find(|record| record.envelope["id"] == reference_id.as_str())
            .unwrap()
            .partition;
        assert!(
            of_key.iter().all(|record| record.partition == partition
                && record.key.as_deref() == Some(key.as_bytes())),
            "batched events of {key} are keyed by it, in the partition of its single publish"
        );
        of_key.sort_by_key(|record| record.offset);
        let seqs: Vec<u64> = of_key
            .iter()
            .map(|record| record.envelope["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..=PER_KEY as u64).collect::<Vec<_>>(),
            "order of {key}"
        );
    }
}

#[tokio::test]
async fn daprd_partial_failure_of_a_batch_retries_only_the_failed_entry() {
    const TEST: &str = "daprd_partial_failure_of_a_batch_retries_only_the_failed_entry";
    const TOPIC: &str = "reminders";
    let Some(client) = real_sidecar(TEST).await else {
        return;
    };
    let Some(bootstrap) = kafka_bootstrap(TEST) else {
        return;
    };
    let reader = TopicReader::connect(&bootstrap, TOPIC).await;
    let run = unique("partial");
    // Three keys, so that the three events share one request (one event per key and request).
    let key = |n: usize| format!("{run}-user-{n}");
    // Kafka's producer refuses a message over 1 MiB, and only that one: Dapr answers 500 with
    // that entry alone in `failedEntries`.
    let huge = "x".repeat(1_100_000);
    let events = [
        run_event(&run, &key(1), 1, "small"),
        run_event(&run, &key(2), 2, &huge),
        run_event(&run, &key(3), 3, "small"),
    ];
    let logs = CapturedLogs::default();
    let dispatcher = Dispatcher::spawn(
        client,
        DispatcherConfig::new()
            .with_concurrency(1)
            .with_max_batch(8)
            .with_max_attempts(2)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(10)),
        logs.logger(),
    );
    for event in &events {
        dispatcher
            .submit(PUBSUB, TOPIC, event, PublishOptions::new())
            .unwrap();
    }
    let report = dispatcher.shutdown(Duration::from_secs(60)).await;
    assert!(report.is_complete(), "{report:?}");
    let metrics = &report.metrics;
    assert_eq!(
        (metrics.published, metrics.failed, metrics.retried),
        (2, 1, 1),
        "{metrics:?}"
    );
    assert_eq!(
        (metrics.bulk_requests, metrics.bulk_entries),
        (1, 3),
        "one batch of three, then the failed entry alone (a single publish)"
    );
    let gave_up = logs
        .records()
        .into_iter()
        .find(|r| r.message.starts_with("gave up"))
        .expect("a gave-up line");
    assert_eq!(gave_up.kv["event_id"], events[1].id());
    assert_eq!(gave_up.kv["status"], "500");
    assert!(
        gave_up.kv["body"].contains("MaxMessageBytes"),
        "{gave_up:?}"
    );

    let landed = reader.read_new().await;
    let mut ids: Vec<&str> = of_run(&landed, &run)
        .iter()
        .map(|record| record.envelope["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![events[0].id(), events[2].id()];
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "the small events once each, the huge one never"
    );
}
