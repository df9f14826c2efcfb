//! The kernel's clock as the time client changes it: a step, a slew, and the
//! "synchronised" mark that `clock::synchronized` later reads.
//!
//! Behind a trait so the client's policy (when to step, what error to
//! declare) is tested without `CAP_SYS_TIME` and without moving the test
//! machine's clock; [`Kernel`] is the one real implementation.

use std::io;

/// An offset at or above this is stepped at once (as ntpd and chrony do by
/// default); below it the clock is slewed, so a running box never sees its
/// time go backwards for a small correction.
pub const STEP_THRESHOLD_US: i64 = 128_000;

/// What the time client may do to the clock.
pub trait KernelClock: Send {
    /// Jumps the clock by `offset_us` (positive: forward).
    fn step(&mut self, offset_us: i64) -> io::Result<()>;
    /// Lets the kernel absorb `offset_us` gradually (`adjtime`).
    fn slew(&mut self, offset_us: i64) -> io::Result<()>;
    /// Tells the kernel its time is now known within `max_error_us`: clears
    /// `STA_UNSYNC`. The kernel sets it again by itself once the error it
    /// adds up (500 ppm) passes 16 s, about 9 hours without another sync.
    fn mark_synchronized(&mut self, max_error_us: i64) -> io::Result<()>;
}

/// The running kernel's clock, through `adjtimex(2)` and `adjtime(3)`.
pub struct Kernel;

fn adjtimex(t: &mut libc::timex) -> io::Result<libc::c_int> {
    // SAFETY: `t` is a valid, initialised `timex`; the kernel reads the
    // fields `modes` names and writes the whole struct back.
    let state = unsafe { libc::adjtimex(t) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(state)
}

fn zeroed_timex() -> libc::timex {
    // SAFETY: `timex` is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `offset_us` as the kernel wants a signed time: whole seconds rounded
/// down and a non-negative fraction (-1.5 s is -2 s + 0.5 s).
pub(super) fn split_offset(offset_us: i64) -> (i64, i64) {
    (
        offset_us.div_euclid(1_000_000),
        offset_us.rem_euclid(1_000_000),
    )
}

impl KernelClock for Kernel {
    fn step(&mut self, offset_us: i64) -> io::Result<()> {
        let (secs, micros) = split_offset(offset_us);
        let mut t = zeroed_timex();
        // ADJ_SETOFFSET adds the offset to the clock in one step, so the
        // time between reading the clock and setting it is not lost.
        t.modes = libc::ADJ_SETOFFSET;
        t.time.tv_sec = secs as libc::time_t;
        t.time.tv_usec = micros as libc::suseconds_t;
        adjtimex(&mut t).map(drop)
    }

    fn slew(&mut self, offset_us: i64) -> io::Result<()> {
        let (secs, micros) = split_offset(offset_us);
        let delta = libc::timeval {
            tv_sec: secs as libc::time_t,
            tv_usec: micros as libc::suseconds_t,
        };
        // SAFETY: `delta` is a valid timeval; the old delta is not wanted.
        if unsafe { libc::adjtime(&delta, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn mark_synchronized(&mut self, max_error_us: i64) -> io::Result<()> {
        // Read first: only STA_UNSYNC changes, other status bits stay.
        let mut t = zeroed_timex();
        adjtimex(&mut t)?;
        let status = t.status & !libc::STA_UNSYNC;
        let mut t = zeroed_timex();
        t.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
        t.status = status;
        t.maxerror = max_error_us as libc::c_long;
        t.esterror = max_error_us as libc::c_long;
        adjtimex(&mut t).map(drop)
    }
}
