//! The delivery policy shared by every way of publishing in order: which queued events may share
//! a request ([`plan`]), how long to wait before the next attempt ([`RetryPolicy`]), and what a
//! failure means ([`FailureClass`], from [`PublishError::class`]).
//!
//! The [`Dispatcher`](crate::Dispatcher) keeps its queue in memory; a transactional outbox keeps
//! it in a table. Both hand the planner their waiting events in arrival order and send what it
//! returns; both settle failures with the same policy.
//!
//! # Why at most one event per ordering key in a request
//!
//! Kafka keeps order only within one partition of one topic, and a partition key picks the
//! partition: the unit of order is (topic, partition key), the *ordering key*. Dapr publishes the
//! entries of a bulk request independently ("does not guarantee any ordering": components without
//! native bulk publish send them concurrently) and answers with the entries that failed. Two
//! events of one key in one request could therefore land in either order, and a failed entry
//! would be overtaken by a later entry of its key that succeeded; retrying it then puts it behind
//! its successor for good. So a request carries at most one event per ordering key, the oldest
//! one waiting, and the next event of that key waits until the request's outcome is known: it
//! goes out only once the one before it was accepted (or given up on). Requests batch *across*
//! keys, where no order is promised.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::PublishError;

/// Where an event goes: the pub/sub component and the topic. With the partition key it forms
/// the ordering key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Destination<'a> {
    /// The pub/sub component name.
    pub pubsub: &'a str,
    /// The topic.
    pub topic: &'a str,
}

/// One waiting event as the planner sees it.
///
/// `G` is whatever else must be equal for two events to share a request (request metadata other
/// than the partition key, trace context, deadline); the planner only compares it.
#[derive(Clone, Debug)]
pub struct PlanEntry<'a, G> {
    /// Where it goes; `None` for a placeholder (a reservation not yet filled) that holds back
    /// every later event of its partition key, whatever their topic.
    pub destination: Option<Destination<'a>>,
    /// The partition key; `None` means no order is promised for this event (Kafka spreads
    /// key-less events over partitions), so it holds nothing back.
    pub partition_key: Option<&'a str>,
    /// Its encoded size in a bulk request body, in bytes.
    pub size: usize,
    /// Whether it may be sent now. `false` for an event waiting for its retry time and for a
    /// placeholder: it is not sent and holds back the later events of its key.
    pub ready: bool,
    /// Whether it may travel in a bulk request (else it is sent as a single publish).
    pub bulk: bool,
    /// What must be equal to share a request.
    pub group: G,
}

/// The caps of one plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most events in one request (1: no bulk requests).
    pub max_entries: usize,
    /// The most [`PlanEntry::size`] bytes in one bulk request.
    pub max_bytes: usize,
    /// The most requests in one plan.
    pub max_requests: usize,
    /// How many events past the first planned one are looked at to fill the requests: bounds
    /// the work per plan on a long line. The first ready event is always found, however far.
    pub lookahead: usize,
    /// Whether consecutive events of one ordering key may share a request (default `false`:
    /// at most one event per key in a plan). Keeps order only where the component publishes a
    /// bulk request's entries in order and fails them all-or-nothing per key; see
    /// [`with_consecutive_same_key`](Self::with_consecutive_same_key).
    pub same_key: bool,
}

impl BatchLimits {
    /// `max_entries` per request, [`MAX_BULK_BODY_BYTES`](crate::MAX_BULK_BODY_BYTES), no cap on
    /// the number of requests and no lookahead limit.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            max_bytes: crate::MAX_BULK_BODY_BYTES,
            max_requests: usize::MAX,
            lookahead: usize::MAX,
            same_key: false,
        }
    }

    /// Lets a request carry several consecutive events of one ordering key: an event joins the
    /// request that holds the earlier events of its key when every earlier event of its key in
    /// the line is in that request (none waiting, none held back, none in another request) and
    /// the request has room. The entries stay in arrival order within the request.
    ///
    /// The events of a key then reach the broker in order only if the component publishes a bulk
    /// request's entries in order and all-or-nothing per key: if an entry fails while a later
    /// entry of its key is published, the retry of the failed one lands after it. Off by default.
    pub fn with_consecutive_same_key(mut self, same_key: bool) -> Self {
        self.same_key = same_key;
        self
    }

    /// Sets how many events past the first planned one are looked at (see
    /// [`lookahead`](Self::lookahead)).
    pub fn with_lookahead(mut self, events: usize) -> Self {
        self.lookahead = events;
        self
    }

    /// Sets the byte cap of a bulk request.
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the most requests one plan returns.
    pub fn with_max_requests(mut self, requests: usize) -> Self {
        self.max_requests = requests.max(1);
        self
    }
}

