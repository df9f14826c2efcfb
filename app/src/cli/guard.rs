//! The memory limit and the watchdog, decided from one reading at a time.
//!
//! The monitor loop reads RSS and thread liveness once a second and hands
//! them to [`Guard::step`], which pets the watchdog only while the pipeline
//! is whole and within `memory_limit`, and says when to stop: after
//! [`OVER_READINGS`] consecutive readings over the limit, so the service
//! manager restarts vigil before the kernel's OOM killer picks a victim.
//! The decision takes the readings as plain numbers so tests can feed it a
//! fake RSS instead of allocating hundreds of MiB.

use crate::budget::human;
use crate::watchdog::Watchdog;

/// Consecutive readings over the limit that stop the process (one reading
/// a second: a short spike, such as a model reload's garbage before
/// `malloc_trim`, does not kill the box; a lasting overrun does in 3 s).
pub const OVER_READINGS: u32 = 3;

/// What the monitor does after a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep running.
    Run,
    /// Stop with `EXIT_MEMORY`: RSS stayed over the limit.
    OverLimit,
}

/// The monitor's memory and watchdog decisions across readings.
#[derive(Debug)]
pub struct Guard {
    limit: u64,
    /// Consecutive readings over the limit so far.
    over: u32,
    /// Whether the last reading found a pipeline thread stopped (so the
    /// error is logged once, not every second).
    pipeline_down: bool,
}

impl Guard {
    /// A guard enforcing `limit` bytes of RSS.
    pub fn new(limit: u64) -> Guard {
        Guard {
            limit,
            over: 0,
            pipeline_down: false,
        }
    }

    /// Takes one reading: `rss` bytes resident and whether every pipeline
    /// thread is `alive`. Pets `watchdog` only when both are healthy, so a
    /// broken pipeline or a process over its limit lets the board reset.
    pub fn step(&mut self, rss: u64, alive: bool, watchdog: Option<&mut Watchdog>) -> Verdict {
        if rss > self.limit {
            self.over += 1;
            log::error!(
                "RSS {} exceeds memory_limit {} ({}/{OVER_READINGS})",
                human(rss),
                human(self.limit),
                self.over
            );
        } else {
            self.over = 0;
        }
        if let Some(w) = watchdog {
            if alive && self.over == 0 {
                w.pet();
            } else if !alive && !self.pipeline_down {
                log::error!("a pipeline thread has stopped; no longer petting the watchdog");
            }
        }
        self.pipeline_down = !alive;
        if self.over >= OVER_READINGS {
            Verdict::OverLimit
        } else {
            Verdict::Run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: u64 = 1 << 20;

    /// A watchdog on a plain file (it takes pets; each is one byte).
    fn file_watchdog(dir: &crate::test_dir::TempDir) -> (Watchdog, std::path::PathBuf) {
        let path = dir.0.join("watchdog");
        std::fs::write(&path, b"").unwrap();
        let w = Watchdog::open(&path, Duration::from_secs(30)).unwrap();
        (w, path)
    }

    #[test]
    fn three_readings_over_the_limit_stop_and_a_dip_resets_the_count() {
        let mut g = Guard::new(100 * MIB);
        // Under or exactly at the limit runs on.
        for rss in [10 * MIB, 100 * MIB, 99 * MIB] {
            assert_eq!(g.step(rss, true, None), Verdict::Run);
        }
        // Two over, one back under: the count starts again.
        assert_eq!(g.step(101 * MIB, true, None), Verdict::Run);
        assert_eq!(g.step(500 * MIB, true, None), Verdict::Run);
        assert_eq!(g.step(50 * MIB, true, None), Verdict::Run);
        assert_eq!(g.step(101 * MIB, true, None), Verdict::Run);
        assert_eq!(g.step(101 * MIB, true, None), Verdict::Run);
        assert_eq!(g.step(101 * MIB, true, None), Verdict::OverLimit);
    }

    #[test]
    fn the_watchdog_is_petted_only_while_within_the_limit_and_whole() {
        let dir = crate::test_dir::TempDir::new("guard-wdt");
        let (mut w, path) = file_watchdog(&dir);
        let mut g = Guard::new(100 * MIB);
        let mut pets = |rss: u64, alive: bool, g: &mut Guard| {
            let before = w.pets;
            g.step(rss, alive, Some(&mut w));
            w.pets - before
        };
        assert_eq!(pets(90 * MIB, true, &mut g), 1, "healthy: petted");
        assert_eq!(pets(101 * MIB, true, &mut g), 0, "over the limit: no pet");
        assert_eq!(pets(101 * MIB, true, &mut g), 0, "still over: no pet");
        assert_eq!(pets(90 * MIB, true, &mut g), 1, "back under: petted again");
        assert_eq!(pets(90 * MIB, false, &mut g), 0, "a thread died: no pet");
        assert_eq!(pets(200 * MIB, false, &mut g), 0);
        assert_eq!(pets(90 * MIB, true, &mut g), 1);
        // What reached the device: exactly the three pets.
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0");
    }
}
