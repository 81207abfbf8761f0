//! Shared test helpers: a mockito sidecar, events, a log-capturing drain, dead and silent ports.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudevents_model::CloudEvent;
use dapr_pubsub_client::{ClientConfig, PubSubClient};
use mockito::{Server, ServerOpts};
use slog::{Drain, Logger, o};

/// A mockito server that checks every mock's expected hits when dropped.
pub(crate) async fn sidecar() -> Server {
    Server::new_with_opts_async(ServerOpts {
        assert_on_drop: true,
        ..ServerOpts::default()
    })
    .await
}

/// A client for `base_url` with short timeouts.
pub(crate) fn client(base_url: &str, log: Logger) -> PubSubClient {
    PubSubClient::new(
        ClientConfig::new(base_url)
            .unwrap()
            .with_connect_timeout(Duration::from_millis(500))
            .with_request_timeout(Duration::from_secs(5)),
        log,
    )
}

/// A task-like CloudEvent with a partition key extension.
pub(crate) fn event(id: &str, partition_key: &str) -> CloudEvent {
    CloudEvent::builder(id, "pakaura/api", "task.created")
        .subject("task-1")
        .json_data(&serde_json::json!({"task_id": "task-1", "title": "write tests"}))
        .extension("partitionkey", partition_key)
        .build()
        .unwrap()
}

/// A loopback port nobody listens on (bound, then released).
pub(crate) fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A loopback server that accepts connections and never answers. Returns its base URL.
pub(crate) async fn silent_sidecar() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// One captured log record.
#[derive(Clone, Debug)]
pub(crate) struct LogRecord {
    pub(crate) level: slog::Level,
    pub(crate) message: String,
    pub(crate) kv: BTreeMap<String, String>,
}

/// A logger whose records can be inspected.
#[derive(Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<LogRecord>>>);

impl CapturedLogs {
    pub(crate) fn logger(&self) -> Logger {
        Logger::root(CaptureDrain(self.clone()).fuse(), o!("service" => "test"))
    }

    pub(crate) fn records(&self) -> Vec<LogRecord> {
        self.0.lock().unwrap().clone()
    }

    /// Everything logged, as one string (for "never contains" checks).
    pub(crate) fn dump(&self) -> String {
        self.records()
            .iter()
            .map(|r| format!("{} {} {:?}\n", r.level, r.message, r.kv))
            .collect()
    }
}

struct CaptureDrain(CapturedLogs);

impl Drain for CaptureDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let mut kv = KvCollector(BTreeMap::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        self.0.0.lock().unwrap().push(LogRecord {
            level: record.level(),
            message: record.msg().to_string(),
            kv: kv.0,
        });
        Ok(())
    }
}

struct KvCollector(BTreeMap<String, String>);

impl slog::Serializer for KvCollector {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

/// The single and bulk publish routes of the mock sidecar's `pubsub-kafka`/`task-events`.
pub(crate) const SINGLE: &str = "/v1.0/publish/pubsub-kafka/task-events";
pub(crate) const BULK: &str = "/v1.0/publish/bulk/pubsub-kafka/task-events";

/// The request bodies a mock recorded, as JSON.
pub(crate) type Bodies = Arc<Mutex<Vec<serde_json::Value>>>;

/// A mockito body callback that records each request body as JSON and answers `answer`.
pub(crate) fn record(
    bodies: &Bodies,
    answer: &'static str,
) -> impl Fn(&mockito::Request) -> Vec<u8> + Send + Sync + 'static {
    let bodies = Arc::clone(bodies);
    move |request: &mockito::Request| {
        let body = serde_json::from_slice(request.body().unwrap()).unwrap();
        bodies.lock().unwrap().push(body);
        answer.as_bytes().to_vec()
    }
}

/// A logger that drops everything.
pub(crate) fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Submits plain events (no extra options) to `task-events`, keyed `key`, in the order of `ids`.
pub(crate) fn submit_all(dispatcher: &dapr_pubsub_client::Dispatcher, key: &str, ids: &[&str]) {
    for id in ids {
        submit_keyed(dispatcher, &[(id, key)]);
    }
}

/// Submits plain events (no extra options) to `task-events`, each `(id, key)` in order.
pub(crate) fn submit_keyed(dispatcher: &dapr_pubsub_client::Dispatcher, events: &[(&str, &str)]) {
    for (id, key) in events {
        dispatcher
            .submit(
                "pubsub-kafka",
                "task-events",
                &event(id, key),
                dapr_pubsub_client::PublishOptions::new(),
            )
            .unwrap();
    }
}
