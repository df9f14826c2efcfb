//! The hardware watchdog, petted while the pipeline is healthy.
//!
//! On the board `/dev/watchdog` resets the SoC unless it is written to
//! within its timeout. vigil owns it (no watchdog daemon, decision 0004):
//! the monitor loop pets it once a second, but only while every decoder and
//! inference thread is alive and RSS is within the limit, so a hung or broken
//! pipeline, a hung monitor or a dead process all end in a reset. A clean
//! stop writes the magic `V` before closing, which disarms drivers that allow
//! it, so a deliberate restart by the supervisor does not reset the board.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// An open watchdog device.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    /// Pets written so far.
    pub pets: u64,
}

impl Watchdog {
    /// Opens `device` and, for a real watchdog, sets its timeout (a plain
    /// file, as in tests, takes pets only).
    pub fn open(device: &Path, timeout: Duration) -> Result<Watchdog, WatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|source| WatchdogError::Open {
                device: device.to_path_buf(),
                source,
            })?;
        let is_device = file.metadata().map(|m| !m.is_file()).unwrap_or(false);
        if is_device {
            let mut seconds = timeout.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
            // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut seconds) };
            if rc != 0 {
                log::warn!(
                    "watchdog {}: cannot set a {}s timeout ({}); using the driver's",
                    device.display(),
                    timeout.as_secs(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(Watchdog { file, pets: 0 })
    }

    /// Resets the countdown.
    pub fn pet(&mut self) {
        match self.file.write_all(b"\0") {
            Ok(()) => self.pets += 1,
            Err(e) => log::error!("watchdog: {e}"),
        }
    }

    /// Disarms the watchdog (magic close) on a clean stop.
    pub fn disarm(mut self) {
        if let Err(e) = self.file.write_all(b"V") {
            log::warn!("watchdog: cannot disarm: {e}");
        }
    }
}

/// Why the watchdog could not be armed.
#[derive(Debug)]
pub enum WatchdogError {
    /// The device could not be opened for writing (absent, or no
    /// permission).
    Open {
        /// The configured device.
        device: PathBuf,
        /// The open's error.
        source: std::io::Error,
    },
}

impl std::fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchdogError::Open { device, source } => {
                write!(f, "cannot open the watchdog {}: {source}", device.display())
            }
        }
    }
}

impl std::error::Error for WatchdogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WatchdogError::Open { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pets_then_disarms_with_the_magic_character() {
        let path = std::env::temp_dir().join(format!("vigil-wdt-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let mut w = Watchdog::open(&path, Duration::from_secs(30)).unwrap();
        for _ in 0..3 {
            w.pet();
        }
        assert_eq!(w.pets, 3);
        w.disarm();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0\0V");
        std::fs::remove_file(&path).unwrap();
        let e =
            Watchdog::open(Path::new("/nonexistent/watchdog"), Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(&e, WatchdogError::Open { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(e.to_string().contains("/nonexistent/watchdog"), "{e}");
    }
}