/// Plans the requests that may be sent now, given the waiting events in arrival order.
///
/// Each returned request lists indices into `entries`, in arrival order; requests are ordered by
/// their first entry. Guarantees:
/// - an event is planned only if it is ready and every earlier event of its ordering key
///   (same destination and partition key) is gone from `entries` (accepted or given up on); an
///   earlier event that is not ready, a placeholder of its partition key, or an earlier event of
///   its key planned in this very plan, holds it back;
/// - so no two events of one ordering key are in one plan, and the requests of one plan may be
///   sent at the same time; the one exception is opt-in
///   ([`BatchLimits::with_consecutive_same_key`]): consecutive events of one key may then follow
///   each other in one request (never in two);
/// - a request holds one destination and one `group`, at most `max_entries` events and (when it
///   has more than one) at most `max_bytes`; an event that may not travel in bulk is a request
///   of its own.
///
/// ```
/// use dapr_pubsub_client::delivery::{plan, BatchLimits, Destination, PlanEntry};
///
/// let to = Destination { pubsub: "ps", topic: "t" };
/// let entry = |key| PlanEntry {
///     destination: Some(to), partition_key: Some(key), size: 10, ready: true, bulk: true, group: (),
/// };
/// let queue = [entry("a"), entry("a"), entry("b")];
/// // One request with the first event of "a" and the one of "b"; the second "a" waits.
/// assert_eq!(plan(queue, BatchLimits::new(10)), vec![vec![0, 2]]);
/// ```
pub fn plan<'a, G: PartialEq + Clone>(
    entries: impl IntoIterator<Item = PlanEntry<'a, G>>,
    limits: BatchLimits,
) -> Vec<Vec<usize>> {
    // Per ordering key seen so far: the request holding its events (`Some`), or held back (`None`).
    let mut keys: HashMap<(Destination<'a>, &'a str), Option<usize>> = HashMap::new();
    let mut held_keys: HashSet<&'a str> = HashSet::new();
    let mut requests: Vec<Vec<usize>> = Vec::new();
    // Per request: its destination and group, whether it may grow, and its bytes.
    let mut open: Vec<(Destination<'a>, G, bool, usize)> = Vec::new();
    let mut first_planned: Option<usize> = None;
    let fits = |request: &Vec<usize>,
                (to, group, grows, bytes): &(Destination<'a>, G, bool, usize),
                destination: Destination<'a>,
                entry: &PlanEntry<'a, G>| {
        *grows
            && *to == destination
            && *group == entry.group
            && request.len() < limits.max_entries
            && bytes + entry.size <= limits.max_bytes
    };
    for (index, entry) in entries.into_iter().enumerate() {
        if first_planned.is_some_and(|first| index - first > limits.lookahead) {
            break;
        }
        let Some(destination) = entry.destination else {
            if let Some(key) = entry.partition_key {
                held_keys.insert(key);
            }
            continue;
        };
        let joinable = entry.bulk && limits.max_entries > 1;
        let ordering_key = entry.partition_key.map(|key| (destination, key));
        if let Some(ordering_key) = ordering_key {
            if held_keys.contains(ordering_key.1) {
                continue;
            }
            if let Some(state) = keys.get_mut(&ordering_key) {
                // An earlier event of its key is in the line: it waits, unless it may follow that
                // event in the same request.
                match *state {
                    Some(at)
                        if limits.same_key
                            && entry.ready
                            && joinable
                            && fits(&requests[at], &open[at], destination, &entry) =>
                    {
                        requests[at].push(index);
                        open[at].3 += entry.size;
                    }
                    _ => *state = None,
                }
                continue;
            }
            // Whatever happens to this event, the later ones of its key wait for it.
            keys.insert(ordering_key, None);
        }
        if !entry.ready {
            continue;
        }
        let target = joinable
            .then(|| {
                requests
                    .iter()
                    .zip(&open)
                    .position(|(request, state)| fits(request, state, destination, &entry))
            })
            .flatten();
        let planned_in = match target {
            Some(at) => {
                requests[at].push(index);
                open[at].3 += entry.size;
                Some(at)
            }
            None if requests.len() < limits.max_requests => {
                requests.push(vec![index]);
                open.push((destination, entry.group, joinable, entry.size));
                first_planned.get_or_insert(index);
                Some(requests.len() - 1)
            }
            None => None,
        };
        if let Some(ordering_key) = ordering_key {
            keys.insert(ordering_key, planned_in);
        }
        // No more requests and none can grow: the rest of the line changes nothing (a lane
        // without batching then plans in constant time, however long its line).
        if requests.len() >= limits.max_requests
            && requests
                .iter()
                .zip(&open)
                .all(|(request, (_, _, grows, _))| !*grows || request.len() >= limits.max_entries)
        {
            break;
        }
    }
    requests
}

/// What a failure means for the event, whatever the delivery mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// The sidecar or the broker is absent, slow or failing (no connection, timeout, broken
    /// transport, 5xx, 408, 429): the same request may succeed soon.
    Unavailable,
    /// The sidecar refused because of how it is deployed, not because of the event (401/403
    /// token or topic access, 404 unknown pub/sub or route; Dapr's deployment error codes
    /// such as `ERR_PUBSUB_NOT_CONFIGURED` with a 400; a redirect, or a success answer it cannot
    /// have meant): nothing is wrong with the event, and it may succeed once
    /// the deployment is fixed.
    Deployment,
    /// The event itself was refused (another 4xx) or cannot be sent as it is.
    EventRejected,
}

