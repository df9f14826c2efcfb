//! Once per interval: a repeated error is logged at its first occurrence,
//! then at most once per [`INTERVAL_MS`] with how often it repeated.
//!
//! A detector that fails on every frame, a camera sending corrupt frames or
//! one that keeps reconnecting would otherwise write a line per frame or per
//! attempt: the journal fills, and the line that matters scrolls away. Each
//! call site names its source (a camera's index) and a reason (a short
//! static word); [`LogLimit::check`] answers whether to log now and, if so,
//! the [`Repeats`] to append ("(repeated 1234 times in the last 60 s)").
//!
//! The table is a fixed array of `N` slots behind a mutex, taken only on
//! error paths: nothing allocates, at start or after. When every slot holds
//! another key, the slot used longest ago is taken over (its pending count
//! is lost, and [`LogLimit::taken_over`] counts that); the process-wide
//! table's [`SLOTS`] keys are 128 cameras times the two reasons that use it
//! ("frame" and "state"; each camera's inference route has its own table
//! for "detect").
//!
//! Time is milliseconds on a monotonic clock the caller passes, so tests
//! inject it. The interval expires by a `>=` test; a clock that goes back
//! re-anchors the interval at the new time (a line at most one interval
//! later), and a jump forward ends it at once.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// How long a repeated error stays quiet after it was logged.
pub const INTERVAL_MS: u64 = 60_000;

/// Slots of the process-wide table ([`check`]).
pub const SLOTS: usize = 256;

/// What one log site reports about: a source (a camera's index) and a
/// reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Which camera (or other numbered source).
    pub source: usize,
    /// Why, as a short static word ("detect", "frame", ...).
    pub reason: &'static str,
}

/// How often a logged error repeated unlogged before this line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeats {
    /// Occurrences since the last line that were not logged.
    pub count: u64,
    /// Milliseconds since the last line.
    pub over_ms: u64,
}

impl fmt::Display for Repeats {
    /// Nothing for a first occurrence, else " (repeated N times in the last
    /// S s)", to append to the line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        let secs = (self.over_ms + 500) / 1000;
        write!(
            f,
            " (repeated {} time{} in the last {secs} s)",
            self.count,
            if self.count == 1 { "" } else { "s" }
        )
    }
}

#[derive(Clone, Copy)]
struct Slot {
    key: Key,
    /// When this key was last logged.
    logged_ms: u64,
    /// When it last occurred (for choosing a slot to take over).
    seen_ms: u64,
    /// Occurrences since `logged_ms` that were not logged.
    quiet: u64,
}

/// A fixed table of `N` keys, each logged at most once per interval.
pub struct LogLimit<const N: usize> {
    interval_ms: u64,
    slots: Mutex<[Option<Slot>; N]>,
    taken_over: AtomicU64,
}

impl<const N: usize> LogLimit<N> {
    /// An empty table whose keys stay quiet for `interval_ms` after a line.
    pub const fn new(interval_ms: u64) -> Self {
        LogLimit {
            interval_ms,
            slots: Mutex::new([None; N]),
            taken_over: AtomicU64::new(0),
        }
    }

    /// An occurrence of `key` at `now_ms`: `Some` to log it now (with the
    /// repeats to append), `None` to stay quiet (the occurrence is counted).
    pub fn check(&self, key: Key, now_ms: u64) -> Option<Repeats> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.iter_mut().flatten().find(|s| s.key == key) {
            slot.seen_ms = now_ms;
            if now_ms < slot.logged_ms {
                // The clock went back: restart the interval from here.
                slot.logged_ms = now_ms;
            }
            let over_ms = now_ms - slot.logged_ms;
            if over_ms >= self.interval_ms {
                let repeats = Repeats {
                    count: slot.quiet,
                    over_ms,
                };
                slot.logged_ms = now_ms;
                slot.quiet = 0;
                return Some(repeats);
            }
            slot.quiet += 1;
            return None;
        }
        let fresh = Slot {
            key,
            logged_ms: now_ms,
            seen_ms: now_ms,
            quiet: 0,
        };
        if let Some(free) = slots.iter_mut().find(|s| s.is_none()) {
            *free = Some(fresh);
        } else if let Some(oldest) = slots.iter_mut().min_by_key(|s| s.map_or(0, |s| s.seen_ms)) {
            self.taken_over.fetch_add(1, Ordering::Relaxed);
            *oldest = Some(fresh);
        }
        Some(Repeats {
            count: 0,
            over_ms: 0,
        })
    }

    /// Notes that `key` was logged at `now_ms` by other means (a line that
    /// is always written): its interval starts over with no repeats.
    pub fn logged(&self, key: Key, now_ms: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.iter_mut().flatten().find(|s| s.key == key) {
            slot.logged_ms = now_ms;
            slot.seen_ms = now_ms;
            slot.quiet = 0;
            return;
        }
        drop(slots);
        let _ = self.check(key, now_ms);
    }

    /// Slots taken over from another key because the table was full.
    pub fn taken_over(&self) -> u64 {
        self.taken_over.load(Ordering::Relaxed)
    }
}

static GLOBAL: LogLimit<SLOTS> = LogLimit::new(INTERVAL_MS);
static START: OnceLock<Instant> = OnceLock::new();

