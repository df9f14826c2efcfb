//! Reconnect delays: exponential backoff with jitter, reset after a healthy
//! session.
//!
//! A camera that drops off the network must not be hammered, and a site whose
//! switch reboots must not see every camera reconnect in the same millisecond;
//! so each retry waits a random delay between a minimum and a maximum that
//! grows with consecutive failures ("full" or "decorrelated" jitter, as in
//! AWS's *Exponential Backoff and Jitter*). A session that stayed up for a
//! healthy period resets the growth. The random numbers come from a tiny
//! xorshift generator seeded by the caller, so tests are deterministic and
//! no crate or system entropy is needed.
//!
//! It sits at the crate's top level, not under `source`, because sources
//! (RTSP, V4L2) and upstream delivery (events, clips) both retry with it, and
//! tests across the crate draw their random inputs from [`XorShift64`].

use std::time::Duration;

/// How a delay is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[min, min(max, min * 2^failures)]`.
    Full,
    /// Uniform in `[min, min(max, 3 * previous delay)]`: grows about as fast
    /// but spreads retries more evenly.
    Decorrelated,
}

/// The xorshift64 generator (Marsaglia 2003): 8 bytes of state, no
/// allocation, good enough to spread retries, not for secrets.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (a zero seed, which xorshift cannot use, is
    /// replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

/// A seed that differs between cameras and between runs: the FNV-1a hash of
/// `name` mixed with the wall clock.
pub fn seed_from(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    h ^ now.rotate_left(29)
}

/// Consecutive-failure backoff for one source.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: Jitter,
    healthy_after: Duration,
    failures: u32,
    prev: Duration,
    rng: XorShift64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Backoff {
    /// Delays between `min` and `max` (a `max` below `min` is raised to
    /// `min`), growth reset by a session that lasted `healthy_after`.
    pub fn new(
        min: Duration,
        max: Duration,
        jitter: Jitter,
        healthy_after: Duration,
        seed: u64,
    ) -> Self {
        Backoff {
            min,
            max: max.max(min),
            jitter,
            healthy_after,
            failures: 0,
            prev: min,
            rng: XorShift64::new(seed),
        }
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let (min, max) = (nanos(self.min), nanos(self.max));
        let hi = match self.jitter {
            Jitter::Full => match 1u64.checked_shl(self.failures) {
                Some(factor) => min.saturating_mul(factor).min(max),
                None => max,
            },
            // A zero minimum would pin decorrelated jitter at zero: grow from 1 ms.
            Jitter::Decorrelated => nanos(self.prev).max(1_000_000).saturating_mul(3).min(max),
        };
        let d = Duration::from_nanos(self.rng.between(min, hi));
        self.failures = self.failures.saturating_add(1);
        self.prev = d;
        d
    }

    /// Reports how long the last session ran; one that lasted the healthy
    /// period resets the backoff.
    pub fn session_ended(&mut self, lasted: Duration) {
        if lasted >= self.healthy_after {
            self.reset();
        }
    }

    /// Forgets past failures: the next delay is drawn from the first range.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.prev = self.min;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn delays(b: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.next_delay()).collect()
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            let mk = |seed| Backoff::new(100 * MS, 30_000 * MS, jitter, 60_000 * MS, seed);
            let a = delays(&mut mk(42), 20);
            assert_eq!(a, delays(&mut mk(42), 20));
            assert_ne!(a, delays(&mut mk(43), 20));
        }
    }

    #[test]
    fn delays_stay_within_bounds() {
        for jitter in [Jitter::Full, Jitter::Decorrelated] {
            for seed in 1..50 {
                let mut b = Backoff::new(200 * MS, 5_000 * MS, jitter, 60_000 * MS, seed);
                for d in delays(&mut b, 100) {
                    assert!((200 * MS..=5_000 * MS).contains(&d), "{jitter:?} {d:?}");
                }
            }
        }
    }

    #[test]
    fn full_jitter_range_doubles_until_the_cap() {
        // The k-th delay is at most min * 2^k; over many seeds the largest
        // seen approaches that bound, and later delays reach the cap's range.
        let mut worst = [Duration::ZERO; 8];
        for seed in 1..400 {
            let mut b = Backoff::new(100 * MS, 3_000 * MS, Jitter::Full, 60_000 * MS, seed);
            for (k, d) in delays(&mut b, 8).into_iter().enumerate() {
                let bound = (100 * MS * (1 << k)).min(3_000 * MS);
                assert!(d <= bound, "delay {k} = {d:?} > {bound:?}");
                worst[k] = worst[k].max(d);
            }
        }
        assert_eq!(worst[0], 100 * MS);
        assert!(worst[3] > 700 * MS, "{worst:?}");
        assert!(worst[7] > 2_800 * MS, "{worst:?}");
    }

    #[test]
    fn decorrelated_jitter_grows_then_caps() {
        let mut b = Backoff::new(100 * MS, 10_000 * MS, Jitter::Decorrelated, 60_000 * MS, 7);
        let d = delays(&mut b, 40);
        assert!(d[..3].iter().all(|x| *x <= 2_700 * MS), "{d:?}");
        assert!(d[20..].iter().any(|x| *x > 3_000 * MS), "{d:?}");
    }

    #[test]
    fn a_healthy_session_resets_the_growth() {
        let mut b = Backoff::new(100 * MS, 60_000 * MS, Jitter::Full, 30_000 * MS, 9);
        delays(&mut b, 10);
        assert_eq!(b.failures(), 10);
        b.session_ended(29_999 * MS);
        assert_eq!(b.failures(), 10);
        b.session_ended(30_000 * MS);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn degenerate_bounds_do_not_panic() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, Jitter::Decorrelated, MS, 0);
        assert_eq!(delays(&mut b, 5), vec![Duration::ZERO; 5]);
        let mut b = Backoff::new(5 * MS, MS, Jitter::Full, MS, 1);
        assert_eq!(b.next_delay(), 5 * MS);
        let mut b = Backoff::new(Duration::MAX, Duration::MAX, Jitter::Full, MS, 1);
        for _ in 0..70 {
            b.next_delay();
        }
        let mut r = XorShift64::new(0);
        assert_eq!(r.between(3, 3), 3);
        r.between(0, u64::MAX);
    }
}
