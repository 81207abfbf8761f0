//! The values of the CloudEvents `sequence` extension, taken inside a mutation's transaction.

use time::OffsetDateTime;

/// Bits of a sequence value that number the events of one transaction.
const INDEX_BITS: u32 = 20;

/// What a mutation's closure learns from its transaction once the rows it changes are locked: the instant of the
/// change and the transaction's place in the event sequence. Both are taken after the lock, so for one task they
/// follow the commit order: a later change of the same task waits for the lock, and so gets a later `now` (unless
/// the clock steps back) and a larger `sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// The instant of the change (microsecond precision, as stored).
    pub now: OffsetDateTime,
    /// The transaction's block of sequence values.
    pub sequence: EventSequence,
}

/// One transaction's block of event sequence values: the `n`-th event of the transaction gets
/// [`EventSequence::nth`]`(n)`. A database sequence (PostgreSQL) or counter row (SQLite) hands out one number per
/// transaction; the value of an event is that number shifted left by 20 bits plus the event's index, so values of
/// a later transaction are larger than all values of an earlier one, and a transaction can number 2²⁰ events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventSequence(u64);

/// The transaction wrote more events than a block can number (2²⁰).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a transaction can number at most {} events, this one has more", 1u64 << INDEX_BITS)]
pub struct SequenceExhausted;

impl EventSequence {
    /// The block of transaction number `transaction` (the value the database handed out).
    pub fn from_transaction(transaction: u64) -> Self {
        Self(transaction)
    }

    /// The transaction number.
    pub fn transaction(self) -> u64 {
        self.0
    }

    /// The sequence value of the transaction's `index`-th event (0-based).
    pub fn nth(self, index: usize) -> Result<u64, SequenceExhausted> {
        let index = u64::try_from(index).map_err(|_| SequenceExhausted)?;
        if index >= 1 << INDEX_BITS {
            return Err(SequenceExhausted);
        }
        Ok((self.0 << INDEX_BITS) | index)
    }

    /// [`EventSequence::nth`] as the extension's text: 20 decimal digits, zero-padded, so that the lexicographic
    /// order of the texts (what the CloudEvents Sequence extension compares) is the numeric order.
    pub fn nth_text(self, index: usize) -> Result<String, SequenceExhausted> {
        self.nth(index).map(format_sequence)
    }
}

/// A sequence value as the extension's text: `u64` zero-padded to its 20 digits.
pub fn format_sequence(value: u64) -> String {
    format!("{value:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_a_later_transaction_sort_after_every_value_of_an_earlier_one() {
        let earlier = EventSequence::from_transaction(41);
        let later = EventSequence::from_transaction(42);
        let last_of_earlier = earlier.nth_text((1 << INDEX_BITS) - 1).unwrap();
        let first_of_later = later.nth_text(0).unwrap();
        assert!(last_of_earlier < first_of_later);
        assert!(earlier.nth(3).unwrap() < later.nth(0).unwrap());
    }

    #[test]
    fn texts_are_twenty_digits_and_sort_like_the_numbers() {
        let small = EventSequence::from_transaction(1).nth_text(0).unwrap();
        let large = EventSequence::from_transaction(10_000_000)
            .nth_text(7)
            .unwrap();
        assert_eq!(small, "00000000000001048576");
        assert_eq!(small.len(), 20);
        assert_eq!(large.len(), 20);
        assert!(small < large);
        assert_eq!(format_sequence(u64::MAX).len(), 20);
    }

    #[test]
    fn a_block_numbers_two_to_the_twenty_events() {
        let block = EventSequence::from_transaction(5);
        assert!(block.nth((1 << INDEX_BITS) - 1).is_ok());
        assert_eq!(block.nth(1 << INDEX_BITS), Err(SequenceExhausted));
    }
}
