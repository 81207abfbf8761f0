//! User records: what the auth routes store and read.

use task_domain::{Email, UserId};
use time::OffsetDateTime;

/// A registered user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id (the JWT `sub`).
    pub id: UserId,
    /// The normalized (trimmed, lowercased) address, unique.
    pub email: Email,
    /// The password hash in PHC or bcrypt modular-crypt format.
    pub password_hash: String,
    /// When the user registered (UTC, microseconds).
    pub created_at: OffsetDateTime,
    /// When the record last changed (UTC, microseconds).
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for User {
    /// Leaves the password hash out, so a logged user never leaks it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A user to register.
#[derive(Clone)]
pub struct NewUser {
    /// The id to give the user, usually `UserId::new_v4()`.
    pub id: UserId,
    /// The normalized address; a taken one fails with `StoreError::UniqueViolation`.
    pub email: Email,
    /// The password hash, already computed.
    pub password_hash: String,
    /// Registration time, stored as both `created_at` and `updated_at` (normalized to UTC, microseconds).
    pub now: OffsetDateTime,
}

impl std::fmt::Debug for NewUser {
    /// Leaves the password hash out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}
