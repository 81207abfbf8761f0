//! The stack's smoke test: CloudEvents published through `daprd`'s HTTP API arrive in Kafka once each, with their
//! envelope intact, keyed by their partition key, in order per key; and what `daprd` adds to the envelope.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use system_tests::{KafkaReader, RawPublisher, ReadRecord, stack_endpoint};

const PUBSUB: &str = "pubsub-kafka";
const TOPICS: [&str; 3] = ["task-events", "task-updates", "reminders"];
const PARTITIONS: usize = 3;
const KEYS: usize = 10;
const EVENTS_PER_KEY: usize = 100;

/// What the test sent: the event, where, and with which trace context header.
struct Sent {
    topic: &'static str,
    key: String,
    seq: usize,
    /// `Some` for the "bare" events that carry no `traceid` (nor `time`): `daprd` fills those in.
    traceparent: Option<String>,
    event: Value,
}

/// Where one event landed in Kafka.
#[derive(Debug)]
struct Place {
    partition: i32,
    offset: i64,
    seq: usize,
}

/// A W3C `traceparent` header value: version 00, a random trace id and parent id, sampled.
fn new_traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let parent = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{parent}-01")
}

/// The events of one partition key, in publishing order. Every tenth event is "bare" (no `time`, no `traceid`,
/// no `correlationid`); the others look like the task service's events (SPEC.md 3.1). The `smokerun` extension
/// tells this run's records from any others in the topics.
fn events_for_key(run: &str, key: &str) -> Vec<Sent> {
    (0..EVENTS_PER_KEY)
        .map(|seq| {
            let topic = TOPICS[seq % TOPICS.len()];
            let id = Uuid::new_v4().to_string();
            let task_id = Uuid::new_v4().to_string();
            let data = json!({
                "task_id": task_id,
                "user_id": key,
                "action": "created",
                "title": format!("smoke #{seq}: \"quotes\", <tags> & ünïcödé ✓"),
                "completed": seq % 2 == 0,
                "seq": seq,
                "ratio": 0.1,
                "big": 9_007_199_254_740_993_u64,
                "nested": {"list": [1, "two", null, {"three": 3}], "empty": {}},
                "timestamp": "2026-01-02T03:04:05.123456Z",
            });
            let mut event = json!({
                "specversion": "1.0",
                "id": id,
                "source": "pakaura/system-tests",
                "type": "task.created",
                "subject": task_id,
                "datacontenttype": "application/json",
                "data": data,
                "partitionkey": key,
                "smokerun": run,
            });
            let traceparent = if seq % 10 == 9 {
                Some(new_traceparent())
            } else {
                let correlation = Uuid::new_v4().to_string();
                let fields = event.as_object_mut().expect("an object");
                fields.insert("time".into(), json!("2026-11-27T10:00:00.123456Z"));
                fields.insert("traceid".into(), json!(correlation));
                fields.insert("correlationid".into(), json!(correlation));
                None
            };
            Sent {
                topic,
                key: key.to_owned(),
                seq,
                traceparent,
                event,
            }
        })
        .collect()
}

