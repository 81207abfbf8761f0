//! Sends one planned request (a single publish, or a bulk publish encoded through
//! [`BulkEntry`]) and settles each of its events with the retry policy; logs each outcome at the
//! level it deserves.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use slog::{Logger, debug, error, warn};
use tokio::time::Instant;

use crate::bulk::BulkEntry;
use crate::delivery::Decision;
use crate::dispatcher::Shared;
use crate::dispatcher::lane::{Pending, Waiting};
use crate::dispatcher::message::{BulkForm, Fields, Message, request_options};
use crate::error::{ErrorChain, PublishError};

fn pending(queue: &VecDeque<Waiting>, index: usize) -> &Pending {
    match &queue[index] {
        Waiting::Event(pending) => pending,
        Waiting::Reserved { .. } => unreachable!("the planner never plans a reservation"),
    }
}

fn pending_mut(queue: &mut VecDeque<Waiting>, index: usize) -> &mut Pending {
    match &mut queue[index] {
        Waiting::Event(pending) => pending,
        Waiting::Reserved { .. } => unreachable!("the planner never plans a reservation"),
    }
}

/// Sends the events at `request` (indices into `queue`, all of one destination and request
/// group, at most one per ordering key) and settles them: published and given-up events are
/// returned (ascending) for removal; failed ones that will be retried get their retry time.
pub(crate) async fn deliver(
    shared: &Shared,
    queue: &mut VecDeque<Waiting>,
    request: &[usize],
) -> Vec<usize> {
    let counters = &shared.counters;
    for &index in request {
        let pending = pending_mut(queue, index);
        if !pending.sent {
            pending.sent = true;
            counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            counters.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        pending.attempts += 1;
        pending.retry_at = None;
    }
    let started = Instant::now();
    let results = if let [index] = request {
        let message = &pending(queue, *index).message;
        let res = shared
            .client
            .send_publish_quietly(
                &message.pubsub,
                &message.topic,
                message.content_type.clone(),
                message.body.clone(),
                &message.options,
            )
            .await;
        vec![res.map_err(Arc::new)]
    } else {
        let messages: Vec<&Message> = request
            .iter()
            .map(|&index| &pending(queue, index).message)
            .collect();
        send_bulk(shared, &messages).await
    };
    let elapsed = started.elapsed();
    counters.latency.observe(elapsed);
    if request.len() > 1 {
        detect_overtaken(shared, queue, request, &results);
    }
    let bulk_entries = (request.len() > 1).then_some(request.len());
    let mut done = Vec::with_capacity(request.len());
    // One pause for the whole request: its retried events become ready together and can share
    // a request again.
    let mut shared_pause: Option<Duration> = None;
    for (&index, result) in request.iter().zip(results) {
        let pending = pending_mut(queue, index);
        let message = &pending.message;
        let attempts = pending.attempts;
        let outcome = Outcome {
            attempts,
            bulk_entries,
            elapsed,
        };
        match result {
            Ok(()) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
                // Built only when DEBUG is on: the hot path allocates nothing for its log line.
                debug!(shared.log, "published {} to {}", message.event_type, message.topic;
                    "event_type" => &message.event_type, "event_id" => &message.event_id,
                    "pubsub" => &message.pubsub, "topic" => &message.topic,
                    "partition_key" => message.options.partition_key().unwrap_or(""),
                    "attempt" => attempts, "bulk_entries" => bulk_entries,
                    "duration_ms" => elapsed.as_secs_f64() * 1000.0, Fields(&message.fields));
                done.push(index);
            }
            Err(err) => match shared.policy.decide(&err, pending.attempts) {
                Decision::Retry(pause) => {
                    let pause = *shared_pause.get_or_insert(pause);
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    log_failure(&shared.log, message, &err, outcome, Some(pause));
                    pending.retry_at = Some(Instant::now() + pause);
                    pending.last_error = Some(err);
                }
                Decision::GiveUp => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    log_failure(&shared.log, message, &err, outcome, None);
                    pending.last_error = Some(err);
                    done.push(index);
                }
            },
        }
    }
    done
}