impl FailureClass {
    /// Whether the failure says nothing about the event (an outage of the sidecar, the broker or
    /// the deployment): a durable queue keeps the event and retries for as long as it lasts.
    pub fn is_outage(self) -> bool {
        !matches!(self, Self::EventRejected)
    }
}

/// Dapr error codes that describe the deployment, not the event, whatever the status they come with.
const DEPLOYMENT_ERROR_CODES: &[&str] = &[
    "ERR_PUBSUB_NOT_CONFIGURED",
    "ERR_PUBSUB_NOT_FOUND",
    "ERR_PUBSUB_FORBIDDEN",
    "ERR_PUBSUB_EMPTY",
    "ERR_TOPIC_NAME_EMPTY",
];

pub(crate) fn classify(err: &PublishError) -> FailureClass {
    use http::StatusCode;
    match err {
        PublishError::Connect { .. }
        | PublishError::Timeout { .. }
        | PublishError::Transport { .. } => FailureClass::Unavailable,
        PublishError::Rejected {
            status, error_code, ..
        } => {
            if status.is_server_error()
                || *status == StatusCode::REQUEST_TIMEOUT
                || *status == StatusCode::TOO_MANY_REQUESTS
            {
                FailureClass::Unavailable
            } else if matches!(
                *status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            ) || error_code
                .as_deref()
                .is_some_and(|code| DEPLOYMENT_ERROR_CODES.contains(&code))
                || !status.is_client_error()
            {
                FailureClass::Deployment
            } else {
                FailureClass::EventRejected
            }
        }
        PublishError::Decode { .. } => FailureClass::Deployment,
        PublishError::Serialize { .. } | PublishError::InvalidRequest { .. } => {
            FailureClass::EventRejected
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this pause.
    Retry(Duration),
    /// Stop trying: count the event as failed (in memory) or move it aside (outbox).
    GiveUp,
}

/// Which failures are retried: the one difference between the delivery modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryMode {
    /// In memory: retry [`FailureClass::Unavailable`] up to the attempt limit, give up on
    /// anything else at once.
    Transient,
    /// Durable queue: retry every outage for as long as it lasts; retry a rejection of the
    /// event up to the attempt limit.
    Durable,
}

/// Exponential backoff with jitter and an attempt limit, used by every delivery mode.
///
/// The pause after the n-th failed attempt is drawn between half and all of
/// `min(initial × 2ⁿ⁻¹, max)` (the "equal jitter" of the AWS architecture blog: spread, yet
/// never much shorter than the step), so that many events failing at once do not retry in step.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    initial: Duration,
    max: Duration,
    max_attempts: u32,
    jitter: bool,
    mode: RetryMode,
}

