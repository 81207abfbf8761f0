//! The two stand-ins for the Dapr sidecar: one answers every publish with 204 at once and counts the events (single
//! publishes and the entries of bulk publishes, answered as daprd answers them), the other accepts connections, reads
//! what arrives and never answers.
//!
//! The 204 sink also looks into every event it accepts ([`Observer`]): the time from the event's `time` attribute
//! (taken by task-api inside the transaction, just before the commit) to its arrival, the first and last arrival,
//! duplicate ids, and whether the events of one key (partition key or subject) arrive in order of their
//! CloudEvents `sequence` extension (or, for events without one, of the index the sender wrote them at, where the
//! benchmark wrote them itself).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::load::latency_histogram;

/// What a sink has seen so far.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    /// HTTP requests answered (204 sink) or connections accepted (hanging sink).
    pub(crate) requests: AtomicU64,
    /// Events received: one per single publish, the entry count of a bulk publish (204 sink only).
    pub(crate) events: AtomicU64,
    /// What the accepted events looked like (204 sink only).
    pub(crate) observer: Observer,
}

/// Which events must arrive in `sequence` order among themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum OrderBy {
    /// The events of one partition key (user): what the outbox relay promises, checked on the drain backlog,
    /// whose events the benchmark numbered itself.
    PartitionKey,
    /// The events of one task (`subject`): what task-api's `sequence` promises under concurrent load (two tasks
    /// of one user may commit in the opposite order of their numbers).
    #[default]
    Subject,
}

/// Order of the events of each key by their `sequence` extension.
#[derive(Debug, Default)]
pub(crate) struct OrderCheck {
    last: HashMap<String, Sequence>,
    /// Events that had a key and a `sequence`, and so were checked.
    pub(crate) checked: u64,
    /// Events without a `sequence` (or without a key): their order cannot be told from what arrives.
    pub(crate) unchecked: u64,
    /// Checked events whose `sequence` was not above the last one of their key.
    pub(crate) out_of_order: u64,
}

/// A `sequence` value: compared as a number when it is all digits (the zero-padded decimal task-api writes),
/// else as a string (what the CloudEvents extension specifies).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Sequence {
    Number(u128),
    Text(String),
}

impl Sequence {
    fn parse(text: &str) -> Self {
        match text.parse::<u128>() {
            Ok(number) if text.bytes().all(|b| b.is_ascii_digit()) => Sequence::Number(number),
            _ => Sequence::Text(text.to_owned()),
        }
    }
}

impl OrderCheck {
    /// Notes one arriving event of `key` with `sequence`; `false` when it arrived out of order.
    pub(crate) fn observe(&mut self, key: Option<&str>, sequence: Option<&str>) -> bool {
        let (Some(key), Some(sequence)) = (key, sequence) else {
            self.unchecked += 1;
            return true;
        };
        self.checked += 1;
        let sequence = Sequence::parse(sequence);
        match self.last.get_mut(key) {
            Some(last) if *last >= sequence => {
                self.out_of_order += 1;
                false
            }
            Some(last) => {
                *last = sequence;
                true
            }
            None => {
                self.last.insert(key.to_owned(), sequence);
                true
            }
        }
    }
}

/// What the events reaching the 204 sink looked like.
#[derive(Debug)]
pub(crate) struct ObserverState {
    /// Event `time` to arrival, in nanoseconds, one histogram per label: the label that was set (see
    /// [`Observer::set_label`]) when the event was made, so events of one slice that arrive during the next
    /// still count for their own.
    pub(crate) latencies: Vec<Histogram<u64>>,
    /// Events made while no label was set (warm-up), not in `latencies`.
    pub(crate) unlabelled: u64,
    /// Arrival order per key.
    pub(crate) order: OrderCheck,
    /// Events whose id had arrived before (at-least-once redeliveries).
    pub(crate) duplicates: u64,
    /// Events whose `time` was missing or unreadable.
    pub(crate) without_time: u64,
    /// The first and the latest arrival of an event.
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    ids: HashSet<String>,
    order_by: OrderBy,
    /// Where the sender knows the order it wrote the events in (the drain backlog): event id → index, the order
    /// used for events without a `sequence`.
    expected: HashMap<String, u64>,
    /// From when on which label holds, in time order.
    labels: Vec<(OffsetDateTime, Option<usize>)>,
}

