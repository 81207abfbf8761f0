//! The two stand-ins for the Dapr sidecar: one answers every publish with 204 at once and counts the events, the
//! other accepts connections, reads what arrives and never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
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

/// Events carried by one publish request body: the array length for the bulk API, otherwise one.
fn events_in(path: &str, body: &[u8]) -> u64 {
    if !path.contains("/publish/bulk/") {
        return 1;
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(entries)) => entries.len() as u64,
        Ok(serde_json::Value::Object(object)) => object
            .get("entries")
            .and_then(serde_json::Value::as_array)
            .map_or(1, |entries| entries.len() as u64),
        _ => 1,
    }
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
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    counters
                        .events
                        .fetch_add(events_in(&path, &body), Ordering::Relaxed);
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = StatusCode::NO_CONTENT;
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
    fn bulk_bodies_count_their_entries_and_single_publishes_count_one() {
        assert_eq!(
            events_in("/v1.0/publish/pubsub-kafka/task-events", b"{\"id\":\"x\"}"),
            1
        );
        assert_eq!(
            events_in(
                "/v1.0-alpha1/publish/bulk/pubsub-kafka/task-events",
                b"[{},{},{}]"
            ),
            3
        );
        assert_eq!(
            events_in("/v1.0-alpha1/publish/bulk/p/t", br#"{"entries":[{},{}]}"#),
            2
        );
        assert_eq!(events_in("/v1.0-alpha1/publish/bulk/p/t", b"not json"), 1);
    }
}
