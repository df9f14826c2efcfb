//! What the monitor reads from a running pipeline: rates, process figures
//! and whether every pipeline thread is alive.
//!
//! The caller's thread samples about once a second ([`Pipeline::sample`]);
//! the rates are differences against the previous sample, kept in a
//! [`MonitorState`] the caller owns, so sampling allocates nothing.

use super::Pipeline;
use crate::alloc_count;
use crate::procstat::ProcSample;
use std::time::Instant;

impl Pipeline {
    /// Refreshes process and rate metrics; call about once a second with the
    /// previous sample.
    pub fn sample(&self, previous: &mut MonitorState) {
        let now = Instant::now();
        let elapsed = now.duration_since(previous.at).as_secs_f64().max(1e-3);
        for (i, cam) in self.registry.cameras.iter().enumerate() {
            let decoded = cam.frames_decoded.get();
            let detected = cam.frames_detected.get();
            if let Some(prev) = previous.cameras.get_mut(i) {
                cam.decode_fps.set((decoded - prev.0) as f64 / elapsed);
                cam.detect_fps.set((detected - prev.1) as f64 / elapsed);
                *prev = (decoded, detected);
            }
        }
        previous.at = now;
        // A clock whose state the kernel will not tell counts as not
        // synchronised: a flag on an event is better than a wrong time
        // nobody was warned of.
        let synced = crate::clock::synchronized().unwrap_or(false);
        self.registry
            .outputs
            .clock_synchronized
            .set(if synced { 1.0 } else { 0.0 });
        if let Ok(s) = ProcSample::read_self() {
            let p = &self.registry.process;
            p.rss_bytes.set(s.rss_bytes as f64);
            p.rss_peak_bytes.set(s.rss_peak_bytes as f64);
            p.threads.set(s.threads as f64);
            p.open_fds.set(s.open_fds as f64);
            p.cpu_seconds.set(s.cpu_seconds());
            if previous.last.cpu_seconds() > 0.0 {
                let used = (s.cpu_seconds() - previous.last.cpu_seconds()).max(0.0);
                p.cpu_percent.set(100.0 * used / elapsed);
            }
            previous.last = s;
        }
        let counts = alloc_count::process_counts();
        self.registry
            .process
            .heap_allocations
            .set(counts.ours as f64);
        self.registry
            .process
            .engine_heap_allocations
            .set(counts.engine as f64);
    }

    /// Monitor state for [`Pipeline::sample`].
    pub fn monitor_state(&self) -> MonitorState {
        MonitorState {
            at: Instant::now(),
            cameras: vec![(0, 0); self.registry.cameras.len()],
            last: ProcSample::default(),
        }
    }

    /// Whether every decoder and inference thread and the disk thread is
    /// still running (none has panicked or returned): what the watchdog is
    /// petted on.
    pub fn threads_alive(&self) -> bool {
        self.disk.alive()
            && self.decoders.iter().all(|h| !h.is_finished())
            && self
                .workers
                .iter()
                .chain(&self.writer)
                .chain(&self.clip_writer)
                .all(|h| !h.is_finished())
    }
}

/// Between-sample memory of the monitor.
pub struct MonitorState {
    at: Instant,
    cameras: Vec<(u64, u64)>,
    /// The last process reading.
    pub last: ProcSample,
}