/// The detector of broken order: in a bulk request (all of one destination), an entry that failed
/// while a later entry of its partition key was published has been overtaken; its retry will land
/// after it. Only possible when consecutive events of one key share a request (the opt-in
/// [`DispatcherConfig::with_same_key_batches`](crate::DispatcherConfig::with_same_key_batches)):
/// counted per overtaken event in [`MetricsSnapshot::overtaken`](crate::MetricsSnapshot::overtaken) and logged once per request
/// (WARN) with the event ids.
fn detect_overtaken(
    shared: &Shared,
    queue: &VecDeque<Waiting>,
    request: &[usize],
    results: &[Result<(), Arc<PublishError>>],
) {
    let messages: Vec<&Message> = request
        .iter()
        .map(|&index| &pending(queue, index).message)
        .collect();
    let overtaken = overtaken_entries(&messages, results);
    if overtaken.is_empty() {
        return;
    }
    shared
        .counters
        .overtaken
        .fetch_add(overtaken.len() as u64, Ordering::Relaxed);
    let ids = |indices: &[usize]| {
        indices
            .iter()
            .map(|&at| messages[at].event_id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (failed, later): (Vec<usize>, Vec<usize>) = overtaken.iter().copied().unzip();
    let mut later = later;
    later.sort_unstable();
    later.dedup();
    let first = messages[failed[0]];
    warn!(shared.log,
        "{} failed bulk entries were overtaken by later events of their partition key: their order is broken",
        failed.len();
        "topic" => &first.topic, "pubsub" => &first.pubsub,
        "partition_key" => first.options.partition_key().unwrap_or(""),
        "failed_event_ids" => ids(&failed), "published_after_event_ids" => ids(&later),
        "bulk_entries" => messages.len());
}

/// The overtaken entries of a bulk request: `(failed, first later published entry of its key)`.
pub(crate) fn overtaken_entries(
    messages: &[&Message],
    results: &[Result<(), Arc<PublishError>>],
) -> Vec<(usize, usize)> {
    let mut overtaken = Vec::new();
    for (at, message) in messages.iter().enumerate() {
        let Some(key) = message.options.partition_key() else {
            continue;
        };
        if results[at].is_ok() {
            continue;
        }
        let later = (at + 1..messages.len()).find(|&next| {
            results[next].is_ok()
                && messages[next].options.partition_key() == Some(key)
                && messages[next].topic == message.topic
                && messages[next].pubsub == message.pubsub
        });
        if let Some(later) = later {
            overtaken.push((at, later));
        }
    }
    overtaken
}

/// One bulk request for `messages`; one result per message, in order. A failure of the whole
/// request is shared by all of them.
async fn send_bulk(shared: &Shared, messages: &[&Message]) -> Vec<Result<(), Arc<PublishError>>> {
    let counters = &shared.counters;
    let entry_ids = entry_ids(messages);
    let entries: Result<Vec<BulkEntry>, PublishError> = messages
        .iter()
        .zip(&entry_ids)
        .map(|(message, entry_id)| bulk_entry(message, entry_id))
        .collect();
    let first = messages[0];
    let outcome = match entries {
        Ok(entries) => {
            counters.bulk_requests.fetch_add(1, Ordering::Relaxed);
            counters
                .bulk_entries
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            shared
                .client
                .send_bulk_quietly(
                    &first.pubsub,
                    &first.topic,
                    &entries,
                    &request_options(messages),
                )
                .await
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(outcome) => {
            // Dapr lists failed entries with a 500; any other status still means "failed".
            let status = if outcome.status().is_success() {
                http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                outcome.status()
            };
            entry_ids
                .iter()
                .map(|entry_id| match outcome.error_for(entry_id) {
                    None => Ok(()),
                    Some(reason) => Err(Arc::new(PublishError::entry_failed(
                        status,
                        outcome.error_code(),
                        reason,
                    ))),
                })
                .collect()
        }
        Err(err) => {
            let err = Arc::new(err);
            messages.iter().map(|_| Err(Arc::clone(&err))).collect()
        }
    }
}

/// The entry of `message` in a bulk request: the very bytes a single publish would send (JSON
/// as is, text as a JSON string), its partition key as entry metadata.
fn bulk_entry(message: &Message, entry_id: &str) -> Result<BulkEntry, PublishError> {
    let content_type = message.content_type.to_str().unwrap_or_default();
    let entry = match message.bulk {
        BulkForm::Text => BulkEntry::text(
            entry_id,
            content_type,
            std::str::from_utf8(&message.body).unwrap_or_default(),
        )?,
        BulkForm::Json | BulkForm::Alone => BulkEntry::raw_json(
            entry_id,
            content_type,
            String::from_utf8_lossy(&message.body).into_owned(),
        )?,
    };
    Ok(message
        .options
        .metadata()
        .filter(|(key, _)| message.is_entry_metadata(key))
        .fold(entry, |entry, (key, value)| entry.with_metadata(key, value)))
}

/// Unique, non-empty entry ids: the event ids, unless empty or already used.
fn entry_ids(messages: &[&Message]) -> Vec<String> {
    let mut used = HashSet::with_capacity(messages.len());
    let mut ids = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let mut entry_id = message.event_id.clone();
        let mut n = index;
        while entry_id.is_empty() || used.contains(&entry_id) {
            entry_id = format!("entry-{n}");
            n += 1;
        }
        used.insert(entry_id.clone());
        ids.push(entry_id);
    }
    ids
}

/// What a failure line says about the attempt.
#[derive(Clone, Copy)]
struct Outcome {
    attempts: u32,
    bulk_entries: Option<usize>,
    elapsed: Duration,
}

/// A failed attempt: ERROR when the sidecar answered with an error (someone must act), WARN
/// when it was absent or slow (degraded but handled). A retry names the attempt that failed
/// (`attempt`); giving up, the attempts made (`attempts`).
fn log_failure(
    log: &Logger,
    message: &Message,
    err: &PublishError,
    outcome: Outcome,
    retry_in: Option<Duration>,
) {
    let (attempt_key, what) = match retry_in {
        Some(pause) => (
            "attempt",
            format!(
                "publish of {} to {} failed; retrying in {:?}",
                message.event_type, message.topic, pause
            ),
        ),
        None => (
            "attempts",
            format!(
                "gave up publishing {} to {}",
                message.event_type, message.topic
            ),
        ),
    };
    macro_rules! failure_line {
        ($level:ident) => {
            $level!(log, "{}", what;
                "event_type" => &message.event_type, "event_id" => &message.event_id,
                "pubsub" => &message.pubsub, "topic" => &message.topic,
                "partition_key" => message.options.partition_key().unwrap_or(""),
                attempt_key => outcome.attempts, "bulk_entries" => outcome.bulk_entries,
                "duration_ms" => outcome.elapsed.as_secs_f64() * 1000.0,
                "status" => err.status().map(|status| status.as_u16()),
                "body" => err.body().unwrap_or(""),
                "error" => %ErrorChain(err),
                Fields(&message.fields))
        };
    }
    if err.status().is_some() {
        failure_line!(error);
    } else {
        failure_line!(warn);
    }
}