/// [`LogLimit::check`] on the process-wide table at the current time (on a
/// monotonic clock started by the first call).
pub fn check(source: usize, reason: &'static str) -> Option<Repeats> {
    GLOBAL.check(Key { source, reason }, now_ms())
}

/// [`LogLimit::logged`] on the process-wide table at the current time.
pub fn logged(source: usize, reason: &'static str) {
    GLOBAL.logged(Key { source, reason }, now_ms());
}

fn now_ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECT: Key = Key {
        source: 0,
        reason: "detect",
    };

    /// Lines logged for `key` at each of `times`, with their repeats.
    fn run(limit: &LogLimit<4>, key: Key, times: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
        times
            .into_iter()
            .filter_map(|t| limit.check(key, t).map(|r| (t, r.count)))
            .collect()
    }

    #[test]
    fn an_error_every_frame_logs_once_per_interval_with_the_count() {
        let limit = LogLimit::<4>::new(60_000);
        // 10 frames a second for 3 minutes.
        let lines = run(&limit, DETECT, (0..1800).map(|i| i * 100));
        assert_eq!(lines, [(0, 0), (60_000, 599), (120_000, 599)]);
    }

    #[test]
    fn the_interval_expires_at_exactly_its_length() {
        let limit = LogLimit::<4>::new(1000);
        assert!(limit.check(DETECT, 5).is_some());
        assert!(limit.check(DETECT, 1004).is_none());
        assert_eq!(
            limit.check(DETECT, 1005),
            Some(Repeats {
                count: 1,
                over_ms: 1000
            })
        );
    }

    #[test]
    fn keys_are_limited_apart() {
        let limit = LogLimit::<4>::new(1000);
        let other_camera = Key {
            source: 1,
            ..DETECT
        };
        let other_reason = Key {
            reason: "frame",
            ..DETECT
        };
        for key in [DETECT, other_camera, other_reason] {
            assert!(limit.check(key, 10).is_some());
            assert!(limit.check(key, 20).is_none());
        }
    }

    #[test]
    fn a_clock_jumping_back_restarts_the_interval_and_forward_ends_it() {
        let limit = LogLimit::<4>::new(1000);
        assert!(limit.check(DETECT, 50_000).is_some());
        // Back by 40 s: quiet, but not for 41 s.
        assert!(limit.check(DETECT, 10_000).is_none());
        assert!(limit.check(DETECT, 10_999).is_none());
        assert_eq!(limit.check(DETECT, 11_000).map(|r| r.count), Some(2));
        // Forward by an hour: logged at once, with the count and the gap.
        assert!(limit.check(DETECT, 11_001).is_none());
        assert_eq!(
            limit.check(DETECT, 3_611_000),
            Some(Repeats {
                count: 1,
                over_ms: 3_600_000
            })
        );
    }

    #[test]
    fn a_gap_longer_than_the_interval_logs_the_next_occurrence_at_once() {
        let limit = LogLimit::<4>::new(1000);
        assert_eq!(
            run(&limit, DETECT, [0, 5000, 5001, 9000]),
            [(0, 0), (5000, 0), (9000, 1)]
        );
    }

    #[test]
    fn a_full_table_takes_over_the_slot_used_longest_ago() {
        let limit = LogLimit::<4>::new(1000);
        for source in 0..4 {
            let key = Key { source, ..DETECT };
            assert!(limit.check(key, source as u64).is_some());
        }
        assert_eq!(limit.taken_over(), 0);
        // A fifth key takes camera 0's slot (seen at 0 ms).
        assert!(limit
            .check(
                Key {
                    source: 4,
                    ..DETECT
                },
                10
            )
            .is_some());
        assert_eq!(limit.taken_over(), 1);
        assert!(limit
            .check(
                Key {
                    source: 1,
                    ..DETECT
                },
                11
            )
            .is_none());
        assert!(limit.check(DETECT, 12).is_some(), "camera 0 starts over");
    }

    #[test]
    fn a_line_logged_anyway_restarts_the_interval() {
        let limit = LogLimit::<4>::new(1000);
        limit.logged(DETECT, 0);
        assert!(limit.check(DETECT, 10).is_none());
        assert!(limit.check(DETECT, 20).is_none());
        limit.logged(DETECT, 500);
        assert!(limit.check(DETECT, 1499).is_none());
        assert_eq!(limit.check(DETECT, 1500).map(|r| r.count), Some(1));
    }

    #[test]
    fn repeats_read_as_a_suffix() {
        let r = |count, over_ms| Repeats { count, over_ms }.to_string();
        assert_eq!(r(0, 0), "");
        assert_eq!(r(1, 60_000), " (repeated 1 time in the last 60 s)");
        assert_eq!(r(1234, 59_500), " (repeated 1234 times in the last 60 s)");
    }

    #[test]
    fn checking_allocates_nothing() {
        let limit = LogLimit::<4>::new(1000);
        let before = crate::alloc_count::thread_counts();
        for t in 0..10_000 {
            let _ = limit.check(
                Key {
                    source: (t % 7) as usize,
                    ..DETECT
                },
                t,
            );
        }
        assert_eq!(crate::alloc_count::thread_counts().ours, before.ours);
    }
}
