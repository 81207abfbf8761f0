//! A log-linear latency histogram: exact below 128 units, then 64 sub-buckets per power of two (at most 1/64
//! relative error), with the exact count, minimum and maximum kept beside it.

/// Values below this are counted exactly, one bucket each.
const EXACT: u64 = 128;
/// Sub-buckets per power of two above `EXACT`.
const HALF: u64 = EXACT / 2;
/// Bits of `EXACT`.
const EXACT_BITS: u32 = 7;
/// Buckets needed to cover the whole `u64` range.
const BUCKETS: usize = (EXACT + (64 - EXACT_BITS as u64) * HALF) as usize;

/// Counts of recorded values (latencies in nanoseconds, in this crate) by bucket.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket a value falls in.
fn index_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - (EXACT_BITS - 1);
    let top = value >> shift;
    (EXACT + u64::from(shift - 1) * HALF + (top - HALF)) as usize
}

/// The smallest and largest value of a bucket.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < EXACT {
        return (index, index);
    }
    let rest = index - EXACT;
    let shift = rest / HALF + 1;
    let low = (rest % HALF + HALF) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    /// Counts one value.
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[index_of(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value counted by `other`.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values counted.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The largest value counted, exactly; `None` when empty.
    pub(crate) fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0.0..=1.0): the upper bound of the bucket holding the value of rank
    /// `ceil(q * count)`, clamped to the exact minimum and maximum; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bounds_of(index).1.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: u64, expected: u64) {
        let error = (actual as f64 - expected as f64).abs() / expected as f64;
        assert!(
            error <= 1.0 / 64.0,
            "{actual} is not within 1/64 of {expected}"
        );
    }

    #[test]
    fn every_value_lies_inside_its_bucket_and_buckets_are_ordered() {
        let mut values: Vec<u64> = (0..5_000).collect();
        values.extend((0..64).map(|bit| 1u64 << bit));
        values.extend((1..64).map(|bit| (1u64 << bit) - 1));
        values.extend([u64::MAX, 123_456_789, 987_654_321_000]);
        for value in values {
            let index = index_of(value);
            assert!(index < BUCKETS, "{value} maps past the last bucket");
            let (low, high) = bounds_of(index);
            assert!(
                low <= value && value <= high,
                "{value} outside [{low}, {high}]"
            );
            if value > 0 {
                assert!(
                    index_of(value - 1) <= index,
                    "buckets not monotonic at {value}"
                );
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range_are_within_the_precision() {
        let mut histogram = Histogram::default();
        for value in 1..=100_000 {
            histogram.record(value);
        }
        assert_eq!(histogram.count(), 100_000);
        assert_close(histogram.quantile(0.5).unwrap(), 50_000);
        assert_close(histogram.quantile(0.99).unwrap(), 99_000);
        assert_eq!(histogram.quantile(1.0), Some(100_000));
        assert_eq!(histogram.quantile(0.0), Some(1));
        assert_eq!(histogram.max(), Some(100_000));
    }

    #[test]
    fn small_values_are_exact_and_outliers_show_only_above_their_rank() {
        let mut histogram = Histogram::default();
        for _ in 0..99 {
            histogram.record(40);
        }
        histogram.record(9_000_000);
        assert_eq!(histogram.quantile(0.5), Some(40));
        assert_eq!(histogram.quantile(0.99), Some(40));
        assert_eq!(histogram.quantile(0.999), Some(9_000_000));
        assert_eq!(histogram.max(), Some(9_000_000));
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut left, mut right, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for value in (1..20_000).step_by(7) {
            left.record(value * 3);
            both.record(value * 3);
        }
        for value in (1..9_000).step_by(3) {
            right.record(value * 1_000);
            both.record(value * 1_000);
        }
        left.merge(&right);
        assert_eq!(left.count(), both.count());
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(left.quantile(q), both.quantile(q), "quantile {q}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(Histogram::default().max(), None);
    }
}