/// Checks one received envelope against what was sent, given what `daprd` is known to add (see
/// docs/LOCAL-STACK.md, "What daprd adds to the envelope").
fn check_envelope(sent: &Sent, received: &Value) -> anyhow::Result<()> {
    let mut received = received
        .as_object()
        .context("the record value is not a JSON object")?
        .clone();
    let mut expected: Map<String, Value> = sent.event.as_object().expect("an object").clone();
    // Always: the topic and pub/sub names, and an (empty) W3C tracestate when the event has none.
    expected.insert("topic".into(), json!(sent.topic));
    expected.insert("pubsubname".into(), json!(PUBSUB));
    expected.insert("tracestate".into(), json!(""));
    if let Some(our_traceparent) = &sent.traceparent {
        // No `traceid` in the event: daprd writes its own span's W3C traceparent into both `traceid` and
        // `traceparent`; the span is a child of the request's `traceparent` header, so the trace id is ours.
        let traceparent = received
            .remove("traceparent")
            .context("daprd added no traceparent")?;
        let traceid = received
            .remove("traceid")
            .context("daprd added no traceid")?;
        ensure!(
            traceid == traceparent,
            "traceid {traceid} differs from traceparent {traceparent}"
        );
        let traceparent = traceparent
            .as_str()
            .context("traceparent is not a string")?;
        let parts: Vec<&str> = traceparent.split('-').collect();
        ensure!(
            parts.len() == 4
                && parts[0] == "00"
                && parts[1].len() == 32
                && parts[2].len() == 16
                && parts[3] == "01"
                && parts[1..3]
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())),
            "traceparent {traceparent:?} is not a sampled W3C traceparent"
        );
        ensure!(
            parts[1] == &our_traceparent[3..35],
            "traceparent {traceparent} is not in the trace of the request's header {our_traceparent}"
        );
        ensure!(
            parts[2] != &our_traceparent[36..52],
            "daprd reused the caller's span id"
        );
        // No `time` in the event: daprd adds the publishing time, RFC 3339.
        let added_time = received.remove("time").context("daprd added no time")?;
        let added_time = added_time.as_str().context("time is not a string")?;
        let parsed = OffsetDateTime::parse(added_time, &Rfc3339)
            .with_context(|| format!("time {added_time:?} is not RFC 3339"))?;
        let age = OffsetDateTime::now_utc() - parsed;
        ensure!(
            age.whole_seconds().abs() < 600,
            "time {added_time} is not the publishing time"
        );
    }
    if Value::Object(received.clone()) != Value::Object(expected.clone()) {
        let names: BTreeSet<&String> = expected.keys().chain(received.keys()).collect();
        let diff: Vec<String> = names
            .into_iter()
            .filter(|k| expected.get(*k) != received.get(*k))
            .map(|k| {
                format!(
                    "{k}: sent+added {:?}, received {:?}",
                    expected.get(k),
                    received.get(k)
                )
            })
            .collect();
        bail!("envelope changed: {}", diff.join("; "));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_daprd_arrive_in_kafka_once_in_order_and_intact()
-> anyhow::Result<()> {
    let Some(dapr) = stack_endpoint("PAKAURA_DAPR_HTTP_ENDPOINT") else {
        return Ok(());
    };
    let Some(bootstrap) = stack_endpoint("PAKAURA_KAFKA_BOOTSTRAP") else {
        return Ok(());
    };

    let publisher = RawPublisher::new(&dapr);
    publisher.wait_until_ready(Duration::from_secs(30)).await?;
    let mut kafka = KafkaReader::connect(&bootstrap, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;

    // 10 partition keys (user ids), 100 events each, spread over the three topics; each key's events are published
    // one after another (as one user's events are), the keys concurrently.
    let run = Uuid::new_v4().to_string();
    let keys: Vec<String> = (0..KEYS).map(|_| Uuid::new_v4().to_string()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for key in &keys {
        let events = events_for_key(&run, key);
        let publisher = publisher.clone();
        tasks.spawn(async move {
            for sent in &events {
                publisher
                    .publish(
                        PUBSUB,
                        sent.topic,
                        &sent.key,
                        sent.traceparent.as_deref(),
                        &sent.event,
                    )
                    .await
                    .with_context(|| {
                        format!("publishing event {} of key {}", sent.seq, sent.key)
                    })?;
            }
            anyhow::Ok(events)
        });
    }
    let mut sent_by_id: HashMap<String, Sent> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        for sent in joined?? {
            let id = sent.event["id"].as_str().expect("a string id").to_owned();
            sent_by_id.insert(id, sent);
        }
    }
    assert_eq!(sent_by_id.len(), KEYS * EVENTS_PER_KEY);

    // daprd answers 204 only after Kafka acknowledged the record (synchronous producer), so everything is there.
    let records: Vec<ReadRecord> = kafka.read_new().await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (topic, key) -> where that key's events landed in that topic.
    let mut placement: BTreeMap<(String, String), Vec<Place>> = BTreeMap::new();
    for record in &records {
        let Some(value) = record.value.as_deref() else {
            continue;
        };
        let Ok(envelope) = serde_json::from_slice::<Value>(value) else {
            continue;
        };
        if envelope.get("smokerun") != Some(&json!(run)) {
            continue; // another producer's record
        }
        let id = envelope["id"]
            .as_str()
            .context("a record of this run without an id")?;
        let sent = sent_by_id
            .get(id)
            .with_context(|| format!("record {id} was never sent"))?;
        *seen.entry(id.to_owned()).or_default() += 1;
        check_envelope(sent, &envelope)
            .with_context(|| format!("event {id} ({}/{})", sent.key, sent.seq))?;
        assert_eq!(
            record.topic, sent.topic,
            "event {id} arrived in the wrong topic"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(sent.key.as_bytes()),
            "the Kafka key of event {id} is not its partition key"
        );
        // daprd passes the request's metadata on as Kafka headers.
        assert_eq!(
            record.headers.get("partitionKey").map(Vec::as_slice),
            Some(sent.key.as_bytes()),
            "event {id} lacks the partitionKey header"
        );
        placement
            .entry((record.topic.clone(), sent.key.clone()))
            .or_default()
            .push(Place {
                partition: record.partition,
                offset: record.offset,
                seq: sent.seq,
            });
    }

    let missing: Vec<&String> = sent_by_id
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived, e.g. {:?}",
        missing.len(),
        sent_by_id.len(),
        missing.first()
    );
    let duplicated: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "events arrived more than once: {duplicated:?}"
    );

    assert_eq!(
        placement.len(),
        KEYS * TOPICS.len(),
        "every key should have events in every topic"
    );
    for ((topic, key), mut places) in placement {
        let partition = places[0].partition;
        assert!(
            places.iter().all(|p| p.partition == partition),
            "the events of key {key} in {topic} are spread over several partitions: {places:?}"
        );
        places.sort_by_key(|p| p.offset);
        let seqs: Vec<usize> = places.iter().map(|p| p.seq).collect();
        let mut in_order = seqs.clone();
        in_order.sort_unstable();
        assert_eq!(
            seqs, in_order,
            "the events of key {key} in {topic} are out of order"
        );
    }
    Ok(())
}

