//! The subscriber app: receives task events through Dapr, checks them strictly, processes each event id
//! once, and answers Dapr `SUCCESS`, `RETRY` or `DROP`.
//!
//! - `GET /dapr/subscribe`: the programmatic subscription (`task-events` → `/events/tasks`).
//! - `POST /events/tasks`: `task.*` events. `POST /events/sync`: `sync.task` events, delivered by the
//!   declarative subscription in `examples/dapr/subscription.yaml`.
//! - `GET /received`: counters and the most recent deliveries, to watch what arrived.
//!
//! Decisions: an event that is not a valid CloudEvent, has a type the route does not handle, or a payload
//! that does not fit its type is answered `DROP` (redelivering it cannot help). A transient internal
//! failure is answered `RETRY` (Dapr delivers the event again). An id already processed is answered
//! `SUCCESS` without processing it again (Kafka delivery through Dapr is at least once), and so is an event older
//! than one already processed for its task (its `sequence` extension is lower): the change it describes is
//! superseded. Both checks are `dapr_pubsub_client::ConsumerGuard`'s, one guard per subscription: order holds per
//! topic, so the two topics' events of one task are compared only with their own topic's.
//!
//! The transient failure is simulated: an event with the integer extension `simulatefailures` = N fails
//! its first N deliveries. It stands in for a database or downstream service that is briefly down.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use cloudevents_model::CloudEvent;
use dapr_pubsub_client::consumer::sequence_of;
use dapr_pubsub_client::{
    Admission, AppResponse, AppStatus, ConsumerGuard, ErrorChain, SUBSCRIBE_PATH, Subscription,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slog::{Logger, info, warn};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::delivery::KafkaPlacement;
use crate::events::{
    CORRELATION_EXTENSION, PARTITION_KEY_EXTENSION, PUBSUB_NAME, SEQUENCE_EXTENSION, SYNC_TASK,
    TASK_TYPES, TOPIC_TASK_EVENTS, now_rfc3339,
};

/// The route of `task-events` deliveries (programmatic subscription).
pub const TASKS_ROUTE: &str = "/events/tasks";
/// The route of `task-updates` deliveries (declarative subscription in `examples/dapr/`).
pub const SYNC_ROUTE: &str = "/events/sync";
/// Extension that makes the subscriber fail the first N deliveries of an event (a simulated outage).
pub const SIMULATE_FAILURES_EXTENSION: &str = "simulatefailures";
/// Largest accepted delivery (Kafka's default largest record).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Outcomes kept per id: an event redelivered forever must not grow memory forever.
const MAX_OUTCOMES_PER_ID: usize = 32;

/// Settings of the subscriber.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// The pub/sub component to subscribe through.
    pub pubsub: String,
    /// How many event ids are remembered for idempotency (oldest forgotten first).
    pub seen_capacity: usize,
    /// How many recent deliveries `GET /received` shows.
    pub recent_capacity: usize,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            pubsub: PUBSUB_NAME.to_owned(),
            seen_capacity: 10_000,
            recent_capacity: 200,
        }
    }
}

/// Which subscription a delivery came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// `task-events`, `task.*` types.
    Tasks,
    /// `task-updates`, `sync.task`.
    Sync,
}

impl Route {
    /// Its slot in per-route arrays.
    fn index(self) -> usize {
        match self {
            Self::Tasks => 0,
            Self::Sync => 1,
        }
    }

    fn accepts(self, ty: &str) -> bool {
        match self {
            Self::Tasks => TASK_TYPES.contains(&ty),
            Self::Sync => ty == SYNC_TASK,
        }
    }
}

/// What the subscriber did with one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Processed now; answered `SUCCESS`.
    Processed,
    /// Already processed earlier; answered `SUCCESS` without processing again.
    Duplicate,
    /// Older than an event of the same task processed earlier (by `sequence`); answered `SUCCESS` without
    /// processing it, since the change it describes is superseded.
    Stale,
    /// A transient failure; answered `RETRY`.
    Retry,
    /// Invalid, unknown or malformed; answered `DROP`.
    Drop,
}

impl Outcome {
    /// The answer Dapr gets.
    pub fn status(self) -> AppStatus {
        match self {
            Self::Processed | Self::Duplicate | Self::Stale => AppStatus::Success,
            Self::Retry => AppStatus::Retry,
            Self::Drop => AppStatus::Drop,
        }
    }
}

