//! Picks the decoded pictures that go to the detector, at the camera's
//! configured detection rate.
//!
//! The decision is made on stream time: a picture is taken when its pts is at
//! or past (`>=`) the next due time. Stream time can jump (a file loops, a
//! camera restarts its clock, a timestamp wraps): a picture earlier than the
//! last one taken restarts the schedule from itself, so a jump backwards
//! never stalls detection, and a jump forwards never causes a burst.

/// Chooses pictures at a fixed rate of stream time.
#[derive(Clone, Debug)]
pub struct Sampler {
    interval_us: i64,
    last_taken_us: Option<i64>,
}

impl Sampler {
    /// A sampler taking `fps` pictures per second of stream time.
    pub fn new(fps: f32) -> Self {
        Sampler {
            interval_us: (1e6 / f64::from(fps.max(0.001))) as i64,
            last_taken_us: None,
        }
    }

    /// Whether the picture at `pts_us` should be detected on.
    pub fn take(&mut self, pts_us: i64) -> bool {
        let take = match self.last_taken_us {
            None => true,
            // Backwards: the stream restarted or wrapped.
            Some(last) if pts_us < last => true,
            Some(last) => pts_us - last >= self.interval_us,
        };
        if take {
            self.last_taken_us = Some(pts_us);
        }
        take
    }

    /// Forgets the schedule (after a reconnect).
    pub fn reset(&mut self) {
        self.last_taken_us = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(s: &mut Sampler, pts: impl IntoIterator<Item = i64>) -> Vec<i64> {
        pts.into_iter().filter(|&p| s.take(p)).collect()
    }

    #[test]
    fn takes_the_configured_rate() {
        let mut s = Sampler::new(5.0);
        // 25 fps for 2 seconds: 10 pictures at 200 ms apart.
        let got = taken(&mut s, (0..50).map(|i| i * 40_000));
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[1] - w[0] == 200_000));
    }

    #[test]
    fn survives_jumps_and_gaps() {
        let mut s = Sampler::new(1.0);
        assert!(s.take(10_000_000));
        assert!(!s.take(10_500_000));
        assert!(s.take(3_000_000), "backwards jump restarts the schedule");
        assert!(!s.take(3_100_000));
        assert!(s.take(900_000_000_000), "forward gap takes at once");
        assert!(!s.take(900_000_100_000), "and does not burst afterwards");
        assert!(s.take(i64::MIN + 1), "wrap");
    }
}