impl ObserverState {
    /// The label that held at `time`.
    fn label_at(&self, time: OffsetDateTime) -> Option<usize> {
        self.labels
            .iter()
            .rev()
            .find(|(from, _)| *from <= time)
            .and_then(|(_, label)| *label)
    }
}

/// The 204 sink's view of the events, shared with the benchmark.
#[derive(Debug)]
pub(crate) struct Observer {
    state: Mutex<ObserverState>,
}

/// Labels a sink's latencies can be split by (one per load shape).
pub(crate) const LABELS: usize = 4;

impl Default for Observer {
    fn default() -> Self {
        Self::new(OrderBy::default())
    }
}

impl Observer {
    /// An observer checking order per `order_by`.
    pub(crate) fn new(order_by: OrderBy) -> Self {
        Self {
            state: Mutex::new(ObserverState {
                latencies: (0..LABELS).map(|_| latency_histogram()).collect(),
                unlabelled: 0,
                labels: Vec::new(),
                order: OrderCheck::default(),
                duplicates: 0,
                without_time: 0,
                first: None,
                last: None,
                ids: HashSet::new(),
                order_by,
                expected: HashMap::new(),
            }),
        }
    }

    /// Events made from now on (by their `time`) count their latency under `label` (below [`LABELS`]), or
    /// nowhere with `None`.
    pub(crate) fn set_label(&self, label: Option<usize>) {
        self.mark(OffsetDateTime::now_utc(), label);
    }

    fn mark(&self, from: OffsetDateTime, label: Option<usize>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .labels
            .push((from, label.map(|label| label.min(LABELS - 1))));
    }

    /// The order the sender wrote the events in (event id → index), for events that carry no `sequence`.
    pub(crate) fn expect_order(&self, expected: HashMap<String, u64>) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expected = expected;
    }

    /// Runs `read` on the state.
    pub(crate) fn with<T>(&self, read: impl FnOnce(&ObserverState) -> T) -> T {
        read(&self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Notes the events of one accepted publish that arrived at `arrived` (wall clock `now`).
    fn observe(&self, path_and_query: &str, body: &[u8], arrived: Instant, now: OffsetDateTime) {
        let events = events_of(path_and_query, body);
        if events.is_empty() {
            return;
        }
        let query_key = query_partition_key(path_and_query);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        state.first.get_or_insert(arrived);
        state.last = Some(arrived);
        for event in &events {
            let text = |name: &str| event.get(name).and_then(Value::as_str);
            match text("time").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()) {
                Some(time) => match state.label_at(time) {
                    Some(label) => {
                        let nanos = (now - time).whole_nanoseconds().max(0);
                        state.latencies[label]
                            .saturating_record(u64::try_from(nanos).unwrap_or(u64::MAX));
                    }
                    None => state.unlabelled += 1,
                },
                None => state.without_time += 1,
            }
            if let Some(id) = text("id")
                && !state.ids.insert(id.to_owned())
            {
                state.duplicates += 1;
            }
            // Order holds per topic (Kafka orders one topic's partition): the key is the topic plus the task or
            // partition key, so a `sync.task` overtaking its `task.updated` on the other topic is no violation.
            let key = match state.order_by {
                OrderBy::PartitionKey => text("partitionkey").or(query_key.as_deref()),
                OrderBy::Subject => text("subject"),
            }
            .map(|key| format!("{}/{key}", topic_of(path_and_query)));
            let index;
            let sequence = match text("sequence") {
                Some(sequence) => Some(sequence),
                None => match text("id").and_then(|id| state.expected.get(id)) {
                    Some(position) => {
                        index = position.to_string();
                        Some(index.as_str())
                    }
                    None => None,
                },
            };
            state.order.observe(key.as_deref(), sequence);
        }
    }
}

