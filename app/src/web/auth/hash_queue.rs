//! The bound on password hashing: at most [`MAX_HASHES`] logins, setups
//! and password changes queued or running at once.
//!
//! Each check costs a slow hash on the runtime's single blocking thread, and
//! each queued one holds the password it was sent. Without a bound, a client
//! that posts logins and hangs up at once (the task runs on; nothing cancels
//! it) grows the queue, and its memory, as fast as it can send. So a request
//! takes a [`HashPermit`] before it is queued; the permit lives in the queued
//! task and is released when the task ends, whether or not its client is
//! still there. With every permit taken the request is refused at once (429
//! with `Retry-After`), counted in [`HashQueue::refused`]. The cap on what
//! one queued task holds is [`MAX_PASSWORD_BYTES`] per password, checked
//! before the permit is taken.

use crate::metrics::Counter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Password checks queued or running at once; the blocking thread hashes
/// one at a time, so four give a queue of about two seconds on the board.
pub const MAX_HASHES: usize = 4;

/// Longest password accepted in any request (the policy for a new password
/// is stricter); a longer one is refused before hashing or queueing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What a refused client is told to wait while the queue is full: about the
/// time the queue takes to drain.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// Why a request was refused before it was queued, by the label of
/// `vigil_auth_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every permit was taken.
    Busy = 0,
    /// The limiter had locked the peer (or everyone) out.
    RateLimited = 1,
    /// A password was over [`MAX_PASSWORD_BYTES`].
    TooLong = 2,
}

impl Refusal {
    /// The metric labels, in index order.
    pub const LABELS: [&'static str; 3] = ["busy", "rate_limited", "too_long"];
}

/// The permits and the refusal counters; shared by every request.
#[derive(Debug, Default)]
pub struct HashQueue {
    in_flight: Arc<AtomicUsize>,
    /// Requests refused before queueing, by [`Refusal`].
    pub refused: [Counter; 3],
}

/// A place in the queue; give it to the queued task, which releases it when
/// it ends.
#[derive(Debug)]
pub struct HashPermit(Arc<AtomicUsize>);

impl Drop for HashPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashQueue {
    /// A permit, or `None` (counted as [`Refusal::Busy`]) when
    /// [`MAX_HASHES`] are out.
    pub fn try_acquire(&self) -> Option<HashPermit> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_HASHES).then_some(n + 1)
            });
        match taken {
            Ok(_) => Some(HashPermit(self.in_flight.clone())),
            Err(_) => {
                self.refuse(Refusal::Busy);
                None
            }
        }
    }

    /// Counts a refusal.
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// Checks queued or running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_permits_and_each_returns_on_drop() {
        let q = HashQueue::default();
        let held: Vec<HashPermit> = (0..MAX_HASHES)
            .map(|_| q.try_acquire().expect("a free permit"))
            .collect();
        assert_eq!(q.in_flight(), MAX_HASHES);
        for _ in 0..100 {
            assert!(q.try_acquire().is_none());
        }
        assert_eq!(q.refused[Refusal::Busy as usize].get(), 100);
        assert_eq!(q.in_flight(), MAX_HASHES, "refusals take nothing");
        drop(held);
        assert_eq!(q.in_flight(), 0);
        assert!(q.try_acquire().is_some());
    }

    #[test]
    fn a_permit_moved_into_a_thread_returns_when_the_thread_ends() {
        let q = HashQueue::default();
        let p = q.try_acquire().unwrap();
        std::thread::spawn(move || drop(p)).join().unwrap();
        assert_eq!(q.in_flight(), 0);
    }
}
