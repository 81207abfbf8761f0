//! One ordered lane: the events (and reservations) routed to it wait in arrival order; the lane
//! asks the planner for its next request, sends it, and settles each event (published, retry
//! later, given up). An event waiting for its retry holds back only the later events of its
//! ordering key; the other keys keep flowing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::delivery::{BatchLimits, Destination, PlanEntry, plan};
use crate::dispatcher::message::{BulkForm, Command, Message};
use crate::dispatcher::report::UndeliveredEvent;
use crate::dispatcher::send::deliver;
use crate::dispatcher::{DispatcherConfig, Shared};
use crate::error::PublishError;

/// A place in a lane's line.
pub(crate) enum Waiting {
    /// An event, sent or not yet.
    Event(Box<Pending>),
    /// A reservation not filled yet: holds back its partition key.
    Reserved { id: u64, partition_key: String },
}

/// An event and its delivery so far.
pub(crate) struct Pending {
    pub(crate) message: Message,
    pub(crate) attempts: u32,
    /// Set after a failed attempt: not sent again before.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) last_error: Option<Arc<PublishError>>,
    /// Whether it left the queue for its first attempt (then it counts as in flight).
    pub(crate) sent: bool,
}

impl Pending {
    fn new(message: Message) -> Self {
        Self {
            message,
            attempts: 0,
            retry_at: None,
            last_error: None,
            sent: false,
        }
    }
}

/// Resolves when shutdown asks the lanes to stop (or the dispatcher is gone).
async fn cancelled(cancel: &mut Option<oneshot::Receiver<()>>) {
    if let Some(stop) = cancel {
        if stop.await.is_ok() {
            return;
        }
        // The dispatcher was dropped without a shutdown: keep draining, never cancel.
        *cancel = None;
    }
    std::future::pending::<()>().await;
}

