//! The load generator: N keep-alive HTTP/1.1 connections, each sending mutating task requests back to back (create,
//! rename, complete, again) until a deadline as one of the shape's users, optionally with a fresh W3C `traceparent`
//! on every request, recording every latency in an HdrHistogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds: 3 significant digits (0.1 % error) from 1 µs to one hour; larger values
/// are clamped to one hour.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("the bounds are valid")
}

/// Records `latency` in `histogram` (clamped to its range).
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
}

/// The value at quantile `q` (0.0..=1.0) in nanoseconds; `None` when nothing was recorded.
pub(crate) fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q))
}

/// The largest value recorded (to the histogram's precision); `None` when nothing was recorded.
pub(crate) fn max(histogram: &Histogram<u64>) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.max())
}

/// How the load looks from the outside: who sends and with which headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Short name, used in the report and file names.
    pub(crate) key: &'static str,
    /// Distinct users (accounts), the connections spread round-robin over them.
    pub(crate) users: usize,
    /// Concurrent keep-alive connections.
    pub(crate) connections: usize,
    /// A fresh `traceparent` (new trace id) on every request, as an ingress that starts a trace per request.
    pub(crate) traceparent: bool,
}

/// What one measured stretch of load produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Latencies of the successful requests, in nanoseconds.
    pub(crate) latencies: Histogram<u64>,
    /// Requests that got the expected status.
    pub(crate) ok: u64,
    /// Requests that failed: wrong status or a broken connection.
    pub(crate) errors: u64,
    /// The first failure seen, for the report.
    pub(crate) first_error: Option<String>,
    /// Wall time from the start until the last connection finished.
    pub(crate) elapsed: Duration,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            latencies: latency_histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
        }
    }
}

impl Outcome {
    /// Adds another outcome (another connection or round) to this one; elapsed times add up.
    pub(crate) fn merge(&mut self, other: Outcome) {
        self.latencies
            .add(&other.latencies)
            .expect("histograms of one bound setting merge");
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
    traceparent: Option<&str>,
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
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
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
    send(&mut sender, method, path, token, None, body).await
}

/// The `id` of a task in a response body.
fn task_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

/// splitmix64: a small, fast generator, enough for trace ids that must differ, not be unpredictable.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A valid W3C `traceparent` (version 00, sampled) with a fresh trace id and parent id from `state`; neither id
/// is all zeros, which the W3C format forbids.
pub(crate) fn next_traceparent(state: &mut u64) -> String {
    let (high, low, parent) = (splitmix64(state), splitmix64(state), splitmix64(state) | 1);
    format!("00-{high:016x}{:016x}-{parent:016x}-01", low | 1)
}

/// Drives one connection as the user of `token` until `deadline`.
async fn run_connection(
    addr: SocketAddr,
    token: Arc<str>,
    number: usize,
    traceparent: bool,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut trace_state = (number as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
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
        let trace = traceparent.then(|| next_traceparent(&mut trace_state));
        let started = Instant::now();
        let result = send(current, method, &path, Some(&token), trace.as_deref(), body).await;
        let latency = started.elapsed();
        match result {
            Ok((status, _, body)) if status == expected => {
                outcome.ok += 1;
                record_latency(&mut outcome.latencies, latency);
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

/// Runs the connections of `shape` against `addr` for `duration`, connection `i` as the user of `tokens[i %
/// tokens.len()]`, and merges what they measured.
pub(crate) async fn run(
    addr: SocketAddr,
    tokens: &[Arc<str>],
    shape: Shape,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..shape.connections)
        .map(|number| {
            let token = tokens[number % tokens.len().max(1)].clone();
            tokio::spawn(run_connection(
                addr,
                token,
                number,
                shape.traceparent,
                deadline,
            ))
        })
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
                total
                    .latencies
                    .add(&latencies)
                    .expect("histograms of one bound setting merge");
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

    #[test]
    fn traceparents_are_valid_and_every_one_is_a_new_trace() {
        let mut state = 7;
        let mut traces = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let value = next_traceparent(&mut state);
            let parts: Vec<&str> = value.split('-').collect();
            assert_eq!(parts.len(), 4, "{value}");
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1].len(), 32, "{value}");
            assert_eq!(parts[2].len(), 16, "{value}");
            assert_eq!(parts[3], "01");
            assert!(
                parts[1..3].iter().all(|id| id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    && id.bytes().any(|b| b != b'0')),
                "{value}"
            );
            assert!(
                traces.insert(parts[1].to_owned()),
                "trace id repeated: {value}"
            );
        }
    }

    #[test]
    fn percentiles_come_from_the_hdr_histogram_within_its_precision() {
        let mut histogram = latency_histogram();
        assert_eq!(quantile(&histogram, 0.5), None);
        assert_eq!(max(&histogram), None);
        for micros in 1..=10_000u64 {
            record_latency(&mut histogram, Duration::from_micros(micros));
        }
        let close = |actual: u64, expected: u64| {
            ((actual as f64 - expected as f64) / expected as f64).abs() <= 0.001
        };
        assert!(close(quantile(&histogram, 0.5).unwrap(), 5_000_000));
        assert!(close(quantile(&histogram, 0.99).unwrap(), 9_900_000));
        assert!(close(max(&histogram).unwrap(), 10_000_000));
        // An outlier shows at the quantile above its rank only.
        let mut spiky = latency_histogram();
        for _ in 0..999 {
            record_latency(&mut spiky, Duration::from_micros(400));
        }
        record_latency(&mut spiky, Duration::from_millis(600));
        assert!(close(quantile(&spiky, 0.99).unwrap(), 400_000));
        assert!(close(quantile(&spiky, 1.0).unwrap(), 600_000_000));
        // Merging outcomes merges their histograms.
        let mut merged = Outcome::default();
        merged.merge(Outcome {
            latencies: spiky,
            ok: 1_000,
            ..Outcome::default()
        });
        assert_eq!(merged.latencies.len(), 1_000);
    }
}
