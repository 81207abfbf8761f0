//! The two stand-ins for the Dapr sidecar: one answers every publish with 204 at once and counts the events (single
//! publishes and the entries of bulk publishes, answered as daprd answers them), the other accepts connections, reads
//! what arrives and never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// What a sink has seen so far.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    /// HTTP requests answered (204 sink) or connections accepted (hanging sink).
    pub(crate) requests: AtomicU64,
    /// Events received: one per single publish, the entry count of a bulk publish (204 sink only).
    pub(crate) events: AtomicU64,
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
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, events, answer_body) = answer(&path, &body);
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
    /// Binds both sinks on 127.0.0.1 and starts them on a background thread that lives as long as the process.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let ok_std = std::net::TcpListener::bind("127.0.0.1:0")?;
        let hanging_std = std::net::TcpListener::bind("127.0.0.1:0")?;
        ok_std.set_nonblocking(true)?;
        hanging_std.set_nonblocking(true)?;
        let sinks = Self {
            ok_addr: ok_std.local_addr()?,
            ok: Arc::default(),
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
