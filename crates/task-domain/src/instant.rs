//! Instants as the database keeps them (UTC, microsecond precision) and `DueDate`.

use time::{OffsetDateTime, UtcOffset};

/// `instant` in UTC, truncated to whole microseconds.
///
/// PostgreSQL's `TIMESTAMPTZ` keeps microseconds. Normalizing before comparing or storing makes a value read back
/// from the database equal to the value written, so "did the due date change?" has one answer.
pub fn normalize(instant: OffsetDateTime) -> OffsetDateTime {
    let utc = instant.to_offset(UtcOffset::UTC);
    let micros = utc.nanosecond() / 1_000 * 1_000;
    utc.replace_nanosecond(micros)
        .expect("a nanosecond value rounded down stays in range")
}

/// When a task is due; reminders are scheduled for it. Kept in UTC at microsecond precision (see [`normalize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DueDate(OffsetDateTime);

impl DueDate {
    /// Any instant is a valid due date, past ones included (the original service does not restrict it).
    pub fn new(instant: OffsetDateTime) -> Self {
        Self(normalize(instant))
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
