//! The events the tests expect (SPEC.md §3.2) and the ones Kafka holds: collecting a run's records, parsing them
//! strictly as CloudEvents, checking the envelope as it looks after `daprd`'s additions, comparing with what was
//! expected, and counting delivered / duplicated / lost events for the fault tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use cloudevents_model::{CloudEvent, Data};
use serde_json::{Map, Value, json};
use system_tests::KafkaReader;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The three topics the service publishes to, 3 partitions each.
pub(crate) const TOPICS: [&str; 3] = ["task-events", "task-updates", "reminders"];
pub(crate) const PARTITIONS: usize = 3;
const PUBSUB: &str = "pubsub-kafka";
const SOURCE: &str = "pakaura/api";

/// One event a request must cause.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub(crate) topic: &'static str,
    pub(crate) ty: &'static str,
    pub(crate) user: String,
    pub(crate) task: String,
    /// The payload without its `timestamp`.
    pub(crate) data: Value,
    pub(crate) correlation: String,
}

impl Expected {
    fn new(
        topic: &'static str,
        ty: &'static str,
        user: &str,
        task: &str,
        fields: Value,
        correlation: &str,
    ) -> Self {
        let mut data = json!({"task_id": task, "user_id": user});
        if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
            data.extend(fields);
        }
        Self {
            topic,
            ty,
            user: user.to_owned(),
            task: task.to_owned(),
            data,
            correlation: correlation.to_owned(),
        }
    }
}

/// Builds the expected events of one user's requests.
pub(crate) struct Script<'a> {
    pub(crate) user: &'a str,
    pub(crate) events: Vec<Expected>,
}

impl<'a> Script<'a> {
    pub(crate) fn new(user: &'a str) -> Self {
        Self {
            user,
            events: Vec::new(),
        }
    }

    fn push(
        &mut self,
        topic: &'static str,
        ty: &'static str,
        task: &str,
        fields: Value,
        correlation: &str,
    ) {
        self.events.push(Expected::new(
            topic,
            ty,
            self.user,
            task,
            fields,
            correlation,
        ));
    }

    /// `sync.task` with `action`.
    pub(crate) fn sync(&mut self, task: &str, action: &str, correlation: &str) {
        self.push(
            "task-updates",
            "sync.task",
            task,
            json!({"action": action}),
            correlation,
        );
    }

    /// `task.created` (+ `reminder.scheduled`) + `sync.task`, from the created task's JSON.
    pub(crate) fn created(&mut self, task: &Value, correlation: &str) {
        let id = task["id"].as_str().unwrap_or_default().to_owned();
        let mut fields =
            json!({"action": "created", "title": task["title"], "completed": task["completed"]});
        if !task["due_date"].is_null() {
            fields["due_date"] = task["due_date"].clone();
        }
        self.push("task-events", "task.created", &id, fields, correlation);
        if !task["due_date"].is_null() {
            self.reminder(&id, "scheduled", &task["due_date"], correlation);
        }
        self.sync(&id, "created", correlation);
    }

    /// `task.updated` with `changes`; `title` is the title after the change.
    pub(crate) fn updated(&mut self, task: &str, title: &Value, changes: Value, correlation: &str) {
        self.push(
            "task-events",
            "task.updated",
            task,
            json!({"action": "updated", "title": title, "changes": changes}),
            correlation,
        );
    }

    /// `task.completed` or `task.uncompleted`.
    pub(crate) fn completion(&mut self, task: &str, completed: bool, correlation: &str) {
        let (ty, action) = if completed {
            ("task.completed", "completed")
        } else {
            ("task.uncompleted", "uncompleted")
        };
        self.push(
            "task-events",
            ty,
            task,
            json!({"action": action, "completed": completed}),
            correlation,
        );
    }

    /// `reminder.<action>` with `due_date` (null for `cancelled`).
    pub(crate) fn reminder(
        &mut self,
        task: &str,
        action: &str,
        due_date: &Value,
        correlation: &str,
    ) {
        let ty = match action {
            "scheduled" => "reminder.scheduled",
            "rescheduled" => "reminder.rescheduled",
            _ => "reminder.cancelled",
        };
        self.push(
            "reminders",
            ty,
            task,
            json!({"action": action, "due_date": due_date}),
            correlation,
        );
    }

