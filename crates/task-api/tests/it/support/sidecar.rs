//! An in-test Dapr sidecar: an HTTP server that records every published event, from single and bulk publish
//! requests alike, and answers as told (204, 500, 403, or never), the way daprd does.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

/// How the sidecar answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 204 No Content, as Dapr does on success.
    Accept,
    /// 500 with a Dapr-style error body, as Dapr answers when the broker is unreachable.
    Fail,
    /// 403 with a Dapr-style error body: the sidecar refuses because of its deployment (topic not allowed).
    Reject,
    /// 400 with a Dapr-style error body: the sidecar refuses the event itself.
    RejectEvent,
    /// Never answers.
    Hang,
}

/// One published event as received: a single publish request, or one entry of a bulk request (then the
/// headers are the request's, the content type and partition key the entry's).
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The pubsub component.
    pub(crate) pubsub: String,
    /// The topic.
    pub(crate) topic: String,
    /// `metadata.partitionKey`.
    pub(crate) partition_key: Option<String>,
    /// The `Content-Type` header.
    pub(crate) content_type: Option<String>,
    /// The `traceparent` header.
    pub(crate) traceparent: Option<String>,
    /// The `dapr-api-token` header.
    pub(crate) api_token: Option<String>,
    /// The event as JSON.
    pub(crate) body: Value,
    /// Whether it came in a bulk publish request.
    pub(crate) bulk: bool,
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
}

/// A running test sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Sidecar {
    shared: Arc<Shared>,
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.replace("%2D", "-").replace("%2d", "-"))
    })
}

async fn publish(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Arc<Shared>>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let segments: Vec<&str> = req.path().trim_start_matches('/').split('/').collect();
    let (pubsub, topic, bulk) = match segments.as_slice() {
        ["v1.0", "publish", pubsub, topic] => ((*pubsub).to_owned(), (*topic).to_owned(), false),
        ["v1.0" | "v1.0-alpha1", "publish", "bulk", pubsub, topic] => {
            ((*pubsub).to_owned(), (*topic).to_owned(), true)
        }
        _ => (String::new(), String::new(), false),
    };
    let mode = *shared.mode.lock().unwrap();
    if mode == Mode::Hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let partition_key = query_value(req.query_string(), "metadata.partitionKey");
    let received =
        |body: Value, content_type: Option<String>, partition_key: Option<String>| Received {
            pubsub: pubsub.clone(),
            topic: topic.clone(),
            partition_key,
            content_type,
            traceparent: header("traceparent"),
            api_token: header("dapr-api-token"),
            body,
            bulk,
        };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut entry_ids = Vec::new();
    if bulk {
        // `[{"entryId", "event", "contentType", "metadata": {"partitionKey"}}]`
        let entries = body.as_array().cloned().unwrap_or_default();
        let mut got = shared.received.lock().unwrap();
        for entry in entries {
            let text = |value: &Value| value.as_str().map(str::to_owned);
            entry_ids.push(entry["entryId"].clone());
            got.push(received(
                entry["event"].clone(),
                text(&entry["contentType"]),
                text(&entry["metadata"]["partitionKey"]).or_else(|| partition_key.clone()),
            ));
        }
    } else {
        let got = received(body, header("content-type"), partition_key);
        shared.received.lock().unwrap().push(got);
    }
    match mode {
        Mode::Accept | Mode::Hang => HttpResponse::NoContent().finish(),
        // daprd lists every failed entry of a bulk request (all of them when the broker is down).
        Mode::Fail if bulk => HttpResponse::InternalServerError().json(serde_json::json!({
            "failedEntries": entry_ids
                .iter()
                .map(|id| serde_json::json!({"entryId": id, "error": "broker down"}))
                .collect::<Vec<_>>(),
            "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
        })),
        Mode::Fail => HttpResponse::InternalServerError()
            .json(serde_json::json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "broker down"})),
        Mode::Reject => HttpResponse::Forbidden()
            .json(serde_json::json!({"errorCode": "ERR_PUBSUB_FORBIDDEN", "message": "topic not allowed"})),
        Mode::RejectEvent => HttpResponse::BadRequest()
            .json(serde_json::json!({"errorCode": "ERR_PUBSUB_CLOUD_EVENTS_SER", "message": "invalid event"})),
    }
}

/// A port nothing listens on (bound, then released).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Sidecar {
    /// Starts a sidecar on a free port.
    pub(crate) fn start(mode: Mode) -> Self {
        Self::start_on(0, mode)
    }

    /// Starts a sidecar on `port` (0: any free port).
    pub(crate) fn start_on(port: u16, mode: Mode) -> Self {
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            received: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the sidecar port");
        let port = listener.local_addr().expect("local address").port();
        let data = web::Data::new(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(publish))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            shared,
            port,
            handle,
        }
    }

    /// The base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes how the following requests are answered (a broker that comes back, say).
    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Everything received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` publishes arrived (at most 10 s), then returns them all.
    pub(crate) async fn wait_for(&self, count: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count || started.elapsed() > Duration::from_secs(10) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits a little and checks nothing more than `count` arrived.
    pub(crate) async fn settle(&self, count: usize) -> Vec<Received> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = self.received();
        assert_eq!(received.len(), count, "unexpected publishes: {received:#?}");
        received
    }

    /// Stops the server.
    pub(crate) async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