impl RetryPolicy {
    /// Backoff from `initial` doubling up to `max`, with jitter, `max_attempts` attempts (the
    /// first one included, at least 1), [`RetryMode::Transient`].
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Self {
        Self {
            initial,
            max: max.max(initial),
            max_attempts: max_attempts.max(1),
            jitter: true,
            mode: RetryMode::Transient,
        }
    }

    /// Sets which failures are retried.
    pub fn with_mode(mut self, mode: RetryMode) -> Self {
        self.mode = mode;
        self
    }

    /// Waits exactly the step (for tests and for callers that spread retries otherwise).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The attempts per event, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The pause after the `failed_attempts`-th failed attempt (1 for the first failure).
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        let step_of = |n: u32| {
            // Past 32 doublings every step is capped anyway.
            let mut steps = ExponentialBuilder::new()
                .with_min_delay(self.initial)
                .with_max_delay(self.max)
                .without_max_times()
                .build();
            steps.nth(n.clamp(1, 32) as usize - 1).unwrap_or(self.max)
        };
        let step = step_of(failed_attempts);
        if !self.jitter || step.is_zero() {
            return step;
        }
        // backon adds a random share of the step to the step; drawing over half the step gives
        // a pause between half and all of it.
        let half = step / 2;
        let mut jittered = ExponentialBuilder::new()
            .with_min_delay(half)
            .with_max_delay(half)
            .with_max_times(1)
            .with_jitter()
            .build();
        jittered.next().unwrap_or(half).min(step)
    }

    /// What to do after `err` on the event's `attempts`-th attempt.
    pub fn decide(&self, err: &PublishError, attempts: u32) -> Decision {
        let class = err.class();
        let retry = match self.mode {
            RetryMode::Transient => {
                class == FailureClass::Unavailable && attempts < self.max_attempts
            }
            RetryMode::Durable => class.is_outage() || attempts < self.max_attempts,
        };
        if retry {
            Decision::Retry(self.delay(attempts))
        } else {
            Decision::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    const A: Destination<'static> = Destination {
        pubsub: "ps",
        topic: "a",
    };
    const B: Destination<'static> = Destination {
        pubsub: "ps",
        topic: "b",
    };

    fn e(to: Destination<'static>, key: &'static str) -> PlanEntry<'static, u8> {
        PlanEntry {
            destination: Some(to),
            partition_key: Some(key),
            size: 10,
            ready: true,
            bulk: true,
            group: 0,
        }
    }

    fn waiting(mut entry: PlanEntry<'static, u8>) -> PlanEntry<'static, u8> {
        entry.ready = false;
        entry
    }

    fn group(mut entry: PlanEntry<'static, u8>, group: u8) -> PlanEntry<'static, u8> {
        entry.group = group;
        entry
    }

    fn placeholder(key: &'static str) -> PlanEntry<'static, u8> {
        PlanEntry {
            destination: None,
            partition_key: Some(key),
            size: 0,
            ready: false,
            bulk: false,
            group: 0,
        }
    }

    impl BatchLimits {
        fn with_max_entries_for_test(mut self, entries: usize) -> Self {
            self.max_entries = entries;
            self
        }
    }

    /// A name, the waiting events, the caps, and the expected requests.
    type Case = (
        &'static str,
        Vec<PlanEntry<'static, u8>>,
        BatchLimits,
        Vec<Vec<usize>>,
    );

    #[test]
    fn planner_table() {
        let big = |mut entry: PlanEntry<'static, u8>| {
            entry.size = 600;
            entry
        };
        let alone = |mut entry: PlanEntry<'static, u8>| {
            entry.bulk = false;
            entry
        };
        let keyless = |mut entry: PlanEntry<'static, u8>| {
            entry.partition_key = None;
            entry
        };
        let limits = BatchLimits::new(3).with_max_bytes(1000);
        let cases: Vec<Case> = vec![
            ("empty", vec![], limits, vec![]),
            (
                "one key: only its oldest event",
                vec![e(A, "u"), e(A, "u"), e(A, "u")],
                limits,
                vec![vec![0]],
            ),
            (
                "keys batch across, one each",
                vec![e(A, "u"), e(A, "v"), e(A, "u"), e(A, "w")],
                limits,
                vec![vec![0, 1, 3]],
            ),
            (
                "same key on two topics: two ordering keys",
                vec![e(A, "u"), e(B, "u"), e(A, "u")],
                limits,
                vec![vec![0], vec![1]],
            ),
            (
                "a waiting (failed) event holds back its key only",
                vec![waiting(e(A, "u")), e(A, "v"), e(A, "u"), e(A, "w")],
                limits,
                vec![vec![1, 3]],
            ),
            (
                "a placeholder holds back its key on every topic",
                vec![placeholder("u"), e(A, "u"), e(B, "u"), e(A, "v")],
                limits,
                vec![vec![3]],
            ),
            (
                "other groups (traces) go in other requests",
                vec![
                    e(A, "u"),
                    group(e(A, "v"), 1),
                    e(A, "w"),
                    group(e(A, "x"), 1),
                ],
                limits,
                vec![vec![0, 2], vec![1, 3]],
            ),
            (
                "entry cap",
                vec![e(A, "1"), e(A, "2"), e(A, "3"), e(A, "4")],
                limits,
                vec![vec![0, 1, 2], vec![3]],
            ),
            (
                "byte cap; a later small event may fill an earlier request",
                vec![big(e(A, "1")), big(e(A, "2")), e(A, "3")],
                limits,
                vec![vec![0, 2], vec![1]],
            ),
            (
                "an event that cannot travel in bulk is a request of its own",
                vec![e(A, "1"), alone(e(A, "2")), e(A, "3")],
                limits,
                vec![vec![0, 2], vec![1]],
            ),
            (
                "key-less events hold nothing back",
                vec![keyless(e(A, "-")), keyless(e(A, "-"))],
                limits,
                vec![vec![0, 1]],
            ),
            (
                "no batching: one event per request",
                vec![e(A, "u"), e(A, "v"), e(A, "u")],
                BatchLimits::new(1),
                vec![vec![0], vec![1]],
            ),
            (
                "lookahead: the first ready event is found however far, then a bounded look",
                vec![
                    waiting(e(A, "u")),
                    e(A, "u"),
                    e(A, "u"),
                    e(A, "v"),
                    e(A, "w"),
                    e(A, "x"),
                ],
                limits.with_lookahead(1),
                vec![vec![3, 4]],
            ),
            (
                "request cap",
                vec![e(A, "u"), e(B, "v"), group(e(A, "w"), 1)],
                limits.with_max_requests(1),
                vec![vec![0]],
            ),
            (
                "same key opt-in: consecutive events of one key share a request, in order",
                vec![e(A, "u"), e(A, "u"), e(A, "v"), e(A, "u")],
                limits
                    .with_max_entries_for_test(4)
                    .with_consecutive_same_key(true),
                vec![vec![0, 1, 2, 3]],
            ),
            (
                "same key opt-in: a full request holds the key's later events back",
                vec![e(A, "u"), e(A, "u"), e(A, "u"), e(A, "u"), e(A, "v")],
                limits.with_consecutive_same_key(true),
                vec![vec![0, 1, 2], vec![4]],
            ),
            (
                "same key opt-in: an event that cannot join its key's request holds the rest back",
                vec![
                    e(A, "u"),
                    group(e(A, "u"), 1),
                    e(A, "u"),
                    group(e(A, "v"), 1),
                ],
                limits.with_consecutive_same_key(true),
                vec![vec![0], vec![3]],
            ),
            (
                "same key opt-in: a waiting event still holds back its key",
                vec![waiting(e(A, "u")), e(A, "u"), e(A, "v"), e(A, "v")],
                limits.with_consecutive_same_key(true),
                vec![vec![2, 3]],
            ),
            (
                "same key opt-in: a placeholder still holds back its key",
                vec![e(A, "u"), placeholder("u"), e(A, "u")],
                limits.with_consecutive_same_key(true),
                vec![vec![0]],
            ),
            (
                "same key opt-in: not without batching",
                vec![e(A, "u"), e(A, "u")],
                BatchLimits::new(1).with_consecutive_same_key(true),
                vec![vec![0]],
            ),
        ];
        for (name, entries, limits, expected) in cases {
            assert_eq!(plan(entries, limits), expected, "{name}");
        }
    }

    #[test]
    fn classification_table() {
        let rejected = |code: u16, body: &[u8]| {
            PublishError::rejected(StatusCode::from_u16(code).unwrap(), body)
        };
        let cases = [
            (rejected(500, b""), FailureClass::Unavailable),
            (rejected(503, b""), FailureClass::Unavailable),
            (rejected(408, b""), FailureClass::Unavailable),
            (rejected(429, b""), FailureClass::Unavailable),
            (rejected(401, b""), FailureClass::Deployment),
            (rejected(403, b""), FailureClass::Deployment),
            (rejected(404, b""), FailureClass::Deployment),
            (
                rejected(400, br#"{"errorCode":"ERR_PUBSUB_NOT_CONFIGURED"}"#),
                FailureClass::Deployment,
            ),
            (
                rejected(400, br#"{"errorCode":"ERR_PUBSUB_FORBIDDEN"}"#),
                FailureClass::Deployment,
            ),
            (
                rejected(400, br#"{"errorCode":"ERR_TOPIC_NAME_EMPTY"}"#),
                FailureClass::Deployment,
            ),
            (rejected(400, b"bad event"), FailureClass::EventRejected),
            (
                rejected(400, br#"{"errorCode":"ERR_PUBSUB_CLOUD_EVENTS_SER"}"#),
                FailureClass::EventRejected,
            ),
            (rejected(413, b""), FailureClass::EventRejected),
            (rejected(302, b""), FailureClass::Deployment),
            (
                PublishError::Timeout {
                    timeout: Duration::from_secs(1),
                },
                FailureClass::Unavailable,
            ),
        ];
        for (err, class) in cases {
            assert_eq!(err.class(), class, "{err:?}");
            assert_eq!(err.is_retryable(), class == FailureClass::Unavailable);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_between_half_and_all() {
        let exact = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1), 5)
            .without_jitter();
        let steps: Vec<u64> = (1..=6).map(|n| exact.delay(n).as_millis() as u64).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(exact.delay(10_000), Duration::from_secs(1));

        let jittered = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1), 5);
        let draws: Vec<Duration> = (0..200).map(|_| jittered.delay(3)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400))
        );
        assert!(
            draws.iter().any(|d| *d != draws[0]),
            "jitter spreads the pauses"
        );
    }

    #[test]
    fn decisions_per_mode() {
        let outage = PublishError::rejected(StatusCode::FORBIDDEN, b"");
        let flaky = PublishError::rejected(StatusCode::SERVICE_UNAVAILABLE, b"");
        let bad = PublishError::rejected(StatusCode::BAD_REQUEST, b"");
        let memory = RetryPolicy::new(Duration::ZERO, Duration::ZERO, 3);
        assert_eq!(memory.decide(&flaky, 2), Decision::Retry(Duration::ZERO));
        assert_eq!(memory.decide(&flaky, 3), Decision::GiveUp);
        assert_eq!(memory.decide(&outage, 1), Decision::GiveUp);
        assert_eq!(memory.decide(&bad, 1), Decision::GiveUp);
        let durable = memory.with_mode(RetryMode::Durable);
        assert_eq!(
            durable.decide(&outage, 1000),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            durable.decide(&flaky, 1000),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(durable.decide(&bad, 2), Decision::Retry(Duration::ZERO));
        assert_eq!(durable.decide(&bad, 3), Decision::GiveUp);
    }
}