/// Everything known about one event id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IdRecord {
    /// How many times Dapr delivered it.
    pub deliveries: u32,
    /// How many times it was processed (1 at most, unless the id was forgotten).
    pub processed: u32,
    /// The outcome of each delivery, in order (the first 32).
    pub outcomes: Vec<Outcome>,
}

/// One delivery as `GET /received` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// When it arrived (RFC 3339).
    pub at: String,
    /// The route it came through.
    pub route: Route,
    /// Event id (as found, even when the event is invalid).
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// Event subject (the task id).
    pub subject: Option<String>,
    /// The topic, as Dapr added it.
    pub topic: Option<String>,
    /// The correlation id.
    pub correlationid: Option<String>,
    /// Kafka placement (key = partition key).
    pub kafka: KafkaPlacement,
    /// Which delivery of this id it was (1 = first).
    pub delivery: u32,
    /// What was done.
    pub outcome: Outcome,
    /// Why, for `RETRY` and `DROP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counters over all deliveries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Deliveries received.
    pub deliveries: u64,
    /// Events processed.
    pub processed: u64,
    /// Deliveries of ids already processed.
    pub duplicates: u64,
    /// Deliveries older than an event of the same task already processed.
    pub stale: u64,
    /// Deliveries answered `RETRY`.
    pub retried: u64,
    /// Deliveries answered `DROP`.
    pub dropped: u64,
    /// Processed events per type.
    pub by_type: BTreeMap<String, u64>,
}

/// What `GET /received` answers.
#[derive(Clone, Debug, Serialize)]
pub struct ReceivedReport {
    /// Counters.
    pub stats: Stats,
    /// The most recent deliveries, newest first.
    pub recent: Vec<Received>,
}

/// The payload members every task event has (SPEC §3.2); other members are not checked here.
#[derive(Deserialize)]
struct TaskPayload {
    task_id: Uuid,
    user_id: Uuid,
    action: String,
    timestamp: String,
}

/// The subscriber's state: the bounded seen-set, the recent deliveries and the counters.
pub struct SubscriberState {
    config: SubscriberConfig,
    log: Logger,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Decides duplicates and stale events, one per route: events are ordered per topic, so an event of
    /// `task-updates` says nothing about whether one of `task-events` is stale.
    guards: [ConsumerGuard; 2],
    /// What `GET /received` shows per id.
    ids: HashMap<String, IdRecord>,
    /// Ids in first-seen order, to forget the oldest when `ids` is full.
    id_order: VecDeque<String>,
    recent: VecDeque<Received>,
    stats: Stats,
}

impl std::fmt::Debug for SubscriberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SubscriberState {
    /// A subscriber with nothing received yet.
    pub fn new(config: SubscriberConfig, log: Logger) -> Self {
        Self {
            log,
            inner: Mutex::new(Inner {
                guards: [
                    ConsumerGuard::new(config.seen_capacity),
                    ConsumerGuard::new(config.seen_capacity),
                ],
                ids: HashMap::new(),
                id_order: VecDeque::new(),
                recent: VecDeque::new(),
                stats: Stats::default(),
            }),
            config,
        }
    }