pub(crate) async fn run_lane(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut cancel: Option<oneshot::Receiver<()>>,
) {
    let config = &shared.config;
    let mut queue: VecDeque<Waiting> = VecDeque::new();
    let mut open = true;
    loop {
        if open {
            open = drain(&shared, &mut queue, &mut commands);
        }
        let mut request = next_request(&queue, config);
        if request.is_empty() {
            let wake_at = queue
                .iter()
                .filter_map(|waiting| match waiting {
                    Waiting::Event(pending) => pending.retry_at,
                    Waiting::Reserved { .. } => None,
                })
                .min();
            if !open && wake_at.is_none() {
                // Closed and drained (a reservation keeps its lane's channel open).
                break;
            }
            tokio::select! {
                biased;
                _ = cancelled(&mut cancel) => return hand_back(&shared, queue, commands),
                command = commands.recv(), if open => match command {
                    Some(command) => apply(&shared, &mut queue, command),
                    None => open = false,
                },
                _ = sleep_until(wake_at) => {}
            }
            continue;
        }
        let linger = config.linger;
        if open
            && !linger.is_zero()
            && request.len() < config.max_batch
            && queue.len() == request.len()
        {
            // Nothing else waits on this lane, so waiting delays no other event. Wait once,
            // without listening to the queue: arriving events then cost no wake-up each;
            // whatever arrived is looked at after the wait.
            tokio::select! {
                biased;
                _ = cancelled(&mut cancel) => return hand_back(&shared, queue, commands),
                _ = tokio::time::sleep(linger) => {}
            }
            open = drain(&shared, &mut queue, &mut commands);
            request = next_request(&queue, config);
        }
        let done = tokio::select! {
            biased;
            done = deliver(&shared, &mut queue, &request) => done,
            _ = cancelled(&mut cancel) => return hand_back(&shared, queue, commands),
        };
        // Indices ascend: remove from the back so that the others stay valid.
        for index in done.into_iter().rev() {
            queue.remove(index);
            shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The indices of the next request: the planner's first, over the line (lazily: the planner
/// stops once the request cannot change any more, or `4 × max_batch` events past its first).
fn next_request(queue: &VecDeque<Waiting>, config: &DispatcherConfig) -> Vec<usize> {
    let max_batch = config.max_batch;
    let now = Instant::now();
    let entries = queue.iter().map(|waiting| match waiting {
        Waiting::Event(pending) => {
            let message = &pending.message;
            PlanEntry {
                destination: Some(Destination {
                    pubsub: &message.pubsub,
                    topic: &message.topic,
                }),
                partition_key: message.options.partition_key(),
                size: message.body.len() + message.event_id.len() + 128,
                ready: pending.retry_at.is_none_or(|at| at <= now),
                bulk: message.bulk != BulkForm::Alone,
                group: Some(message.group()),
            }
        }
        Waiting::Reserved { partition_key, .. } => PlanEntry {
            destination: None,
            partition_key: Some(partition_key),
            size: 0,
            ready: false,
            bulk: false,
            group: None,
        },
    });
    let limits = BatchLimits::new(max_batch)
        .with_max_requests(1)
        .with_lookahead(max_batch.saturating_mul(4))
        .with_consecutive_same_key(config.same_key_batches);
    plan(entries, limits).into_iter().next().unwrap_or_default()
}

/// Moves what the channel holds into the line; returns whether the channel is still open.
fn drain(
    shared: &Shared,
    queue: &mut VecDeque<Waiting>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> bool {
    loop {
        match commands.try_recv() {
            Ok(command) => apply(shared, queue, command),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

fn apply(shared: &Shared, queue: &mut VecDeque<Waiting>, command: Command) {
    match command {
        Command::Event(message) => {
            queue.push_back(Waiting::Event(Box::new(Pending::new(*message))))
        }
        Command::Reserve { id, partition_key } => {
            queue.push_back(Waiting::Reserved { id, partition_key })
        }
        Command::Fill { id, messages } => {
            // The reservation's own slot counted as one queued event; its events are counted now.
            shared.counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            let at = position(queue, id).unwrap_or(queue.len());
            if at < queue.len() {
                queue.remove(at);
            }
            for (offset, message) in messages.into_iter().enumerate() {
                queue.insert(at + offset, Waiting::Event(Box::new(Pending::new(message))));
            }
        }
        Command::Cancel { id } => {
            shared.counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            if let Some(at) = position(queue, id) {
                queue.remove(at);
            }
        }
    }
}

fn position(queue: &VecDeque<Waiting>, id: u64) -> Option<usize> {
    queue
        .iter()
        .position(|waiting| matches!(waiting, Waiting::Reserved { id: slot, .. } if *slot == id))
}

/// Cancelled by shutdown: hands back everything in line or in flight, and what the channel
/// still holds, as undelivered.
fn hand_back(
    shared: &Shared,
    queue: VecDeque<Waiting>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let counters = &shared.counters;
    commands.close();
    // What was in flight first (it left the queue earliest), then what waited.
    let mut in_flight: Vec<UndeliveredEvent> = Vec::new();
    let mut waited: Vec<UndeliveredEvent> = Vec::new();
    let mut unsent = |message: Message| {
        counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
        waited.push(message.into_undelivered(0, None));
    };
    for waiting in queue {
        match waiting {
            Waiting::Event(pending) if pending.sent => {
                counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                let pending = *pending;
                in_flight.push(
                    pending
                        .message
                        .into_undelivered(pending.attempts, pending.last_error),
                );
            }
            Waiting::Event(pending) => unsent(pending.message),
            Waiting::Reserved { .. } => {
                counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    while let Ok(command) = commands.try_recv() {
        match command {
            Command::Event(message) => unsent(*message),
            // The reservation's slot is released with its `Reserve` (in the line or below).
            Command::Fill { messages, .. } => messages.into_iter().for_each(&mut unsent),
            Command::Reserve { .. } => {
                counters.queue_depth.fetch_sub(1, Ordering::AcqRel);
            }
            Command::Cancel { .. } => {}
        }
    }
    in_flight.append(&mut waited);
    let left = in_flight;
    shared
        .undelivered
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(left);
}
