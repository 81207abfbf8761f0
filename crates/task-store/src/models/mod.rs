//! The records the store takes and returns: users and outbox messages. Types only; the queries that read and
//! write them are in `store`, the diesel rows they are loaded from in `rows`.

mod outbox;
mod users;

#[cfg(feature = "test-util")]
pub use outbox::OutboxCounts;
pub(crate) use outbox::truncate_error;
pub use outbox::{
    Delivered, FailureOutcome, NewOutboxMessage, OutboxBacklog, OutboxClaim, OutboxFilter,
    OutboxMessage, OutboxStatus, Settled,
};
pub use users::{NewUser, User};