    /// The programmatic subscription document (`GET /dapr/subscribe`).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        vec![Subscription::new(
            self.config.pubsub.as_str(),
            TOPIC_TASK_EVENTS,
            TASKS_ROUTE,
        )]
    }

    /// Handles one delivery and returns what was done (the answer is [`Outcome::status`]).
    pub fn handle(&self, route: Route, body: &[u8], kafka: KafkaPlacement) -> Outcome {
        let event = match CloudEvent::from_slice(body) {
            Ok(event) => event,
            Err(err) => {
                // Keep what can be read, for the log line.
                let loose: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let text = |name: &str| loose.get(name).and_then(Value::as_str).map(str::to_owned);
                let seen = Seen {
                    id: text("id"),
                    ty: text("type"),
                    subject: text("subject"),
                    topic: text("topic"),
                    correlationid: text(CORRELATION_EXTENSION),
                    sequence: text(SEQUENCE_EXTENSION),
                };
                let reason = format!("not a valid CloudEvent: {}", ErrorChain(&err));
                return self.finish(route, seen, kafka, Decision::Drop(reason));
            }
        };
        let seen = Seen::of(&event);
        if !route.accepts(event.ty()) {
            let reason = format!("unknown event type {:?} for this subscription", event.ty());
            return self.finish(route, seen, kafka, Decision::Drop(reason));
        }
        if let Err(reason) = check_payload(&event) {
            return self.finish(route, seen, kafka, Decision::Drop(reason));
        }
        let failures = event
            .extension(SIMULATE_FAILURES_EXTENSION)
            .and_then(|value| value.as_i32())
            .unwrap_or(0);
        self.finish(route, seen, kafka, Decision::Process { failures })
    }

    /// Counters and recent deliveries.
    pub fn report(&self) -> ReceivedReport {
        let inner = self.lock();
        ReceivedReport {
            stats: inner.stats.clone(),
            recent: inner.recent.iter().rev().cloned().collect(),
        }
    }

    /// What is known about an event id (while it is remembered).
    pub fn record(&self, id: &str) -> Option<IdRecord> {
        self.lock().ids.get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters here.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finish(
        &self,
        route: Route,
        seen: Seen,
        kafka: KafkaPlacement,
        decision: Decision,
    ) -> Outcome {
        let mut inner = self.lock();
        let id_key = seen.id.clone().unwrap_or_default();
        if !inner.ids.contains_key(&id_key) {
            while inner.ids.len() >= self.config.seen_capacity.max(1) {
                match inner.id_order.pop_front() {
                    Some(oldest) => {
                        inner.ids.remove(&oldest);
                    }
                    None => break,
                }
            }
            inner.id_order.push_back(id_key.clone());
        }
        let Inner {
            guards, ids, stats, ..
        } = &mut *inner;
        stats.deliveries += 1;
        let record = ids.entry(id_key).or_default();
        record.deliveries += 1;
        let delivery = record.deliveries;
        let (outcome, reason) = match decision {
            Decision::Drop(reason) => (Outcome::Drop, Some(reason)),
            Decision::Process { .. } if record.processed > 0 => (Outcome::Duplicate, None),
            Decision::Process { failures } if i64::from(delivery) <= i64::from(failures) => (
                Outcome::Retry,
                Some(format!(
                    "simulated transient failure {delivery} of {failures}"
                )),
            ),
            Decision::Process { .. } => {
                let id = seen.id.as_deref().unwrap_or_default();
                let guard = &mut guards[route.index()];
                match guard.admit_parts(id, seen.subject.as_deref(), seen.sequence.as_deref()) {
                    Admission::Apply => {
                        // Processing: a real subscriber would write to its store or call a service here.
                        record.processed += 1;
                        (Outcome::Processed, None)
                    }
                    Admission::Duplicate => (Outcome::Duplicate, None),
                    Admission::Stale => (
                        Outcome::Stale,
                        Some("a newer event of this task was processed already".to_owned()),
                    ),
                }
            }
        };
        if record.outcomes.len() < MAX_OUTCOMES_PER_ID {
            record.outcomes.push(outcome);
        }
        match outcome {
            Outcome::Processed => {
                inner.stats.processed += 1;
                if let Some(ty) = &seen.ty {
                    *inner.stats.by_type.entry(ty.clone()).or_default() += 1;
                }
            }
            Outcome::Duplicate => inner.stats.duplicates += 1,
            Outcome::Stale => inner.stats.stale += 1,
            Outcome::Retry => inner.stats.retried += 1,
            Outcome::Drop => inner.stats.dropped += 1,
        }
        let received = Received {
            at: now_rfc3339(),
            route,
            id: seen.id,
            ty: seen.ty,
            subject: seen.subject,
            topic: seen.topic,
            correlationid: seen.correlationid,
            kafka,
            delivery,
            outcome,
            reason,
        };
        self.log_delivery(&received);
        while inner.recent.len() >= self.config.recent_capacity.max(1) {
            inner.recent.pop_front();
        }
        inner.recent.push_back(received);
        outcome
    }

    fn log_delivery(&self, received: &Received) {
        let ty = received.ty.as_deref().unwrap_or("?");
        let id = received.id.as_deref().unwrap_or("?");
        let kv = slog::o!(
            "event_type" => ty.to_owned(),
            "event_id" => id.to_owned(),
            "task_id" => received.subject.clone().unwrap_or_default(),
            "topic" => received.topic.clone().unwrap_or_default(),
            "correlation_id" => received.correlationid.clone().unwrap_or_default(),
            "partition_key" => received.kafka.key.clone().unwrap_or_default(),
            "kafka" => received.kafka.position(),
            "delivery" => received.delivery,
        );
        let log = self.log.new(kv);
        match (received.outcome, &received.reason) {
            (Outcome::Processed, _) => info!(log, "processed {} {}", ty, id),
            (Outcome::Duplicate, _) => {
                info!(log, "duplicate {} {}: already processed, SUCCESS", ty, id)
            }
            (Outcome::Stale, _) => {
                info!(
                    log,
                    "stale {} {}: a newer event of its task was processed, SUCCESS", ty, id
                )
            }
            (Outcome::Retry, reason) => {
                warn!(log, "RETRY {} {}", ty, id; "reason" => reason.clone().unwrap_or_default())
            }
            (Outcome::Drop, reason) => {
                warn!(log, "DROP {} {}", ty, id; "reason" => reason.clone().unwrap_or_default())
            }
        }
    }
}

