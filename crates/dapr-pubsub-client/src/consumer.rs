//! The consumer's half of at-least-once delivery: drop the duplicates ([`SeenIds`]) and the stale events
//! ([`LatestSequence`]) that redeliveries and reordering bring, so that a subscriber ends in the right state
//! whatever order the transport delivers in.
//!
//! A Dapr subscriber sees each event at least once: a publisher retries an event whose acknowledgement it missed
//! (with the same `id`), Dapr redelivers on `RETRY` or a timeout, and Kafka redelivers after a rebalance. Events of
//! one partition key arrive in publish order, but a publisher that does not order its retries, or a consumer that
//! reads several partitions, can also see an older event after a newer one. Two checks cover both:
//!
//! - [`SeenIds`]: was this event `id` processed already? Bounded: it remembers the last `capacity` ids.
//! - [`LatestSequence`]: is this event newer than the last one applied for its `subject`? It compares the
//!   CloudEvents `sequence` extension (cloudevents/spec `extensions/sequence.md`), which publishers such as
//!   pakaura's task service fill with a zero-padded value that grows in commit order per subject, so that the
//!   lexicographic order of the texts is the order of the changes.
//!
//! [`ConsumerGuard`] combines them for the usual case: "apply this event unless it is a duplicate or stale".
//!
//! ```
//! use cloudevents_model::CloudEvent;
//! use dapr_pubsub_client::consumer::{Admission, ConsumerGuard};
//!
//! fn event(id: &str, sequence: &str) -> CloudEvent {
//!     CloudEvent::builder(id, "pakaura/api", "task.updated")
//!         .subject("task-1")
//!         .extension("sequence", sequence)
//!         .build()
//!         .unwrap()
//! }
//!
//! let mut guard = ConsumerGuard::new(10_000);
//! let newer = event("b", "00000000000000000002");
//! let older = event("a", "00000000000000000001");
//! assert_eq!(guard.admit(&newer), Admission::Apply);
//! assert_eq!(guard.admit(&older), Admission::Stale); // arrived late: its change is already superseded
//! assert_eq!(guard.admit(&newer), Admission::Duplicate); // redelivered
//! ```
//!
//! Both are in memory and bounded, so they forget: after a restart, or once more than `capacity` other ids or
//! subjects came by. A consumer that must never apply a stale change keeps the last applied sequence next to the
//! state it changes, in its own database, and updates with a condition (`... WHERE last_sequence < $sequence`);
//! these types are the in-process version of that rule.

use std::collections::{HashMap, HashSet, VecDeque};

use cloudevents_model::{CloudEvent, ExtensionValue};

/// The CloudEvents Sequence extension's attribute name.
pub use cloudevents_model::SEQUENCE_EXTENSION;

