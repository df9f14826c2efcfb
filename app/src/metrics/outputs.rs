//! What happens to events after detection: snapshots, the events thread's
//! queue and each upstream's delivery state.

use super::{Counter, Gauge};
use std::sync::{Mutex, PoisonError};

/// Counters of what happens to events after detection.
#[derive(Debug, Default)]
pub struct OutputMetrics {
    /// Snapshot files written.
    pub snapshots_written: Counter,
    /// Snapshots that could not be encoded or written (the event is stored
    /// without one).
    pub snapshots_failed: Counter,
    /// Events that found the snapshot pool empty (stored without one).
    pub snapshot_pool_empty: Counter,
    /// Events dropped because the events thread's queue was full.
    pub jobs_dropped: Counter,
    /// Events the events thread could not add to a batch.
    pub events_not_stored: Counter,
    /// 1 while the kernel clock is synchronised to a time source, else 0
    /// (sampled each second by the monitor; events stored while it is 0
    /// carry `clock_unsynced`).
    pub clock_synchronized: Gauge,
    /// Per upstream, indexed like `store::Sink`.
    pub upstream: [UpstreamMetrics; 2],
}

/// One upstream's delivery state.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// Events delivered (acknowledged by the upstream).
    pub delivered: Counter,
    /// Delivery attempts that failed and will be retried.
    pub failures: Counter,
    /// Events given up on after the upstream refused them repeatedly.
    pub rejected: Counter,
    /// 1 while the last attempt succeeded, 0 after a failure.
    pub up: Gauge,
    /// Clips delivered (`record.upstream = "upload"`): uploaded over HTTP,
    /// announced over MQTT.
    pub clips_delivered: Counter,
    /// Clip delivery attempts that failed (retried, or given up after the
    /// upstream refused the clip `max_attempts` times).
    pub clip_failures: Counter,
    /// The configured target ("" when this upstream is not configured).
    pub target: Mutex<String>,
    /// The last failure ("" after a success).
    pub last_error: Mutex<String>,
}

impl UpstreamMetrics {
    /// Records a failure and its reason.
    pub fn fail(&self, reason: &str) {
        self.failures.inc();
        self.up.set(0.0);
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        e.clear();
        e.push_str(reason);
    }

    /// Records a success.
    pub fn succeed(&self) {
        self.delivered.inc();
        self.up.set(1.0);
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Records a failed clip delivery and its reason (the event counters
    /// and `up` are the event drainer's).
    pub fn clip_fail(&self, reason: &str) {
        self.clip_failures.inc();
        let mut e = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        e.clear();
        e.push_str(reason);
    }

    /// The configured target and the last error.
    pub fn describe(&self) -> (String, String) {
        (
            self.target
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            self.last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}