/// The CloudEvents in a publish: the body of a single publish, the `event` of every bulk entry (an object, or a
/// string holding the event's JSON).
fn events_of(path_and_query: &str, body: &[u8]) -> Vec<Value> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    if path_and_query.starts_with(BULK_PREFIX) || path_and_query.starts_with(ALPHA_BULK_PREFIX) {
        let Value::Array(entries) = value else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|mut entry| match entry.get_mut("event").map(Value::take) {
                Some(Value::String(text)) => serde_json::from_str(&text).ok(),
                Some(event @ Value::Object(_)) => Some(event),
                _ => None,
            })
            .collect()
    } else if path_and_query.starts_with(PUBLISH_PREFIX) {
        vec![value]
    } else {
        Vec::new()
    }
}

/// The topic of a publish URL: its last path segment.
fn topic_of(path_and_query: &str) -> &str {
    let path = path_and_query.split('?').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default()
}

/// `metadata.partitionKey` of a publish URL, if given.
fn query_partition_key(path_and_query: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("metadata.partitionKey="))
        .map(str::to_owned)
}

/// Path prefix of daprd's single publish API.
const PUBLISH_PREFIX: &str = "/v1.0/publish/";
/// Path prefix of daprd's bulk publish API (stable since Dapr 1.17).
const BULK_PREFIX: &str = "/v1.0/publish/bulk/";
/// Path prefix of the bulk publish API of sidecars before 1.17 (daprd 1.18 still serves it).
const ALPHA_BULK_PREFIX: &str = "/v1.0-alpha1/publish/bulk/";

/// How the 204 sink answers one request, and how many events it carries: what daprd (1.18,
/// `pkg/api/http` `onBulkPublish`) answers when the broker takes every event.
///
/// - `/v1.0/publish/…` (not bulk): 204, one event.
/// - `/v1.0/publish/bulk/…` or `/v1.0-alpha1/publish/bulk/…`: the body must be a JSON array of entries, each with a non-empty `entryId`
///   unique in the request; then 204 with an empty body and one event per entry. Otherwise daprd publishes nothing
///   and answers 400 with its `ERR_PUBSUB_EVENTS_SER` error: so does the sink, counting no event.
/// - anything else (health checks, metadata): 204, no event.
fn answer(path: &str, body: &[u8]) -> (StatusCode, u64, &'static str) {
    if path.starts_with(BULK_PREFIX) || path.starts_with(ALPHA_BULK_PREFIX) {
        return match bulk_entries(body) {
            Some(entries) => (StatusCode::NO_CONTENT, entries, ""),
            None => (
                StatusCode::BAD_REQUEST,
                0,
                r#"{"errorCode":"ERR_PUBSUB_EVENTS_SER","message":"error marshaling events to bytes"}"#,
            ),
        };
    }
    let events = u64::from(path.starts_with(PUBLISH_PREFIX));
    (StatusCode::NO_CONTENT, events, "")
}

/// The entry count of a bulk publish body that daprd would accept.
fn bulk_entries(body: &[u8]) -> Option<u64> {
    let serde_json::Value::Array(entries) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for entry in &entries {
        let id = entry
            .get("entryId")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if id.is_empty() || !seen.insert(id) {
            return None;
        }
    }
    Some(entries.len() as u64)
}

/// Serves the 204 sink on `listener` until the runtime stops.
pub(crate) async fn serve_ok(listener: TcpListener, counters: Arc<SinkCounters>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let counters = counters.clone();
                async move {
                    let path = request.uri().path().to_owned();
                    let path_and_query = request
                        .uri()
                        .path_and_query()
                        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, events, answer_body) = answer(&path, &body);
                    if events > 0 {
                        counters.observer.observe(
                            &path_and_query,
                            &body,
                            Instant::now(),
                            OffsetDateTime::now_utc(),
                        );
                    }
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    counters.events.fetch_add(events, Ordering::Relaxed);
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(answer_body.as_bytes())));
                    *response.status_mut() = status;
                    if !answer_body.is_empty() {
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            // A client closing its idle pooled connection ends this with an error; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves the hanging sink on `listener`: every connection is read and never answered.
pub(crate) async fn serve_hanging(listener: TcpListener, counters: Arc<SinkCounters>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
    }
}

