//! Wall-clock time as the stored records count it: milliseconds since the
//! Unix epoch.
//!
//! Event and clip records carry wall-clock times (retention ages them out by
//! it), and both the store and the recorder stamp them, so the reading lives
//! here rather than in either. Everything that measures durations takes a
//! monotonic `now_ms` or an `Instant` from its caller instead, which is how
//! the tracker, the recorder and the web sessions are driven by simulated
//! time in their tests; this is the one reading that must be the real clock.

/// Now, in milliseconds since the Unix epoch (0 if the clock is set before
/// it).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether the kernel says its clock is synchronised to a time source (an
/// NTP daemon such as busybox `ntpd`, chrony or systemd-timesyncd): the
/// state `adjtimex(2)` reports with nothing changed. RK3588 boards usually
/// have no RTC battery, so until a sync the clock starts wherever the
/// kernel booted; events stamped then carry a flag (`clock_unsynced`).
/// `None` when the kernel does not answer.
pub fn synchronized() -> Option<bool> {
    // SAFETY: `timex` is plain data; with `modes` 0 the call only reads.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut t) };
    judged(state, t.status)
}

/// `adjtimex`'s answer read: `TIME_ERROR` or `STA_UNSYNC` mean not
/// synchronised; a negative state is no answer.
fn judged(state: libc::c_int, status: libc::c_int) -> Option<bool> {
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_sync_state_is_read_from_state_and_status() {
        assert_eq!(judged(libc::TIME_OK, libc::STA_PLL), Some(true));
        assert_eq!(judged(libc::TIME_ERROR, 0), Some(false));
        assert_eq!(judged(libc::TIME_OK, libc::STA_UNSYNC), Some(false));
        assert_eq!(judged(-1, 0), None);
        // The real call answers on Linux (whatever this machine's state is).
        assert!(synchronized().is_some());
    }
}
