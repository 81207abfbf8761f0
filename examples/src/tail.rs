//! The task event tail: a Dapr subscriber app that prints one line per event of the three topics as
//! it arrives, and always answers `SUCCESS` (watching never holds the stream up).
//!
//! Each line: event time, topic, Kafka partition@offset, partition key (the Kafka key), type, subject,
//! correlation id, event id; `--data` appends the payload. An event that is not a valid CloudEvent is
//! still printed, marked `INVALID` with the reason.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::Server;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use cloudevents_model::CloudEvent;
use dapr_pubsub_client::{AppResponse, SUBSCRIBE_PATH, Subscription};
use serde_json::Value;

use crate::delivery::KafkaPlacement;
use crate::events::{ALL_TOPICS, CORRELATION_EXTENSION, PUBSUB_NAME};

/// Largest accepted delivery (Kafka's default largest record).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings of the tail.
#[derive(Clone, Debug)]
pub struct TailConfig {
    /// The pub/sub component.
    pub pubsub: String,
    /// The topics to watch.
    pub topics: Vec<String>,
    /// Whether to print the payload too.
    pub show_data: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self {
            pubsub: PUBSUB_NAME.to_owned(),
            topics: ALL_TOPICS.iter().map(|topic| (*topic).to_owned()).collect(),
            show_data: false,
        }
    }
}

/// Where the lines go (stdout in the program, a buffer in tests).
pub type LineSink = Box<dyn Write + Send>;

/// The tail's state: its settings, its output and a line counter.
pub struct TailState {
    config: TailConfig,
    out: Mutex<LineSink>,
    printed: AtomicU64,
}

impl std::fmt::Debug for TailState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailState")
            .field("config", &self.config)
            .field("printed", &self.printed)
            .finish_non_exhaustive()
    }
}

impl TailState {
    /// A tail printing to `out`.
    pub fn new(config: TailConfig, out: LineSink) -> Self {
        Self {
            config,
            out: Mutex::new(out),
            printed: AtomicU64::new(0),
        }
    }

    /// The programmatic subscriptions: every topic to `/tail/{topic}`.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.config
            .topics
            .iter()
            .map(|topic| {
                Subscription::new(
                    self.config.pubsub.as_str(),
                    topic.as_str(),
                    format!("/tail/{topic}"),
                )
            })
            .collect()
    }

    /// How many lines were printed.
    pub fn printed(&self) -> u64 {
        self.printed.load(Ordering::Relaxed)
    }

    /// Prints the line of one delivery.
    pub fn print(&self, topic: &str, body: &[u8], kafka: &KafkaPlacement) {
        let line = format_line(topic, body, kafka, self.config.show_data);
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A closed stdout (`| head`) must not make Dapr redeliver: the line is lost, the answer stays SUCCESS.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_ok() {
            self.printed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The line for one delivery.
pub fn format_line(topic: &str, body: &[u8], kafka: &KafkaPlacement, show_data: bool) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("-");
    let mut line = format!(
        "{time}  {topic}/{position}  key={key}  {ty}  subject={subject}  correlationid={correlation}  id={id}",
        time = text("time"),
        position = kafka.position(),
        key = kafka
            .key
            .as_deref()
            .or(value.get("partitionkey").and_then(Value::as_str))
            .unwrap_or("-"),
        ty = text("type"),
        subject = text("subject"),
        correlation = text(CORRELATION_EXTENSION),
        id = text("id"),
    );
    if let Err(err) = CloudEvent::from_slice(body) {
        line.push_str(&format!("  INVALID: {err}"));
    }
    if show_data {
        match value.get("data") {
            Some(data) => line.push_str(&format!("  data={data}")),
            None if value.is_null() => {
                line.push_str(&format!("  body={:?}", String::from_utf8_lossy(body)))
            }
            None => {}
        }
    }
    line
}

/// Starts the tail on `listener`; Ctrl-C and SIGTERM stop it gracefully when `handle_signals` is set.
pub fn serve(
    listener: TcpListener,
    state: Arc<TailState>,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route(SUBSCRIBE_PATH, web::get().to(subscribe))
            .route("/tail/{topic}", web::post().to(deliver))
    })
    .workers(1)
    .shutdown_timeout(2)
    .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

async fn subscribe(state: web::Data<TailState>) -> HttpResponse {
    HttpResponse::Ok().json(state.subscriptions())
}

async fn deliver(
    request: HttpRequest,
    topic: web::Path<String>,
    body: web::Bytes,
    state: web::Data<TailState>,
) -> HttpResponse {
    state.print(&topic, &body, &KafkaPlacement::from_request(&request));
    HttpResponse::Ok().json(AppResponse::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_time_place_key_type_subject_and_correlation() {
        let body = br#"{"specversion":"1.0","id":"e1","source":"pakaura/api","type":"task.created",
            "time":"2026-11-27T09:00:00Z","subject":"t1","correlationid":"c1","partitionkey":"u1",
            "topic":"task-events","pubsubname":"pubsub-kafka","data":{"task_id":"t1"}}"#;
        let kafka = KafkaPlacement {
            key: Some("u1".into()),
            partition: Some(2),
            offset: Some(41),
        };
        assert_eq!(
            format_line("task-events", body, &kafka, false),
            "2026-11-27T09:00:00Z  task-events/2@41  key=u1  task.created  subject=t1  correlationid=c1  id=e1"
        );
        assert!(
            format_line("task-events", body, &kafka, true).ends_with(r#"  data={"task_id":"t1"}"#)
        );
    }

    #[test]
    fn an_invalid_event_is_printed_and_marked() {
        let line = format_line(
            "reminders",
            br#"{"specversion":"1.0","id":"e2","source":"/x","type":"t","time":"yesterday"}"#,
            &KafkaPlacement::default(),
            false,
        );
        assert!(
            line.starts_with("yesterday  reminders/-  key=-  t  subject=-"),
            "{line}"
        );
        assert!(line.contains("INVALID: `time`"), "{line}");
        let line = format_line("reminders", b"plain text", &KafkaPlacement::default(), true);
        assert!(
            line.contains("INVALID") && line.ends_with(r#"body="plain text""#),
            "{line}"
        );
    }

    #[test]
    fn it_subscribes_to_every_topic_and_counts_lines() {
        let buffer = SharedBuffer::default();
        let state = TailState::new(TailConfig::default(), Box::new(buffer.clone()));
        let routes: Vec<_> = state
            .subscriptions()
            .into_iter()
            .map(|s| (s.topic, s.route.unwrap_or_default()))
            .collect();
        assert_eq!(
            routes,
            [
                ("task-events".to_owned(), "/tail/task-events".to_owned()),
                ("task-updates".to_owned(), "/tail/task-updates".to_owned()),
                ("reminders".to_owned(), "/tail/reminders".to_owned()),
            ]
        );
        state.print("task-events", b"{}", &KafkaPlacement::default());
        assert_eq!(state.printed(), 1);
        assert_eq!(buffer.text().lines().count(), 1);
    }

    #[derive(Clone, Default)]
    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl SharedBuffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
