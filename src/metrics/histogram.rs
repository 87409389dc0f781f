//! A latency histogram with fixed buckets, lock-free: observing is two
//! relaxed atomic adds (the bucket and the sum) and no allocation, so it
//! can sit on the path of every request.
//!
//! Buckets are stored per bucket (not cumulative) and summed when read;
//! the count is that sum, so `_count` always equals the `+Inf` bucket. A
//! read during observations may see the sum a few observations ahead of
//! or behind the buckets, as any lock-free histogram does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets (nanoseconds), the `+Inf` bucket excluded.
const BOUNDS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The same bounds as `le` label values (seconds), then `+Inf`.
pub const LE: [&str; 15] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "+Inf",
];

/// Observations of durations.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket, the last one beyond every bound.
    buckets: [AtomicU64; LE.len()],
    sum_ns: AtomicU64,
}

/// A histogram as read: cumulative bucket counts (as the format wants
/// them), the count and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub cumulative: [u64; LE.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LE.len()],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BOUNDS_NS.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// How many observations were counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = [0u64; LE.len()];
        let mut total = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Ordering::Relaxed);
            *c = total;
        }
        Snapshot {
            cumulative,
            count: total,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_labels_agree() {
        for (ns, le) in BOUNDS_NS.iter().zip(LE) {
            assert_eq!(*ns as f64 / 1e9, le.parse::<f64>().unwrap(), "{le}");
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(100)); // <= 0.0005
        h.observe(Duration::from_micros(500)); // a bound belongs to its bucket
        h.observe(Duration::from_millis(3)); // <= 0.005
        h.observe(Duration::from_secs(60)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(h.count(), 4);
        assert_eq!(&s.cumulative[..4], &[2, 2, 2, 3]);
        assert_eq!(s.cumulative[13], 3);
        assert_eq!(s.cumulative[14], 4);
        assert!((s.sum_seconds - 60.0036).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
