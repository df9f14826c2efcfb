//! The value types every measurement is made of: counters, gauges, the
//! inference latency histogram and the per-reason drop counters.
//!
//! Each is a few relaxed atomics, created at start and updated from the
//! pipeline threads without allocating or blocking a frame; readers (the
//! web layer) load them without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down; stored as f64 bits.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds (seconds) of the inference latency histogram buckets; the
/// implicit last bucket is +Inf. Spans NPU (a few ms) to emulated CPU (s).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    // Non-cumulative counts per bucket; the last is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`] for rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each bound of [`LATENCY_BUCKETS`], then +Inf.
    pub cumulative: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, sum and count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut running = 0;
        for (out, b) in cumulative.iter_mut().zip(&self.buckets) {
            running += b.load(Ordering::Relaxed);
            *out = running;
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: running,
        }
    }
}

/// Why a packet or frame was thrown away; each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The pool had nothing to lend.
    PoolEmpty,
    /// An access unit larger than a packet buffer, or of a stream larger
    /// than the camera's `max_resolution` (held back from its decoder).
    Oversize,
    /// Waiting for a key frame after a discontinuity.
    AwaitingKeyframe,
    /// The decoder rejected the data.
    DecodeError,
    /// A queue between stages was full.
    QueueFull,
    /// Not needed at the configured detection rate (not an error).
    Sampling,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::PoolEmpty,
        DropReason::Oversize,
        DropReason::AwaitingKeyframe,
        DropReason::DecodeError,
        DropReason::QueueFull,
        DropReason::Sampling,
    ];

    /// The Prometheus label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::PoolEmpty => "pool_empty",
            DropReason::Oversize => "oversize",
            DropReason::AwaitingKeyframe => "awaiting_keyframe",
            DropReason::DecodeError => "decode_error",
            DropReason::QueueFull => "queue_full",
            DropReason::Sampling => "sampling",
        }
    }
}

/// Per-reason drop counters.
#[derive(Debug, Default)]
pub struct DropCounters([Counter; DropReason::ALL.len()]);

impl DropCounters {
    /// Counts one drop.
    pub fn inc(&self, why: DropReason) {
        self.0[why as usize].inc();
    }
    /// Drops counted for `why`.
    pub fn get(&self, why: DropReason) -> u64 {
        self.0[why as usize].get()
    }
    /// Drops for every reason but [`DropReason::Sampling`].
    pub fn lost(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::Sampling)
            .map(|r| self.get(*r))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1); // <= 5 ms
        assert_eq!(s.cumulative[4], 2); // <= 50 ms
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len()], 3); // +Inf
        assert!((s.sum_seconds - 10.043).abs() < 1e-6);
    }

    #[test]
    fn drop_counters_separate_sampling_from_loss() {
        let d = DropCounters::default();
        d.inc(DropReason::Sampling);
        d.inc(DropReason::PoolEmpty);
        d.inc(DropReason::PoolEmpty);
        assert_eq!(d.get(DropReason::PoolEmpty), 2);
        assert_eq!(d.lost(), 2);
    }
}
