//! Instants as the database keeps them (UTC, microsecond precision) and `DueDate`.

use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

/// `instant` in UTC, truncated to whole microseconds.
///
/// PostgreSQL's `TIMESTAMPTZ` keeps microseconds. Normalizing before comparing or storing makes a value read back
/// from the database equal to the value written, so "did the due date change?" has one answer.
///
/// An instant whose UTC date falls outside what [`OffsetDateTime`] represents (past year 9999, reachable only from
/// a local time with an offset) keeps its offset instead of panicking; [`DueDate::try_new`] refuses those.
pub fn normalize(instant: OffsetDateTime) -> OffsetDateTime {
    let utc = instant.checked_to_offset(UtcOffset::UTC).unwrap_or(instant);
    let micros = utc.nanosecond() / 1_000 * 1_000;
    // A nanosecond value rounded down stays in range, so this never falls back.
    utc.replace_nanosecond(micros).unwrap_or(utc)
}

/// Why an instant is not a due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DueDateError {
    /// Outside [`DueDate::MIN`]..=[`DueDate::MAX`] once converted to UTC.
    #[error("due date must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z")]
    OutOfRange,
}

/// When a task is due; reminders are scheduled for it. Kept in UTC at microsecond precision (see [`normalize`]).
///
/// The range is [`DueDate::MIN`]..=[`DueDate::MAX`] in UTC: every value can be written as RFC 3339 (four-digit
/// years), read by every consumer that counts from the Unix epoch, and converted without overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DueDate(OffsetDateTime);

impl DueDate {
    /// The earliest due date: the Unix epoch.
    pub const MIN: OffsetDateTime = datetime!(1970-01-01 00:00:00 UTC);
    /// The latest due date: the last microsecond of year 9999 (UTC).
    pub const MAX: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999 UTC);

    /// `instant` as a due date, when it lies in [`DueDate::MIN`]..=[`DueDate::MAX`] after conversion to UTC (past
    /// instants within the range are accepted, as the original service did). Use this for any input.
    ///
    /// # Errors
    /// [`DueDateError::OutOfRange`] outside the range, including a local time whose UTC value would be past
    /// year 9999 (`9999-12-31T23:30:00-01:00`).
    pub fn try_new(instant: OffsetDateTime) -> Result<Self, DueDateError> {
        let utc = instant
            .checked_to_offset(UtcOffset::UTC)
            .ok_or(DueDateError::OutOfRange)?;
        let utc = normalize(utc);
        if (Self::MIN..=Self::MAX).contains(&utc) {
            Ok(Self(utc))
        } else {
            Err(DueDateError::OutOfRange)
        }
    }

    /// `instant` as a due date, clamped into [`DueDate::MIN`]..=[`DueDate::MAX`]; for values already checked (read
    /// back from the database). Never panics. Input from clients goes through [`DueDate::try_new`].
    pub fn new(instant: OffsetDateTime) -> Self {
        Self::try_new(instant).unwrap_or_else(|_| {
            if instant < Self::MIN {
                Self(Self::MIN)
            } else {
                Self(Self::MAX)
            }
        })
    }

    /// The instant (UTC).
    pub const fn instant(&self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for DueDate {
    fn from(instant: OffsetDateTime) -> Self {
        Self::new(instant)
    }
}

impl From<DueDate> for OffsetDateTime {
    fn from(due: DueDate) -> Self {
        due.0
    }
}