enum Decision {
    Drop(String),
    Process { failures: i32 },
}

/// The attributes kept for the log and `GET /received`.
struct Seen {
    id: Option<String>,
    ty: Option<String>,
    subject: Option<String>,
    topic: Option<String>,
    correlationid: Option<String>,
    sequence: Option<String>,
}

impl Seen {
    fn of(event: &CloudEvent) -> Self {
        let extension = |name: &str| {
            event
                .extension(name)
                .map(|value| value.to_canonical_string().into_owned())
        };
        Self {
            id: Some(event.id().to_owned()),
            ty: Some(event.ty().to_owned()),
            subject: event.subject().map(str::to_owned),
            topic: extension("topic"),
            correlationid: extension(CORRELATION_EXTENSION),
            sequence: sequence_of(event).map(str::to_owned),
        }
    }
}

/// Checks the payload against SPEC §3.2: the common members, and an `action` that fits the type.
fn check_payload(event: &CloudEvent) -> Result<(), String> {
    let payload: TaskPayload = match event.data_as::<TaskPayload>() {
        Some(Ok(payload)) => payload,
        Some(Err(err)) => return Err(format!("payload does not fit {}: {err}", event.ty())),
        None => return Err(format!("{} without data", event.ty())),
    };
    let expected_action = event.ty().strip_prefix("task.");
    match expected_action {
        Some(action) if action != payload.action => {
            return Err(format!(
                "action {:?} does not match type {}",
                payload.action,
                event.ty()
            ));
        }
        None if !matches!(
            payload.action.as_str(),
            "created" | "updated" | "completed" | "uncompleted" | "deleted"
        ) =>
        {
            return Err(format!("unknown sync action {:?}", payload.action));
        }
        _ => {}
    }
    if event.subject() != Some(payload.task_id.to_string().as_str()) {
        return Err("subject is not the payload's task_id".to_owned());
    }
    let partition_key = event
        .extension(PARTITION_KEY_EXTENSION)
        .map(|value| value.to_canonical_string());
    if partition_key.is_some_and(|key| key != payload.user_id.to_string()) {
        return Err("partitionkey is not the payload's user_id".to_owned());
    }
    if OffsetDateTime::parse(&payload.timestamp, &Rfc3339).is_err() {
        return Err(format!("timestamp {:?} is not RFC 3339", payload.timestamp));
    }
    Ok(())
}

/// Mounts the subscriber's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route(SUBSCRIBE_PATH, web::get().to(subscribe))
        .route(TASKS_ROUTE, web::post().to(task_events))
        .route(SYNC_ROUTE, web::post().to(sync_events))
        .route("/received", web::get().to(received))
        .route("/healthz", web::get().to(HttpResponse::NoContent));
}