/// The task service's events carry the request's trace context (the CloudEvents distributed-tracing extension
/// `traceparent`) next to `traceid`, and the dispatcher sends events of different traces in one bulk request
/// without a `traceparent` header, each with `traceparent` entry metadata. What daprd does with that, single and
/// bulk: it keeps every event's own `traceparent` (and `traceid`), whatever the request's header says, and the
/// Kafka component writes the per-event metadata as a `traceparent` record header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carrying_their_trace_context_keep_it_through_daprd_single_and_bulk()
-> anyhow::Result<()> {
    use dapr_pubsub_client::{
        ClientConfig, Dispatcher, DispatcherConfig, PubSubClient, PublishOptions,
    };

    let Some(dapr) = stack_endpoint("PAKAURA_DAPR_HTTP_ENDPOINT") else {
        return Ok(());
    };
    let Some(bootstrap) = stack_endpoint("PAKAURA_KAFKA_BOOTSTRAP") else {
        return Ok(());
    };
    let publisher = RawPublisher::new(&dapr);
    publisher.wait_until_ready(Duration::from_secs(30)).await?;
    let mut kafka = KafkaReader::connect(&bootstrap, &TOPICS, PARTITIONS).await?;
    kafka.mark().await?;

    let run = Uuid::new_v4().to_string();
    let traced = |id: &str, key: &str, traceparent: &str| {
        let correlation = Uuid::new_v4().to_string();
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "pakaura/system-tests",
            "type": "task.created",
            "time": "2026-11-27T10:00:00.123456Z",
            "subject": Uuid::new_v4().to_string(),
            "datacontenttype": "application/json",
            "traceid": correlation,
            "correlationid": correlation,
            "traceparent": traceparent,
            "partitionkey": key,
            "smokerun": run,
            "data": {"n": 1},
        })
    };
    // (event id, its own traceparent, whether the record should carry it as a header)
    let mut expected: HashMap<String, (String, bool)> = HashMap::new();

    // A single publish whose header names another trace than the event: daprd keeps the event's.
    let own = new_traceparent();
    let id = Uuid::new_v4().to_string();
    publisher
        .publish(
            PUBSUB,
            "task-events",
            "trace-single",
            Some(&new_traceparent()),
            &traced(&id, "trace-single", &own),
        )
        .await?;
    expected.insert(id, (own, false));

    // The dispatcher: 20 users, each event of its own trace, queued up behind a linger so that they share bulk
    // requests.
    let client = PubSubClient::new(ClientConfig::new(&dapr)?, None);
    let dispatcher = Dispatcher::spawn(
        client,
        DispatcherConfig::new()
            .with_concurrency(1)
            .with_max_batch(32)
            .with_linger(Duration::from_millis(200)),
        None,
    );
    for n in 0..20 {
        let id = Uuid::new_v4().to_string();
        let key = format!("trace-user-{n}");
        let traceparent = new_traceparent();
        let event: cloudevents_model::CloudEvent =
            serde_json::from_value(traced(&id, &key, &traceparent))?;
        dispatcher.submit(
            PUBSUB,
            "task-events",
            &event,
            PublishOptions::new().with_traceparent(traceparent.clone()),
        )?;
        expected.insert(id, (traceparent, true));
    }
    let report = dispatcher.shutdown(Duration::from_secs(20)).await;
    ensure!(
        report.is_complete(),
        "undelivered: {:?}",
        report.undelivered
    );
    ensure!(
        report.metrics.published == 20 && report.metrics.failed == 0,
        "{:?}",
        report.metrics
    );
    ensure!(
        report.metrics.bulk_requests >= 1 && report.metrics.bulk_entries >= 2,
        "events of different traces did not share a bulk request: {:?}",
        report.metrics
    );

    let records = kafka.read_new().await?;
    let mut seen = 0;
    for record in &records {
        let Some(envelope) = record
            .value
            .as_deref()
            .and_then(|value| serde_json::from_slice::<Value>(value).ok())
        else {
            continue;
        };
        if envelope.get("smokerun") != Some(&json!(run)) {
            continue;
        }
        let id = envelope["id"].as_str().context("an id")?;
        let (traceparent, header) = expected.get(id).context("an event of this run")?;
        seen += 1;
        ensure!(
            envelope["traceparent"] == json!(traceparent),
            "event {id}: daprd changed the event's traceparent: {envelope}"
        );
        ensure!(
            envelope["traceid"] == envelope["correlationid"],
            "event {id}: daprd changed traceid: {envelope}"
        );
        let got = record.headers.get("traceparent").map(Vec::as_slice);
        if *header {
            ensure!(
                got == Some(traceparent.as_bytes()),
                "event {id}: the record's traceparent header is {:?}",
                got.map(String::from_utf8_lossy)
            );
        } else {
            // The request's `traceparent` header does not become a record header (only metadata does).
            ensure!(got.is_none(), "event {id}: unexpected traceparent header");
        }
    }
    ensure!(
        seen == expected.len(),
        "{seen} of {} events arrived",
        expected.len()
    );
    Ok(())
}