/// The event ids processed most recently, at most `capacity` of them (the oldest is forgotten first).
#[derive(Debug, Clone)]
pub struct SeenIds {
    capacity: usize,
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Remembers up to `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            ids: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Records `id` and says whether it is new (`true`) or was seen already (`false`).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Forgets `id`, so that a redelivery processes it again (for an event whose processing failed after
    /// [`SeenIds::first_time`] recorded it).
    pub fn forget(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|kept| kept != id);
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How an event's `sequence` compares with the last one applied for its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Newer than anything applied for the subject (or the subject is unknown): apply it.
    Newer,
    /// The same sequence as the last applied one: a redelivery of that event.
    Same,
    /// Older than the last applied one: the change it describes is superseded; skip it.
    Stale,
}

/// The last applied `sequence` per subject, for at most `capacity` subjects (the least recently updated is
/// forgotten first). Sequences compare lexicographically, as the CloudEvents Sequence extension defines.
#[derive(Debug, Clone)]
pub struct LatestSequence {
    capacity: usize,
    latest: HashMap<String, (String, u64)>,
    order: VecDeque<(String, u64)>,
    clock: u64,
}

impl LatestSequence {
    /// Tracks up to `capacity` subjects (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            latest: HashMap::new(),
            order: VecDeque::new(),
            clock: 0,
        }
    }

    /// Compares `sequence` with the last one applied for `subject` without recording anything.
    pub fn check(&self, subject: &str, sequence: &str) -> Freshness {
        match self.latest.get(subject) {
            None => Freshness::Newer,
            Some((last, _)) => match sequence.cmp(last.as_str()) {
                std::cmp::Ordering::Greater => Freshness::Newer,
                std::cmp::Ordering::Equal => Freshness::Same,
                std::cmp::Ordering::Less => Freshness::Stale,
            },
        }
    }

    /// Compares like [`LatestSequence::check`] and, when `sequence` is newer, records it as the subject's last.
    pub fn observe(&mut self, subject: &str, sequence: &str) -> Freshness {
        let freshness = self.check(subject, sequence);
        if freshness == Freshness::Newer {
            self.record(subject, sequence);
        }
        freshness
    }

    fn record(&mut self, subject: &str, sequence: &str) {
        self.clock += 1;
        let stamp = self.clock;
        self.latest
            .insert(subject.to_owned(), (sequence.to_owned(), stamp));
        self.order.push_back((subject.to_owned(), stamp));
        // Entries in `order` whose stamp is no longer the subject's current one are stale markers: skip them
        // while evicting, and compact when they outnumber the live ones.
        while self.latest.len() > self.capacity {
            let Some((oldest, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.latest.get(&oldest).is_some_and(|(_, at)| *at == stamp) {
                self.latest.remove(&oldest);
            }
        }
        if self.order.len() > 2 * self.capacity {
            let latest = &self.latest;
            self.order
                .retain(|(subject, stamp)| latest.get(subject).is_some_and(|(_, at)| at == stamp));
        }
    }

    /// How many subjects are tracked.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// What to do with a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// New and current: apply it.
    Apply,
    /// Its id was processed already: acknowledge it without applying it again.
    Duplicate,
    /// A newer event of its subject was applied already: acknowledge it without applying it.
    Stale,
}

impl Admission {
    /// Whether the event should be applied.
    pub fn should_apply(self) -> bool {
        self == Self::Apply
    }
}

/// [`SeenIds`] and [`LatestSequence`] together: [`ConsumerGuard::admit`] says whether to apply an event.
///
/// Use one guard per topic (subscription) whose events change one piece of state: the transport orders events
/// only within a topic, so an event of another topic with a larger `sequence` (a `sync.task` delivered before its
/// `task.updated`, say) must not make this topic's event look stale. An event without a `subject` or a string
/// `sequence` is only checked for duplicates.
#[derive(Debug, Clone)]
pub struct ConsumerGuard {
    seen: SeenIds,
    latest: LatestSequence,
}

impl ConsumerGuard {
    /// Remembers up to `capacity` event ids and `capacity` subjects.
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: SeenIds::new(capacity),
            latest: LatestSequence::new(capacity),
        }
    }

    /// Decides about `event` and records it: a new id is remembered even when the event is stale (acknowledging
    /// it again is right), and a current one becomes its subject's last.
    pub fn admit<D>(&mut self, event: &CloudEvent<D>) -> Admission {
        self.admit_parts(event.id(), event.subject(), sequence_of(event))
    }

    /// [`ConsumerGuard::admit`] for an event read as parts: its `id`, `subject` and `sequence` extension.
    pub fn admit_parts(
        &mut self,
        id: &str,
        subject: Option<&str>,
        sequence: Option<&str>,
    ) -> Admission {
        if !self.seen.first_time(id) {
            return Admission::Duplicate;
        }
        match (subject, sequence) {
            (Some(subject), Some(sequence)) => match self.latest.observe(subject, sequence) {
                // `Same` with an id not seen: the redelivery of an event whose id was forgotten (after a failed
                // processing, or evicted); it is still the subject's current change.
                Freshness::Newer | Freshness::Same => Admission::Apply,
                Freshness::Stale => Admission::Stale,
            },
            _ => Admission::Apply,
        }
    }

    /// Undoes the record of an admitted event whose processing failed, so that its redelivery is admitted
    /// again. Only the id is forgotten: its sequence stays recorded, and a redelivery compares as
    /// [`Freshness::Same`], which is admitted.
    pub fn forget(&mut self, id: &str) {
        self.seen.forget(id);
    }

    /// The seen ids.
    pub fn seen(&self) -> &SeenIds {
        &self.seen
    }

    /// The last sequences per subject.
    pub fn latest(&self) -> &LatestSequence {
        &self.latest
    }
}

/// The `sequence` extension of `event`, when it is a string.
pub fn sequence_of<D>(event: &CloudEvent<D>) -> Option<&str> {
    match event.extension(SEQUENCE_EXTENSION)? {
        ExtensionValue::String(text) => Some(text.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_bounded_and_forget_the_oldest_first() {
        let mut seen = SeenIds::new(2);
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(seen.first_time("c"));
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains("a"), "the oldest id is forgotten");
        assert!(!seen.first_time("c"));
        seen.forget("c");
        assert!(seen.first_time("c"));
    }

    #[test]
    fn latest_sequence_orders_per_subject_lexicographically() {
        let mut latest = LatestSequence::new(10);
        assert_eq!(latest.observe("t1", "0002"), Freshness::Newer);
        assert_eq!(latest.observe("t1", "0001"), Freshness::Stale);
        assert_eq!(latest.observe("t1", "0002"), Freshness::Same);
        assert_eq!(
            latest.observe("t2", "0001"),
            Freshness::Newer,
            "subjects are independent"
        );
        assert_eq!(latest.observe("t1", "0010"), Freshness::Newer);
        assert_eq!(latest.check("t1", "0009"), Freshness::Stale);
    }

    #[test]
    fn latest_sequence_forgets_the_least_recently_updated_subject() {
        let mut latest = LatestSequence::new(2);
        latest.observe("a", "1");
        latest.observe("b", "1");
        latest.observe("a", "2"); // `a` is now the most recently updated
        latest.observe("c", "1"); // evicts `b`
        assert_eq!(latest.len(), 2);
        assert_eq!(latest.check("b", "0"), Freshness::Newer, "b was forgotten");
        assert_eq!(latest.check("a", "1"), Freshness::Stale, "a is kept");
        for round in 0..100 {
            latest.observe("a", &format!("{:04}", 10 + round));
        }
        assert!(
            latest.order.len() <= 2 * 2 + 1,
            "stale markers are compacted"
        );
    }

    #[test]
    fn the_guard_ends_in_the_newest_state_whatever_the_delivery_order() {
        // Five changes of one subject, delivered shuffled and with duplicates: applying what the guard admits,
        // "last write wins", must leave the newest change.
        let changes: Vec<(String, String)> = (1..=5)
            .map(|n| (format!("id-{n}"), format!("{n:020}")))
            .collect();
        let orders: [&[usize]; 4] = [
            &[0, 1, 2, 3, 4],
            &[4, 3, 2, 1, 0],
            &[2, 0, 4, 4, 1, 3, 0],
            &[1, 1, 3, 0, 2, 4, 2],
        ];
        for order in orders {
            let mut guard = ConsumerGuard::new(100);
            let mut state = None;
            for &index in order {
                let (id, sequence) = &changes[index];
                if guard
                    .admit_parts(id, Some("task-1"), Some(sequence))
                    .should_apply()
                {
                    state = Some(index);
                }
            }
            assert_eq!(state, Some(4), "delivery order {order:?}");
        }
    }

    #[test]
    fn an_event_without_a_sequence_is_only_deduplicated() {
        let mut guard = ConsumerGuard::new(10);
        assert_eq!(guard.admit_parts("x", Some("s"), None), Admission::Apply);
        assert_eq!(
            guard.admit_parts("x", Some("s"), None),
            Admission::Duplicate
        );
        assert_eq!(guard.admit_parts("y", None, Some("1")), Admission::Apply);
    }

    #[test]
    fn a_forgotten_failure_is_admitted_again() {
        let mut guard = ConsumerGuard::new(10);
        assert_eq!(
            guard.admit_parts("x", Some("s"), Some("5")),
            Admission::Apply
        );
        guard.forget("x");
        assert_eq!(
            guard.admit_parts("x", Some("s"), Some("5")),
            Admission::Apply
        );
        assert_eq!(
            guard.admit_parts("w", Some("s"), Some("4")),
            Admission::Stale
        );
    }
}