/// Starts the subscriber on `listener`. With `handle_signals`, Ctrl-C and SIGTERM stop it gracefully.
pub fn serve(
    listener: TcpListener,
    state: Arc<SubscriberState>,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(2)
        .shutdown_timeout(5)
        .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

async fn subscribe(state: web::Data<SubscriberState>) -> HttpResponse {
    HttpResponse::Ok().json(state.subscriptions())
}

async fn task_events(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<SubscriberState>,
) -> HttpResponse {
    answer(state.handle(Route::Tasks, &body, KafkaPlacement::from_request(&request)))
}

async fn sync_events(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<SubscriberState>,
) -> HttpResponse {
    answer(state.handle(Route::Sync, &body, KafkaPlacement::from_request(&request)))
}

async fn received(state: web::Data<SubscriberState>) -> HttpResponse {
    HttpResponse::Ok().json(state.report())
}

fn answer(outcome: Outcome) -> HttpResponse {
    HttpResponse::Ok().json(AppResponse::new(outcome.status()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{TASK_CREATED, TaskEventFactory};
    use serde_json::json;

    fn state(seen_capacity: usize) -> SubscriberState {
        let config = SubscriberConfig {
            seen_capacity,
            ..SubscriberConfig::default()
        };
        SubscriberState::new(config, Logger::root(slog::Discard, slog::o!()))
    }

    fn created_body(extra: &[(&str, Value)]) -> (String, Vec<u8>) {
        let factory = TaskEventFactory::new("pakaura/test", Uuid::new_v4());
        let [created, _sync] = factory
            .created(Uuid::new_v4(), Uuid::new_v4(), "title")
            .unwrap();
        let mut json: Value =
            serde_json::from_str(&created.event.to_json_string().unwrap()).unwrap();
        // What Dapr adds on the way.
        json["topic"] = json!("task-events");
        json["pubsubname"] = json!("pubsub-kafka");
        json["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        json["tracestate"] = json!("");
        for (key, value) in extra {
            json[*key] = value.clone();
        }
        (
            created.event.id().to_owned(),
            serde_json::to_vec(&json).unwrap(),
        )
    }

    #[test]
    fn an_older_change_of_a_task_arriving_late_is_acknowledged_as_stale() {
        let state = state(100);
        let (_, newer) = created_body(&[("sequence", json!("00000000000000000002"))]);
        // The same task's earlier change: another id, a lower sequence.
        let mut older: Value = serde_json::from_slice(&newer).unwrap();
        older["id"] = json!(Uuid::new_v4().to_string());
        older["sequence"] = json!("00000000000000000001");
        let older = serde_json::to_vec(&older).unwrap();
        assert_eq!(
            state.handle(Route::Tasks, &newer, KafkaPlacement::default()),
            Outcome::Processed
        );
        let late = state.handle(Route::Tasks, &older, KafkaPlacement::default());
        assert_eq!(late, Outcome::Stale);
        assert_eq!(late.status(), AppStatus::Success);
        assert_eq!(state.report().stats.stale, 1);
        assert_eq!(state.report().stats.processed, 1);
    }

    #[test]
    fn a_sync_event_arriving_before_its_task_event_does_not_make_it_stale() {
        let state = state(100);
        let (_, task_event) = created_body(&[("sequence", json!("00000000000000000001"))]);
        // The same task's `sync.task`, one sequence later, delivered first through the other subscription.
        let mut sync: Value = serde_json::from_slice(&task_event).unwrap();
        sync["id"] = json!(Uuid::new_v4().to_string());
        sync["type"] = json!(SYNC_TASK);
        sync["topic"] = json!("task-updates");
        sync["sequence"] = json!("00000000000000000002");
        sync["data"]["action"] = json!("created");
        let sync = serde_json::to_vec(&sync).unwrap();
        assert_eq!(
            state.handle(Route::Sync, &sync, KafkaPlacement::default()),
            Outcome::Processed
        );
        assert_eq!(
            state.handle(Route::Tasks, &task_event, KafkaPlacement::default()),
            Outcome::Processed,
            "order holds per topic: the other topic's later event does not supersede this one"
        );
    }

    #[test]
    fn a_valid_event_is_processed_once_and_duplicates_are_acknowledged() {
        let state = state(100);
        let (id, body) = created_body(&[]);
        assert_eq!(
            state.handle(Route::Tasks, &body, KafkaPlacement::default()),
            Outcome::Processed
        );
        assert_eq!(
            state.handle(Route::Tasks, &body, KafkaPlacement::default()),
            Outcome::Duplicate
        );
        let record = state.record(&id).unwrap();
        assert_eq!(record.deliveries, 2);
        assert_eq!(record.processed, 1);
        let report = state.report();
        assert_eq!(report.stats.processed, 1);
        assert_eq!(report.stats.duplicates, 1);
        assert_eq!(report.stats.by_type.get(TASK_CREATED), Some(&1));
        assert_eq!(report.recent[0].topic.as_deref(), Some("task-events"));
        assert_eq!(Outcome::Duplicate.status(), AppStatus::Success);
    }

    #[test]
    fn invalid_unknown_and_malformed_events_are_dropped() {
        let state = state(100);
        let (_, invalid) = created_body(&[("time", json!("yesterday"))]);
        let (_, unknown) = created_body(&[("type", json!("task.archived"))]);
        let (_, wrong_action) = created_body(&[(
            "data",
            json!({"task_id": Uuid::new_v4(), "user_id": Uuid::new_v4(), "action": "deleted", "timestamp": "x"}),
        )]);
        let (_, no_user) = created_body(&[(
            "data",
            json!({"task_id": Uuid::new_v4(), "action": "created", "timestamp": "x"}),
        )]);
        let (_, wrong_key) = created_body(&[("partitionkey", json!("someone-else"))]);
        let (_, valid) = created_body(&[]);
        let mut bad_timestamp: Value = serde_json::from_slice(&valid).unwrap();
        bad_timestamp["data"]["timestamp"] = json!("yesterday");
        let bad_timestamp = serde_json::to_vec(&bad_timestamp).unwrap();
        for body in [
            &invalid,
            &unknown,
            &wrong_action,
            &no_user,
            &wrong_key,
            &bad_timestamp,
            &b"not json".to_vec(),
        ] {
            assert_eq!(
                state.handle(Route::Tasks, body, KafkaPlacement::default()),
                Outcome::Drop
            );
        }
        // A task event on the sync route is unknown there.
        let (_, created) = created_body(&[]);
        assert_eq!(
            state.handle(Route::Sync, &created, KafkaPlacement::default()),
            Outcome::Drop
        );
        let report = state.report();
        assert_eq!(report.stats.dropped, 8);
        // Newest first: the oldest delivery (the invalid `time`) is last.
        let oldest = report.recent.last().unwrap();
        assert!(
            oldest.reason.as_deref().unwrap().contains("time"),
            "{oldest:?}"
        );
        assert_eq!(Outcome::Drop.status(), AppStatus::Drop);
    }

    #[test]
    fn a_transient_failure_answers_retry_until_it_clears() {
        let state = state(100);
        let (id, body) = created_body(&[(SIMULATE_FAILURES_EXTENSION, json!(2))]);
        let outcomes: Vec<_> = (0..4)
            .map(|_| state.handle(Route::Tasks, &body, KafkaPlacement::default()))
            .collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Retry,
                Outcome::Retry,
                Outcome::Processed,
                Outcome::Duplicate
            ]
        );
        assert_eq!(state.record(&id).unwrap().processed, 1);
        assert_eq!(Outcome::Retry.status(), AppStatus::Retry);
    }

    #[test]
    fn the_seen_set_is_bounded_and_forgets_the_oldest_id() {
        let state = state(2);
        let bodies: Vec<_> = (0..3).map(|_| created_body(&[])).collect();
        for (_, body) in &bodies {
            assert_eq!(
                state.handle(Route::Tasks, body, KafkaPlacement::default()),
                Outcome::Processed
            );
        }
        assert!(state.record(&bodies[0].0).is_none());
        assert!(state.record(&bodies[2].0).is_some());
        // The forgotten id is processed again: the bound is the price of bounded memory.
        assert_eq!(
            state.handle(Route::Tasks, &bodies[0].1, KafkaPlacement::default()),
            Outcome::Processed
        );
    }

    #[test]
    fn the_subscription_document_names_task_events() {
        let json = serde_json::to_value(state(1).subscriptions()).unwrap();
        assert_eq!(
            json,
            json!([{"pubsubname": "pubsub-kafka", "topic": "task-events", "route": "/events/tasks"}])
        );
    }
}
