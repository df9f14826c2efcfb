//! A minimal `log` backend: one line per record on standard error.
//!
//! On the board stderr goes to the journal (or the console), which adds its
//! own timestamps, so lines carry only the elapsed time since start, the
//! level, the target and the message. Writing formats straight into the
//! locked stderr handle, so logging does not allocate.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

struct StderrLogger {
    level: log::LevelFilter,
    start: Instant,
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let mut err = std::io::stderr().lock();
        // A closed stderr must not take the appliance down: ignore failures.
        let _ = writeln!(
            err,
            "{:>6}.{:03} {:<5} {}: {}",
            t.as_secs(),
            t.subsec_millis(),
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Installs the logger. `VIGIL_LOG` (error, warn, info, debug, trace) sets
/// the level; the default is info. Calling it twice keeps the first.
pub fn init() {
    let level = std::env::var("VIGIL_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    let logger = LOGGER.get_or_init(|| StderrLogger {
        level,
        start: Instant::now(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
