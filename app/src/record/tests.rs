//! The ring and the tracker together on a long random stream: every clip
//! opens once, closes once, starts at a key frame, reads only whole units,
//! and closes within `max_length + silence` of monotonic time.

use super::*;
use crate::backoff::XorShift64;
use std::collections::HashMap;
use std::time::Duration;

const TICK_MS: u64 = 200;
const FRAME_MS: u64 = 40;
const GOP: u64 = 50;

fn config() -> ClipConfig {
    ClipConfig {
        pre_roll: Duration::from_secs(3),
        post_roll: Duration::from_secs(2),
        max_length: Duration::from_secs(20),
        silence: Duration::from_secs(10),
        jump: Duration::from_secs(10),
    }
}

/// The clip writer's side: where it reads and what it has seen.
struct Writer {
    cursor: Cursor,
    opened_ms: u64,
    read: u64,
}

struct Sim {
    ring: PacketRing,
    tracker: ClipTracker,
    rng: XorShift64,
    now_ms: u64,
    pts_us: i64,
    frame: u64,
    stalled_until_ms: u64,
    writer: Option<Writer>,
    events: u64,
    opens: u64,
    closes: HashMap<CloseReason, u64>,
    clips_with_units: u64,
    data: Vec<u8>,
}

/// Reads the ring up to the newest unit, checking each unit's bytes.
fn drain(ring: &PacketRing, w: &mut Writer) -> Result<(), ReadError> {
    while let Some(u) = ring.read(&mut w.cursor)? {
        if w.read == 0 {
            assert!(u.key, "a clip must start at a key frame");
        }
        assert_eq!(u.data[..8], u.pts_us.to_le_bytes(), "unit {}", u.seq);
        let fill = u.data[0] ^ 0x5a;
        assert!(
            u.data[8..].iter().all(|&b| b == fill),
            "torn unit {}",
            u.seq
        );
        w.read += 1;
    }
    Ok(())
}

impl Sim {
    fn apply(&mut self, actions: Actions) {
        let limit = config().max_length + config().silence;
        for action in actions {
            match action {
                Action::Open { start_pts_us } => {
                    assert!(self.writer.is_none(), "open while open");
                    self.opens += 1;
                    self.writer = Some(Writer {
                        cursor: self.ring.start_for(start_pts_us),
                        opened_ms: self.now_ms,
                        read: 0,
                    });
                    self.catch_up();
                }
                Action::Write => assert!(self.writer.is_some(), "write while closed"),
                Action::Close { reason } => {
                    let mut w = self.writer.take().expect("close while closed");
                    // Finalising reads what is left; a lapped writer is
                    // already closed, so only whole units matter here.
                    let _ = drain(&self.ring, &mut w);
                    self.clips_with_units += u64::from(w.read > 0);
                    *self.closes.entry(reason).or_default() += 1;
                    let open_for = self.now_ms - w.opened_ms;
                    assert!(
                        open_for <= limit.as_millis() as u64 + TICK_MS,
                        "{reason:?} clip open for {open_for} ms"
                    );
                }
            }
        }
    }

    /// The writer reads what arrived, unless it is stalled (slow storage).
    fn catch_up(&mut self) {
        if self.now_ms < self.stalled_until_ms {
            return;
        }
        let read = match &mut self.writer {
            Some(w) => drain(&self.ring, w),
            None => Ok(()),
        };
        match read {
            Ok(()) => {}
            Err(ReadError::Lapped { missed }) => {
                assert!(missed > 0);
                let actions = self.tracker.lapped();
                self.apply(actions);
            }
            Err(ReadError::Reset) => panic!("reset with a clip open"),
        }
    }

    fn maybe_event(&mut self, one_in: u64) {
        if self.rng.between(1, one_in) == 1 {
            let lag_us = self.rng.between(0, 500_000) as i64;
            self.events += 1;
            let actions = self.tracker.on_event(self.pts_us - lag_us, self.now_ms);
            self.apply(actions);
        }
    }