/// Both sinks, running on their own thread and runtime so that they do not share the load generator's workers.
pub(crate) struct Sinks {
    /// Address of the 204 sink.
    pub(crate) ok_addr: SocketAddr,
    /// Counters of the 204 sink.
    pub(crate) ok: Arc<SinkCounters>,
    /// Address of the hanging sink.
    pub(crate) hanging_addr: SocketAddr,
    /// Counters of the hanging sink.
    pub(crate) hanging: Arc<SinkCounters>,
}

impl Sinks {
    /// Binds both sinks on 127.0.0.1 and starts them on a background thread that lives as long as the process;
    /// the 204 sink checks the order of events per `order_by`.
    pub(crate) fn start(order_by: OrderBy) -> anyhow::Result<Self> {
        let ok_std = std::net::TcpListener::bind("127.0.0.1:0")?;
        let hanging_std = std::net::TcpListener::bind("127.0.0.1:0")?;
        ok_std.set_nonblocking(true)?;
        hanging_std.set_nonblocking(true)?;
        let sinks = Self {
            ok_addr: ok_std.local_addr()?,
            ok: Arc::new(SinkCounters {
                observer: Observer::new(order_by),
                ..SinkCounters::default()
            }),
            hanging_addr: hanging_std.local_addr()?,
            hanging: Arc::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (ok, hanging) = (sinks.ok.clone(), sinks.hanging.clone());
        std::thread::Builder::new()
            .name("sinks".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let ok_listener =
                        TcpListener::from_std(ok_std).expect("listener registers with the runtime");
                    let hanging_listener = TcpListener::from_std(hanging_std)
                        .expect("listener registers with the runtime");
                    tokio::join!(
                        serve_ok(ok_listener, ok),
                        serve_hanging(hanging_listener, hanging)
                    );
                });
            })?;
        Ok(sinks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_checked_per_key_by_sequence_and_events_without_one_are_counted_apart() {
        let mut check = OrderCheck::default();
        assert!(check.observe(Some("u1"), Some("00000000000000000002")));
        assert!(check.observe(Some("u2"), Some("00000000000000000001")));
        assert!(check.observe(Some("u1"), Some("00000000000000000010")));
        // Numbers, not strings: 9 < 10 however the digits are padded.
        assert!(!check.observe(Some("u1"), Some("9")));
        // The same sequence again (a redelivery after the next one) is out of order too.
        assert!(!check.observe(Some("u2"), Some("00000000000000000001")));
        assert!(check.observe(Some("u2"), Some("00000000000000000003")));
        assert!(check.observe(Some("u3"), None));
        assert!(check.observe(None, Some("1")));
        assert_eq!(
            (check.checked, check.out_of_order, check.unchecked),
            (6, 2, 2)
        );
        // Non-numeric values compare as strings, as the extension says.
        assert!(check.observe(Some("t"), Some("b")));
        assert!(!check.observe(Some("t"), Some("a")));
    }

    #[test]
    fn the_observer_measures_time_to_arrival_by_the_label_of_when_the_event_was_made() {
        let observer = Observer::new(OrderBy::PartitionKey);
        let now = OffsetDateTime::now_utc();
        let ago = |ms: i64| now - time::Duration::milliseconds(ms);
        // Slice 0 from 1 s ago, a pause from 100 ms ago, slice 1 from 50 ms ago.
        observer.mark(ago(1_000), Some(0));
        observer.mark(ago(100), None);
        observer.mark(ago(50), Some(1));
        let entry = |id: &str, key: &str, sequence: u64, ms: i64| {
            serde_json::json!({"entryId": id, "contentType": "application/cloudevents+json", "event": {
                "id": id, "time": ago(ms).format(&Rfc3339).unwrap(), "partitionkey": key, "subject": id,
                "sequence": format!("{sequence:020}")}})
        };
        // Made in slice 0 (arriving during slice 1), in the pause, and before any slice (warm-up).
        let body = serde_json::to_vec(&serde_json::json!([
            entry("a", "u1", 1, 300),
            entry("b", "u1", 2, 500),
            entry("c", "u2", 1, 700),
            entry("e", "u4", 1, 70),
            entry("f", "u5", 1, 2_000)
        ]))
        .unwrap();
        let arrived = Instant::now();
        observer.observe("/v1.0-alpha1/publish/bulk/p/t", &body, arrived, now);
        // Made in slice 1: a later publish of u1 with a smaller sequence (a redelivery of `a`), and a single
        // publish whose key is only in the query.
        let late = serde_json::to_vec(&serde_json::json!([entry("a", "u1", 1, 1)])).unwrap();
        observer.observe("/v1.0-alpha1/publish/bulk/p/t", &late, arrived, now);
        let single = serde_json::json!({"id": "d", "time": ago(2).format(&Rfc3339).unwrap(), "sequence": "1"});
        observer.observe(
            "/v1.0/publish/p/t?metadata.partitionKey=u3",
            &serde_json::to_vec(&single).unwrap(),
            arrived,
            now,
        );
        observer.with(|state| {
            assert_eq!(state.latencies[0].len(), 3);
            assert_eq!(state.latencies[1].len(), 2);
            assert_eq!(state.unlabelled, 2);
            let p50 = state.latencies[0].value_at_quantile(0.5);
            assert!((499_000_000..=501_000_000).contains(&p50), "{p50}");
            assert!(state.latencies[1].max() <= 2_100_000);
            assert_eq!(state.duplicates, 1);
            assert_eq!(state.order.checked, 7, "u3 comes from the query");
            assert_eq!(state.order.out_of_order, 1);
            assert_eq!(state.first, Some(arrived));
        });
    }

    #[test]
    fn order_is_checked_per_topic() {
        let observer = Observer::new(OrderBy::Subject);
        let event = |sequence: &str| {
            serde_json::to_vec(
                &serde_json::json!({"id": sequence, "subject": "t", "sequence": sequence}),
            )
            .unwrap()
        };
        let now = OffsetDateTime::now_utc();
        // The task's sync.task (sequence 2) overtakes its task.updated (1) on the other topic: no violation;
        // an older event after a newer one on the same topic is one.
        observer.observe(
            "/v1.0/publish/p/task-updates",
            &event("2"),
            Instant::now(),
            now,
        );
        observer.observe(
            "/v1.0/publish/p/task-events",
            &event("1"),
            Instant::now(),
            now,
        );
        observer.observe(
            "/v1.0/publish/p/task-events",
            &event("0"),
            Instant::now(),
            now,
        );
        observer.with(|state| {
            assert_eq!((state.order.checked, state.order.out_of_order), (3, 1));
        });
    }

    #[test]
    fn events_without_a_sequence_are_ordered_by_the_index_the_sender_wrote_them_at() {
        let observer = Observer::new(OrderBy::PartitionKey);
        observer.expect_order(
            [
                ("x".to_owned(), 1),
                ("y".to_owned(), 2),
                ("z".to_owned(), 3),
            ]
            .into(),
        );
        let event =
            |id: &str| serde_json::json!({"entryId": id, "event": {"id": id, "partitionkey": "u"}});
        let body = serde_json::to_vec(&serde_json::json!([
            event("x"),
            event("z"),
            event("y"),
            event("w")
        ]))
        .unwrap();
        observer.observe(
            "/v1.0-alpha1/publish/bulk/p/t",
            &body,
            Instant::now(),
            OffsetDateTime::now_utc(),
        );
        observer.with(|state| {
            assert_eq!(
                (
                    state.order.checked,
                    state.order.out_of_order,
                    state.order.unchecked
                ),
                (3, 1, 1),
                "y after z is out of order; w is unknown"
            );
            assert_eq!(state.without_time, 4);
        });
    }

    #[test]
    fn single_publishes_count_one_event_and_other_paths_none() {
        assert_eq!(
            answer("/v1.0/publish/pubsub-kafka/task-events", b"{\"id\":\"x\"}"),
            (StatusCode::NO_CONTENT, 1, "")
        );
        assert_eq!(
            answer("/v1.0/healthz/outbound", b""),
            (StatusCode::NO_CONTENT, 0, "")
        );
    }

    #[test]
    fn bulk_publishes_answer_204_and_count_their_entries() {
        let body = br#"[{"entryId":"a","event":{"id":"a"},"contentType":"application/cloudevents+json"},
            {"entryId":"b","event":"text","contentType":"text/plain"},
            {"entryId":"c","event":{"n":3},"contentType":"application/json","metadata":{"k":"v"}}]"#;
        assert_eq!(
            answer("/v1.0-alpha1/publish/bulk/pubsub-kafka/task-events", body),
            (StatusCode::NO_CONTENT, 3, "")
        );
        assert_eq!(
            answer("/v1.0/publish/bulk/pubsub-kafka/task-events", body),
            (StatusCode::NO_CONTENT, 3, ""),
            "the stable route is bulk too, not a single publish"
        );
        assert_eq!(
            answer(
                "/v1.0-alpha1/publish/bulk/p/t?metadata.partitionKey=u",
                b"[]"
            ),
            (StatusCode::NO_CONTENT, 0, "")
        );
    }

    #[test]
    fn bulk_bodies_daprd_would_refuse_get_400_and_count_nothing() {
        for body in [
            &b"not json"[..],
            br#"{"entries":[{"entryId":"a"}]}"#,
            br#"[{"entryId":"a","event":1},{"entryId":"a","event":2}]"#,
            br#"[{"event":1}]"#,
            br#"[{"entryId":"","event":1}]"#,
        ] {
            let (status, events, answer_body) = answer("/v1.0-alpha1/publish/bulk/p/t", body);
            assert_eq!(
                (status, events),
                (StatusCode::BAD_REQUEST, 0),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(answer_body.contains("ERR_PUBSUB_EVENTS_SER"));
        }
    }

    /// Sends one raw HTTP/1.1 request to `addr` and returns the whole answer.
    async fn exchange(addr: SocketAddr, path: &str, body: &str) -> String {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: sink\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn the_204_sink_answers_bulk_publishes_like_daprd_and_counts_their_entries() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(SinkCounters::default());
        tokio::spawn(serve_ok(listener, counters.clone()));

        let single = exchange(
            addr,
            "/v1.0/publish/pubsub-kafka/task-events",
            r#"{"id":"1"}"#,
        )
        .await;
        assert!(single.starts_with("HTTP/1.1 204"), "{single}");
        let bulk = exchange(
            addr,
            "/v1.0-alpha1/publish/bulk/pubsub-kafka/task-events?metadata.partitionKey=u",
            r#"[{"entryId":"a","event":{},"contentType":"application/cloudevents+json"},{"entryId":"b","event":{},"contentType":"application/cloudevents+json"}]"#,
        )
        .await;
        assert!(bulk.starts_with("HTTP/1.1 204"), "{bulk}");
        let refused = exchange(addr, "/v1.0-alpha1/publish/bulk/p/t", "[{}]").await;
        assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
        assert!(refused.contains("ERR_PUBSUB_EVENTS_SER"), "{refused}");

        assert_eq!(counters.requests.load(Ordering::Relaxed), 3);
        assert_eq!(
            counters.events.load(Ordering::Relaxed),
            3,
            "one single publish and two entries"
        );
    }
}
