//! The last hour of RSS and CPU, for the status page's chart.
//!
//! A fixed ring of [`SAMPLES`] points, one per [`INTERVAL`], allocated at
//! start: the chart covers an hour whatever the uptime, and an old point is
//! overwritten rather than kept. A sample is taken when at least
//! `INTERVAL` has passed since the last one (`>=`, on wall-clock time), and a
//! clock that jumps backwards restarts the spacing instead of stalling it.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spacing of the points.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Points kept: one hour.
pub const SAMPLES: usize = 360;

/// `(unix_ms, rss_bytes, cpu_percent)`.
pub type Point = (i64, f64, f64);

/// The ring of points.
pub struct History {
    points: Mutex<VecDeque<Point>>,
}

/// `/api/history`.
#[derive(Serialize)]
pub struct HistoryJson {
    interval_seconds: u64,
    samples: Vec<Point>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history with its capacity allocated.
    pub fn new() -> History {
        History {
            points: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }

    /// Adds a point at `now` unless the last is less than [`INTERVAL`] old.
    pub fn record(&self, now: SystemTime, rss_bytes: f64, cpu_percent: f64) {
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = points.back() {
            let since = ms - last.0;
            // A backward jump (since < 0) takes a point now and spaces from it.
            if since >= 0 && since < INTERVAL.as_millis() as i64 {
                return;
            }
        }
        if points.len() >= SAMPLES {
            points.pop_front();
        }
        points.push_back((ms, rss_bytes, cpu_percent));
    }

    /// Points held now.
    pub fn len(&self) -> usize {
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no point was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The document for `/api/history`, oldest first.
    pub fn to_json(&self) -> HistoryJson {
        let points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        HistoryJson {
            interval_seconds: INTERVAL.as_secs(),
            samples: points.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn spacing_is_at_least_the_interval() {
        let h = History::new();
        h.record(at(0), 1.0, 0.0);
        h.record(at(9), 2.0, 0.0);
        assert_eq!(h.len(), 1, "9 s is too soon");
        h.record(at(10), 3.0, 0.0);
        assert_eq!(h.len(), 2, "exactly the interval counts (>=)");
        h.record(at(500), 4.0, 0.0);
        assert_eq!(h.len(), 3, "a gap takes one point, not a burst");
    }

    #[test]
    fn capacity_is_fixed() {
        let h = History::new();
        for i in 0..(SAMPLES as u64 * 3) {
            h.record(at(i * 10), i as f64, 0.0);
        }
        let j = h.to_json();
        assert_eq!(j.samples.len(), SAMPLES);
        assert_eq!(j.samples[0].1, (SAMPLES * 2) as f64, "oldest overwritten");
    }

    #[test]
    fn backward_clock_jump_keeps_recording() {
        let h = History::new();
        h.record(at(1000), 1.0, 0.0);
        h.record(at(100), 2.0, 0.0);
        assert_eq!(h.len(), 2, "a backward jump does not stall the chart");
        h.record(at(105), 3.0, 0.0);
        assert_eq!(h.len(), 2, "spacing restarts from the jumped-to time");
        h.record(at(110), 4.0, 0.0);
        assert_eq!(h.len(), 3);
    }
}