    fn unit(&mut self, pts_step_us: i64) {
        self.now_ms += FRAME_MS;
        self.pts_us += pts_step_us;
        let key = self.frame.is_multiple_of(GOP);
        self.frame += 1;
        let len = if key {
            self.rng.between(4000, 12_000)
        } else {
            self.rng.between(8, 1500)
        } as usize;
        self.data.clear();
        self.data.extend_from_slice(&self.pts_us.to_le_bytes());
        self.data.resize(len, self.data[0] ^ 0x5a);
        let actions = self.tracker.on_unit(self.pts_us, self.now_ms);
        self.apply(actions);
        self.ring.push(&self.data, self.pts_us, key);
        self.catch_up();
        self.maybe_event(30);
    }

    /// No units for `ms`: ticks only, and the odd late event.
    fn quiet(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms + TICK_MS <= end {
            self.now_ms += TICK_MS;
            let actions = self.tracker.tick(self.now_ms);
            self.apply(actions);
            self.catch_up();
            self.maybe_event(20);
        }
        self.now_ms = end;
    }
}

#[test]
fn every_clip_on_a_random_stream_opens_once_closes_once_and_starts_at_a_key_frame() {
    let mut sim = Sim {
        ring: PacketRing::new(128 * 1024, 128),
        tracker: ClipTracker::new(config()),
        rng: XorShift64::new(0x5eed_c11b),
        now_ms: 0,
        pts_us: 1_000_000_000,
        frame: 0,
        stalled_until_ms: 0,
        writer: None,
        events: 0,
        opens: 0,
        closes: HashMap::new(),
        clips_with_units: 0,
        data: Vec::new(),
    };
    while sim.events < 10_000 {
        match sim.rng.between(0, 99) {
            0..=79 => {
                for _ in 0..sim.rng.between(25, 500) {
                    sim.unit(40_000);
                }
            }
            80..=84 => {
                // A gap shorter than `silence`; the stream resumes where the
                // wall clock says it should.
                let ms = sim.rng.between(1000, 8000);
                sim.quiet(ms);
                sim.pts_us += ms as i64 * 1000;
            }
            85..=87 => {
                let ms = sim.rng.between(11_000, 20_000);
                sim.quiet(ms);
                sim.pts_us += ms as i64 * 1000;
            }
            88..=89 => sim.pts_us += 3_600_000_000,
            90..=91 => sim.pts_us = 0,
            92..=94 => {
                for _ in 0..sim.rng.between(100, 1000) {
                    sim.unit(0);
                }
            }
            95..=96 => {
                // Reconnect: the stream restarts at a key frame, new time base.
                let actions = sim.tracker.discontinuity();
                sim.apply(actions);
                sim.ring.reset();
                sim.frame = 0;
                sim.pts_us = sim.rng.between(0, 1_000_000) as i64;
            }
            _ => sim.stalled_until_ms = sim.now_ms + sim.rng.between(1000, 20_000),
        }
    }
    // Make sure a clip is open at the end, then stop.
    sim.stalled_until_ms = 0;
    let actions = sim.tracker.on_event(sim.pts_us, sim.now_ms);
    sim.apply(actions);
    assert!(sim.tracker.is_open());
    let actions = sim.tracker.shutdown();
    sim.apply(actions);

    assert!(!sim.tracker.is_open());
    assert!(sim.writer.is_none());
    assert!(sim.tracker.on_event(sim.pts_us, sim.now_ms).is_empty());
    let closes: u64 = sim.closes.values().sum();
    assert_eq!(sim.opens, closes, "every Open has exactly one Close");
    assert!(sim.opens > 1000, "only {} clips", sim.opens);
    assert!(sim.clips_with_units * 10 > sim.opens * 9);
    for reason in [
        CloseReason::Ended,
        CloseReason::MaxLength,
        CloseReason::WallClock,
        CloseReason::JumpForward,
        CloseReason::JumpBackward,
        CloseReason::Silence,
        CloseReason::Lapped,
        CloseReason::Discontinuity,
    ] {
        assert!(
            sim.closes.get(&reason).is_some_and(|&n| n > 0),
            "no clip closed by {reason:?}: {:?}",
            sim.closes
        );
    }
    assert_eq!(sim.closes.get(&CloseReason::Shutdown), Some(&1));
    let s = sim.ring.stats();
    assert!(s.evicted > 0 && s.wasted_bytes > 0 && s.resets > 0);
}
