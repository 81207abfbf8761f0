//! Outbox messages: events stored with the change they describe, for the relay to publish (at-least-once).

use time::OffsetDateTime;
use uuid::Uuid;

/// An event to store in the outbox, inside the transaction of the change it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    /// The CloudEvent id (the primary key: the same id on every delivery attempt).
    pub id: Uuid,
    /// The topic to publish to.
    pub topic: String,
    /// The partition key (the user id), sent as Dapr `metadata.partitionKey`.
    pub partition_key: String,
    /// The structured CloudEvent JSON, sent as is.
    pub payload: String,
    /// The W3C `traceparent` of the request that caused the event, forwarded to the sidecar on publish.
    pub traceparent: Option<String>,
}

/// A stored outbox row, as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The CloudEvent id.
    pub id: Uuid,
    /// Insertion order; rows of one partition key are claimed in this order.
    pub seq: i64,
    /// The topic to publish to.
    pub topic: String,
    /// The partition key.
    pub partition_key: String,
    /// The structured CloudEvent JSON.
    pub payload: String,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not claimable before this instant.
    pub next_attempt_at: OffsetDateTime,
    /// The lease of the relay that claimed it, if any.
    pub claimed_until: Option<OffsetDateTime>,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
    /// When it was moved aside after too many attempts (then it is never claimed again).
    pub failed_at: Option<OffsetDateTime>,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// The W3C `traceparent` to forward on publish, if the request had one.
    pub traceparent: Option<String>,
    /// The fencing token of the last claim that handed the row out, if any (see [`OutboxClaim::lease`]).
    pub lease_id: Option<Uuid>,
}

/// What [`crate::Store::claim_outbox`] handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxClaim {
    /// This claim's fencing token, written on every row it handed out: pass it to
    /// [`crate::Store::mark_outbox_delivered`] and [`crate::Store::record_outbox_failure`] (and, with the
    /// `test-util` feature, `release_outbox`), which only touch rows that still carry it.
    pub lease: Uuid,
    /// When the lease ends: after it, another relay may claim the same rows (and replace the token).
    pub lease_until: OffsetDateTime,
    /// The claimed rows in insertion order (`seq`): for each partition key that is free, its oldest pending
    /// rows. They are the caller's until their `claimed_until`.
    pub messages: Vec<OutboxMessage>,
    /// Set when some partition key has pending rows but waits for a retry or is leased by another relay: the
    /// earliest instant one of those keys frees up. Until then, only rows of other keys can be claimed, so a
    /// relay that claimed nothing need not look again before it unless new rows arrive.
    pub blocked_until: Option<OffsetDateTime>,
}

/// What [`crate::Store::record_outbox_failure`] did with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// It will be claimable again at `next_attempt_at`.
    Retry {
        /// Failed attempts so far, this one included.
        attempts: u32,
    },
    /// It reached the attempt limit and was moved aside (`failed_at` set); it is kept for inspection.
    MovedAside {
        /// Failed attempts, this one included.
        attempts: u32,
    },
    /// Nothing was recorded: the row no longer carries the caller's lease (another relay claimed it after the
    /// lease expired) or is gone.
    Fenced,
}

/// What a fenced settle ([`crate::Store::mark_outbox_delivered`], or `release_outbox` with `test-util`) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Rows changed: they still carried the caller's lease.
    pub settled: usize,
    /// Rows left alone: another claim holds them now, or they are gone.
    pub fenced: usize,
}

/// Rows an earlier claim delivered, for [`crate::Store::settle_and_claim_outbox`] to delete (fenced like
/// [`crate::Store::mark_outbox_delivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The fencing token of the claim that handed them out ([`OutboxClaim::lease`]).
    pub lease: Uuid,
    /// Their ids.
    pub ids: &'a [Uuid],
}

/// Which outbox rows [`crate::Store::list_outbox`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFilter {
    /// Rows still to deliver (claimed or not).
    Pending,
    /// Rows moved aside after too many rejections.
    MovedAside,
}

/// The backlog figures `/metrics` exports ([`crate::Store::outbox_backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Rows still to deliver (claimed or not).
    pub pending: u64,
    /// When the oldest pending row was written, if there is one.
    pub oldest_pending_at: Option<OffsetDateTime>,
}

/// What `task-api outbox status` shows ([`crate::Store::outbox_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Rows still to deliver, and the oldest one's age.
    pub backlog: OutboxBacklog,
    /// Partition keys held back now: waiting for a retry or leased by a relay.
    pub blocked_keys: u64,
    /// Rows moved aside after too many rejections (see `task-api outbox replay`).
    pub moved_aside: u64,
}

/// Outbox row counts, for tests (`Store::outbox_counts`, `test-util` feature).
#[cfg(feature = "test-util")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Rows still to deliver (claimed or not).
    pub pending: u64,
    /// Rows moved aside after too many attempts.
    pub failed: u64,
}

/// The longest `last_error` kept, in characters.
pub(crate) const MAX_ERROR_CHARS: usize = 2000;

/// `error` cut to [`MAX_ERROR_CHARS`] characters.
pub(crate) fn truncate_error(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}