    /// `task.deleted`.
    pub(crate) fn deleted(&mut self, task: &str, correlation: &str) {
        self.push(
            "task-events",
            "task.deleted",
            task,
            json!({"action": "deleted"}),
            correlation,
        );
    }
}

/// One record of the run, parsed.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<String>,
    /// The record value as JSON.
    pub(crate) raw: Value,
    /// The record value parsed strictly as a CloudEvent; `Err` keeps the reason.
    pub(crate) event: Result<CloudEvent<Data>, String>,
}

impl Received {
    /// The event id, read from the JSON (present even when strict parsing failed).
    pub(crate) fn id(&self) -> &str {
        self.raw["id"].as_str().unwrap_or_default()
    }

    /// `(task id, type)`: what an event is about, the same on every delivery of it.
    pub(crate) fn what(&self) -> (String, String) {
        (
            self.raw["subject"].as_str().unwrap_or_default().to_owned(),
            self.raw["type"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// The records written since `kafka` was marked whose partition key is one of `users`.
pub(crate) async fn read_run(
    kafka: &KafkaReader,
    users: &HashSet<String>,
) -> anyhow::Result<Vec<Received>> {
    let mut out = Vec::new();
    for record in kafka.read_new().await? {
        let key = record
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let Some(value) = record.value.as_deref() else {
            continue;
        };
        let Ok(raw) = serde_json::from_slice::<Value>(value) else {
            continue;
        };
        let ours = raw["partitionkey"]
            .as_str()
            .is_some_and(|k| users.contains(k))
            || key.as_ref().is_some_and(|k| users.contains(k));
        if !ours {
            continue;
        }
        let event = CloudEvent::<Data>::from_slice(value).map_err(|e| e.to_string());
        out.push(Received {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            key,
            raw,
            event,
        });
    }
    Ok(out)
}

/// How many distinct events (`(task id, type)`) the records hold.
pub(crate) fn distinct(records: &[Received]) -> usize {
    records
        .iter()
        .map(Received::what)
        .collect::<HashSet<_>>()
        .len()
}

/// Reads the run's records until `enough` says so or `within` passed, then once more after a short pause (to catch
/// late extra records).
pub(crate) async fn collect(
    kafka: &KafkaReader,
    users: &HashSet<String>,
    within: Duration,
    enough: impl Fn(&[Received]) -> bool,
) -> anyhow::Result<Vec<Received>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let records = read_run(kafka, users).await?;
        if enough(&records) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    read_run(kafka, users).await
}

/// Checks one record's envelope: a strictly valid CloudEvent whose attributes are the service's (SPEC.md §3.1) plus
/// exactly what `daprd` adds when the event carries a `traceid` (docs/LOCAL-STACK.md): `topic`, `pubsubname` and
/// an empty `tracestate`; the correlation id unchanged in both `traceid` and `correlationid`; `traceparent` only when
/// the request had one (the CloudEvents distributed-tracing extension, kept by daprd), in the correlation's trace.
pub(crate) fn check_envelope(received: &Received) -> anyhow::Result<()> {
    let event = received
        .event
        .as_ref()
        .map_err(|e| anyhow::anyhow!("not a valid CloudEvent: {e}: {}", received.raw))?;
    let id = Uuid::parse_str(event.id())
        .with_context(|| format!("id {:?} is not a UUID", event.id()))?;
    ensure!(id.get_version_num() == 4, "id {id} is not a UUIDv4");
    ensure!(event.source() == SOURCE, "source {:?}", event.source());
    ensure!(
        event.datacontenttype() == Some("application/json"),
        "datacontenttype {:?}",
        event.datacontenttype()
    );
    let time = event.time().context("no time")?;
    ensure!(
        (OffsetDateTime::now_utc() - time).whole_minutes().abs() < 10,
        "time {time} is not the publishing time"
    );
    ensure!(
        received.raw["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "time {} is not in UTC",
        received.raw["time"]
    );
    let subject = event.subject().context("no subject")?;
    let data = event
        .data()
        .and_then(Data::as_json)
        .context("data is not JSON")?;
    ensure!(data.is_object(), "data is not a JSON object");
    ensure!(
        data["task_id"] == json!(subject),
        "subject {subject} is not data.task_id {}",
        data["task_id"]
    );
    let timestamp = data["timestamp"]
        .as_str()
        .context("data.timestamp is missing")?;
    OffsetDateTime::parse(timestamp, &Rfc3339)
        .with_context(|| format!("data.timestamp {timestamp:?} is not RFC 3339"))?;
    // No attribute is ever null.
    let nulls: Vec<&String> = received
        .raw
        .as_object()
        .context("not an object")?
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k)
        .collect();
    ensure!(nulls.is_empty(), "null attributes: {nulls:?}");
    // Extensions: the service's four and daprd's three, nothing else.
    let extensions: BTreeMap<&str, String> = event
        .extensions()
        .map(|(name, value)| (name, value.to_canonical_string().into_owned()))
        .collect();
    if let Some(traceparent) = extensions.get("traceparent") {
        // The request's own W3C traceparent: its trace id is the correlation id.
        let trace_id = traceparent.split('-').nth(1).unwrap_or_default();
        ensure!(
            Uuid::try_parse(trace_id).ok().map(|id| id.to_string())
                == Some(extensions["correlationid"].clone()),
            "traceparent {traceparent} is not in the trace of correlationid {}",
            extensions["correlationid"]
        );
    }
    let names: Vec<&str> = extensions
        .keys()
        .copied()
        .filter(|name| *name != "traceparent")
        .collect();
    ensure!(
        names
            == [
                "correlationid",
                "partitionkey",
                "pubsubname",
                "sequence",
                "topic",
                "traceid",
                "tracestate"
            ],
        "extensions {names:?}"
    );
    ensure!(
        extensions["sequence"].len() == 20
            && extensions["sequence"].bytes().all(|b| b.is_ascii_digit()),
        "sequence {:?} is not 20 zero-padded digits",
        extensions["sequence"]
    );
    ensure!(
        extensions["topic"] == received.topic,
        "topic attribute {} in {}",
        extensions["topic"],
        received.topic
    );
    ensure!(
        extensions["pubsubname"] == PUBSUB,
        "pubsubname {}",
        extensions["pubsubname"]
    );
    ensure!(
        extensions["tracestate"].is_empty(),
        "tracestate {:?}",
        extensions["tracestate"]
    );
    ensure!(
        extensions["traceid"] == extensions["correlationid"],
        "traceid {} differs from correlationid {}: daprd rewrote it",
        extensions["traceid"],
        extensions["correlationid"]
    );
    Uuid::parse_str(&extensions["correlationid"]).context("correlationid is not a UUID")?;
    ensure!(
        received.key.as_deref() == Some(extensions["partitionkey"].as_str()),
        "the Kafka key {:?} is not the partition key {}",
        received.key,
        extensions["partitionkey"]
    );
    ensure!(
        data["user_id"] == json!(extensions["partitionkey"]),
        "partitionkey {} is not data.user_id {}",
        extensions["partitionkey"],
        data["user_id"]
    );
    Ok(())
}

/// Checks that the records are exactly the expected events: per user and topic the same events in the same order
/// (Kafka offsets, one partition), each with a valid envelope, its request's correlation id and its payload.
pub(crate) fn check_exact(expected: &[Expected], received: &[Received]) -> anyhow::Result<()> {
    let mut want: BTreeMap<(String, &str), Vec<&Expected>> = BTreeMap::new();
    for e in expected {
        want.entry((e.user.clone(), e.topic)).or_default().push(e);
    }
    let mut got: BTreeMap<(String, &str), Vec<&Received>> = BTreeMap::new();
    for r in received {
        check_envelope(r).with_context(|| {
            format!("record {}/{}@{}: {}", r.topic, r.partition, r.offset, r.raw)
        })?;
        let topic = TOPICS
            .iter()
            .find(|t| **t == r.topic)
            .context("a record in an unknown topic")?;
        got.entry((r.key.clone().unwrap_or_default(), topic))
            .or_default()
            .push(r);
    }
    for ((user, topic), records) in &mut got {
        let partition = records[0].partition;
        ensure!(
            records.iter().all(|r| r.partition == partition),
            "the events of user {user} in {topic} are spread over several partitions"
        );
        records.sort_by_key(|r| r.offset);
    }
    let want_keys: Vec<_> = want.keys().collect();
    let got_keys: Vec<_> = got.keys().collect();
    ensure!(
        want_keys == got_keys,
        "events for (user, topic) {got_keys:?}, expected {want_keys:?}"
    );
    for (key, wanted) in &want {
        let records = &got[key];
        let describe = |list: Vec<String>| list.join(", ");
        ensure!(
            records.len() == wanted.len(),
            "user {} topic {}: {} events [{}], expected {} [{}]",
            key.0,
            key.1,
            records.len(),
            describe(
                records
                    .iter()
                    .map(|r| format!("{} {}", r.raw["type"], r.raw["subject"]))
                    .collect()
            ),
            wanted.len(),
            describe(
                wanted
                    .iter()
                    .map(|e| format!("{} {}", e.ty, e.task))
                    .collect()
            ),
        );
        for (i, (record, expected)) in records.iter().zip(wanted).enumerate() {
            let mut data: Map<String, Value> =
                record.raw["data"].as_object().cloned().unwrap_or_default();
            data.remove("timestamp");
            let context = || format!("user {} topic {} event #{i}: {}", key.0, key.1, record.raw);
            ensure!(
                record.raw["type"] == json!(expected.ty),
                "{}: type, expected {}",
                context(),
                expected.ty
            );
            ensure!(
                record.raw["subject"] == json!(expected.task),
                "{}: subject, expected {}",
                context(),
                expected.task
            );
            ensure!(
                Value::Object(data) == expected.data,
                "{}: data, expected {}",
                context(),
                expected.data
            );
            ensure!(
                record.raw["correlationid"] == json!(expected.correlation),
                "{}: correlationid, expected {}",
                context(),
                expected.correlation
            );
        }
    }
    let ids: HashSet<&str> = received.iter().map(Received::id).collect();
    ensure!(ids.len() == received.len(), "an event id arrived twice");
    Ok(())
}

/// The delivery counts of a fault test.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Events the service had to publish (successful requests × events per request).
    pub(crate) sent: usize,
    /// Distinct expected events that arrived at least once.
    pub(crate) delivered: usize,
    /// Extra copies of delivered events (records beyond the first of an event).
    pub(crate) duplicated: usize,
    /// Expected events that never arrived.
    pub(crate) lost: usize,
    /// Events that arrived under more than one id (a redelivery must keep its id).
    pub(crate) id_changes: usize,
    /// Records of the run that were not expected at all.
    pub(crate) unexpected: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, delivered {}, duplicated {}, lost {}, id changes {}, unexpected {}",
            self.sent, self.delivered, self.duplicated, self.lost, self.id_changes, self.unexpected
        )
    }
}

/// Counts what arrived of `expected` (`(task id, type)` pairs); every record must also have a valid envelope.
pub(crate) fn count(
    expected: &HashSet<(String, String)>,
    received: &[Received],
) -> anyhow::Result<Counts> {
    let mut ids: HashMap<(String, String), HashSet<String>> = HashMap::new();
    let mut copies: HashMap<(String, String), usize> = HashMap::new();
    let mut unexpected = 0;
    for record in received {
        check_envelope(record)
            .with_context(|| format!("record {}: {}", record.offset, record.raw))?;
        let what = record.what();
        if !expected.contains(&what) {
            unexpected += 1;
            continue;
        }
        ids.entry(what.clone())
            .or_default()
            .insert(record.id().to_owned());
        *copies.entry(what).or_default() += 1;
    }
    let delivered = copies.len();
    Ok(Counts {
        sent: expected.len(),
        delivered,
        duplicated: copies.values().map(|n| n - 1).sum(),
        lost: expected.len() - delivered,
        id_changes: ids.values().filter(|set| set.len() > 1).count(),
        unexpected,
    })
}
