//! The load generator: N keep-alive HTTP/1.1 connections, each sending mutating task requests back to back (create,
//! rename, complete, again) until a deadline, recording every latency in a [`Histogram`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::histogram::Histogram;

/// What one measured stretch of load produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Latencies of the successful requests, in nanoseconds.
    pub(crate) latencies: Histogram,
    /// Requests that got the expected status.
    pub(crate) ok: u64,
    /// Requests that failed: wrong status or a broken connection.
    pub(crate) errors: u64,
    /// The first failure seen, for the report.
    pub(crate) first_error: Option<String>,
    /// Wall time from the start until the last connection finished.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// Adds another outcome (another connection or round) to this one; elapsed times add up.
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.latencies.merge(&other.latencies);
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.elapsed += other.elapsed;
    }

    /// Successful requests per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// One step of the request cycle of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Create,
    Rename,
    Complete,
}

impl Step {
    fn next(self) -> Self {
        match self {
            Step::Create => Step::Rename,
            Step::Rename => Step::Complete,
            Step::Complete => Step::Create,
        }
    }
}

/// Opens one HTTP/1.1 connection; its driver runs on a spawned task.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and returns the status and body.
pub(crate) async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, hyper::HeaderMap, Bytes)> {
    sender.ready().await?;
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Full::new(Bytes::from(body))
        }
        None => Full::new(Bytes::new()),
    };
    let response = sender.send_request(request.body(body)?).await?;
    let (parts, body) = response.into_parts();
    Ok((
        parts.status,
        parts.headers,
        body.collect().await?.to_bytes(),
    ))
}

/// One-off request on a fresh connection (readiness checks, registration, metrics).
pub(crate) async fn request_once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, hyper::HeaderMap, Bytes)> {
    let mut sender = connect(addr).await?;
    send(&mut sender, method, path, token, body).await
}

/// The `id` of a task in a response body.
fn task_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

/// Drives one connection until `deadline`.
async fn run_connection(
    addr: SocketAddr,
    token: Arc<str>,
    number: usize,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut sender = None;
    let mut step = Step::Create;
    let mut task: Option<String> = None;
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let current = match sender.as_mut() {
            Some(current) => current,
            None => match connect(addr).await {
                Ok(fresh) => sender.insert(fresh),
                Err(error) => {
                    outcome.errors += 1;
                    outcome
                        .first_error
                        .get_or_insert_with(|| format!("connect: {error:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let step_now = if task.is_none() { Step::Create } else { step };
        sequence += 1;
        let (method, path, body, expected) = match (step_now, task.as_deref()) {
            (Step::Rename, Some(id)) => (
                Method::PATCH,
                format!("/api/v1/tasks/{id}"),
                Some(format!(
                    r#"{{"title":"bench c{number} renamed {sequence}"}}"#
                )),
                StatusCode::OK,
            ),
            (Step::Complete, Some(id)) => (
                Method::POST,
                format!("/api/v1/tasks/{id}/complete"),
                None,
                StatusCode::OK,
            ),
            _ => (
                Method::POST,
                "/api/v1/tasks".to_owned(),
                Some(format!(r#"{{"title":"bench c{number} task {sequence}"}}"#)),
                StatusCode::CREATED,
            ),
        };
        let started = Instant::now();
        let result = send(current, method, &path, Some(&token), body).await;
        let latency = started.elapsed();
        match result {
            Ok((status, _, body)) if status == expected => {
                outcome.ok += 1;
                outcome
                    .latencies
                    .record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
                if step_now == Step::Create {
                    task = task_id(&body);
                }
                step = step_now.next();
            }
            Ok((status, _, body)) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert_with(|| {
                    format!(
                        "{path}: {status} {}",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )
                });
                task = None;
            }
            Err(error) => {
                outcome.errors += 1;
                outcome
                    .first_error
                    .get_or_insert_with(|| format!("{path}: {error:#}"));
                sender = None;
            }
        }
    }
    outcome
}

/// Runs `connections` connections against `addr` for `duration` and merges what they measured.
pub(crate) async fn run(
    addr: SocketAddr,
    token: Arc<str>,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..connections)
        .map(|number| tokio::spawn(run_connection(addr, token.clone(), number, deadline)))
        .collect();
    let mut total = Outcome::default();
    for handle in handles {
        match handle.await {
            Ok(outcome) => {
                let Outcome {
                    latencies,
                    ok,
                    errors,
                    first_error,
                    ..
                } = outcome;
                total.latencies.merge(&latencies);
                total.ok += ok;
                total.errors += errors;
                total.first_error = total.first_error.take().or(first_error);
            }
            Err(error) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("connection task: {error}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_is_create_rename_complete() {
        assert_eq!(Step::Create.next(), Step::Rename);
        assert_eq!(Step::Rename.next(), Step::Complete);
        assert_eq!(Step::Complete.next(), Step::Create);
    }

    #[test]
    fn throughput_divides_successes_by_elapsed_time_across_merges() {
        let mut first = Outcome {
            ok: 300,
            elapsed: Duration::from_secs(1),
            ..Outcome::default()
        };
        first.merge(Outcome {
            ok: 100,
            errors: 2,
            elapsed: Duration::from_secs(1),
            ..Outcome::default()
        });
        assert_eq!(first.errors, 2);
        assert!((first.throughput() - 200.0).abs() < 1e-9);
        assert_eq!(
            task_id(br#"{"id":"abc","title":"t"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(task_id(b"{}"), None);
    }
}
