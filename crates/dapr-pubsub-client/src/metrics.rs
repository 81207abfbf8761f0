//! Dispatcher counters and a publish-latency histogram, kept in atomics and exposed as plain
//! data (no metrics library) so that a service can export them with whatever it uses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; a last, unbounded bucket follows.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Live counters shared by the dispatcher's workers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) bulk_requests: AtomicU64,
    pub(crate) bulk_entries: AtomicU64,
    pub(crate) overtaken: AtomicU64,
    pub(crate) queue_depth: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) latency: Histogram,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            submitted: self.submitted.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bulk_requests: self.bulk_requests.load(Ordering::Relaxed),
            bulk_entries: self.bulk_entries.load(Ordering::Relaxed),
            overtaken: self.overtaken.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// A fixed-bucket histogram of durations.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..=LATENCY_BUCKETS_SECONDS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let index = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect(),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of the dispatcher's metrics.
///
/// Counters only grow; `queue_depth` and `in_flight` are gauges.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Events accepted into the queue.
    pub submitted: u64,
    /// Events the sidecar accepted (2xx).
    pub published: u64,
    /// Events given up on: a non-retryable failure, retries exhausted, or not serializable.
    pub failed: u64,
    /// Retry attempts made (an event retried twice counts 2).
    pub retried: u64,
    /// Events dropped at submit because the queue was full or the dispatcher closed.
    pub dropped: u64,
    /// Bulk publish requests sent by batching (attempts included); 0 without batching.
    pub bulk_requests: u64,
    /// Events sent in those bulk requests, counted once per attempt: `bulk_entries /
    /// bulk_requests` is the mean batch size.
    pub bulk_entries: u64,
    /// Events of a bulk request that failed while a later event of their ordering key in the same
    /// request was published: their key's order is broken. Only possible with
    /// [`DispatcherConfig::with_same_key_batches`](crate::DispatcherConfig::with_same_key_batches); each such request is also
    /// logged (WARN) with the event ids.
    pub overtaken: u64,
    /// Events waiting in the queue.
    pub queue_depth: usize,
    /// Events being delivered (including those waiting for a retry).
    pub in_flight: usize,
    /// Duration of every publish attempt (one HTTP exchange, single or bulk), successful or not.
    pub latency: HistogramSnapshot,
}

/// A point-in-time copy of a latency histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
    sum: Duration,
    count: u64,
}

impl HistogramSnapshot {
    /// Upper bounds of the bounded buckets, in seconds ([`LATENCY_BUCKETS_SECONDS`]).
    pub fn bounds(&self) -> &'static [f64] {
        LATENCY_BUCKETS_SECONDS
    }

    /// Per-bucket (not cumulative) counts: one per bound, then the unbounded bucket.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Prometheus-style cumulative buckets `(le, count)`, ending with `(f64::INFINITY, count)`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().scan(0u64, |total, count| {
                *total += count;
                Some(*total)
            }))
    }

    /// Sum of all observed durations.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The upper bound of the bucket holding quantile `q` (0.0..=1.0), in seconds: an upper
    /// estimate. `None` when empty; `f64::INFINITY` if it falls in the unbounded bucket.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative()
            .find(|(_, cumulative)| *cumulative >= rank)
            .map(|(bound, _)| bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_infinity() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 4);
        let cumulative: Vec<_> = snapshot.cumulative().collect();
        assert_eq!(cumulative.len(), LATENCY_BUCKETS_SECONDS.len() + 1);
        assert_eq!(cumulative[0], (0.000_25, 1));
        assert_eq!(cumulative[4], (0.005, 3));
        assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 4)));
        assert_eq!(snapshot.quantile_upper_bound(0.5), Some(0.005));
        assert_eq!(snapshot.quantile_upper_bound(1.0), Some(f64::INFINITY));
        assert!(snapshot.sum() > Duration::from_secs(60));
    }
}
