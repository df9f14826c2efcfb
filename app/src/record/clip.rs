//! When a camera's clip opens and closes: a pure state machine, no I/O.
//!
//! A [`ClipTracker`] is told about events, access units and the passing of
//! monotonic time, and answers with [`Action`]s for its caller (the
//! recorder) to perform. An event opens a clip `pre_roll` before it; the clip
//! ends `post_roll` after the last event, and events while it is open extend
//! it, never past `max_length` from its start.
//!
//! Every way a clip can end is a `>=` test, never an equality: the Python
//! predecessor ended a recording when `now_sec == end_sec + 1`, so a stream
//! that skipped that second recorded forever. Here the clip closes on the
//! first unit whose pts is at or past the end ([`CloseReason::Ended`]), and
//! also when the stream cannot get there:
//!
//! - a pts step of at least `jump` forward, or backward by more than
//!   [`REORDER_SLACK_US`] (a camera clock reset);
//! - no unit for `silence` of monotonic time (a camera that stopped sending);
//! - the monotonic clock passing `post_roll + silence` after the last event,
//!   or `max_length + silence` after the opening, whatever the pts say
//!   (frozen timestamps): `silence` is how far the stream may lag the wall
//!   clock. So no clip stays open longer than `max_length + silence` of
//!   monotonic time plus the caller's tick period;
//! - the caller reporting that the ring lapped its writer, a stream
//!   discontinuity (reconnect), or shutdown.
//!
//! Stored monotonic times later than `now` (a clock that went backwards) are
//! pulled back to `now`, as `events::Tracker::expire` does, so a jump delays
//! a close by at most one period, never indefinitely.

use std::time::Duration;

/// A backward pts step up to this (µs) is frame reordering (B-frames), not a
/// clock reset.
pub const REORDER_SLACK_US: i64 = 1_000_000;

/// How clips are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipConfig {
    /// Stream time recorded before an event.
    pub pre_roll: Duration,
    /// Stream time recorded after the last event.
    pub post_roll: Duration,
    /// Longest clip, in stream time from its start (and, plus `silence`, in
    /// monotonic time from its opening).
    pub max_length: Duration,
    /// Monotonic time without a unit that closes the clip; also how far the
    /// stream may lag the monotonic clock.
    pub silence: Duration,
    /// Forward pts step that closes the clip.
    pub jump: Duration,
}

/// Why a clip closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A unit reached `post_roll` after the last event.
    Ended,
    /// A unit reached `max_length` after the start while events wanted more.
    MaxLength,
    /// The monotonic clock passed the end while no unit reached it.
    WallClock,
    /// The pts jumped forward by at least `jump`.
    JumpForward,
    /// The pts went backward by more than [`REORDER_SLACK_US`].
    JumpBackward,
    /// No unit for `silence`.
    Silence,
    /// The ring evicted units the writer had not read (reported by the caller).
    Lapped,
    /// The stream restarted (reported by the caller).
    Discontinuity,
    /// The recorder is stopping.
    Shutdown,
}

/// What the caller does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a clip at the newest key frame at or before `start_pts_us`
    /// (`PacketRing::start_for`) and write the ring's units from there.
    Open {
        /// Requested start of the clip, in stream µs.
        start_pts_us: i64,
    },
    /// The unit just reported belongs to the open clip: write it.
    Write,
    /// Finalise the open clip; the unit just reported, if any, is not in it.
    Close {
        /// Why.
        reason: CloseReason,
    },
}

/// The actions of one input, in order (at most a close and an open).
pub type Actions = heapless::Vec<Action, 2>;

#[derive(Clone, Copy, Debug)]
struct OpenClip {
    /// The clip closes at the first unit with pts >= this.
    end_us: i64,
    /// `end_us` never goes past this (start + max_length).
    limit_us: i64,
    /// An event wanted an end past `limit_us`.
    clamped: bool,
    opened_ms: u64,
    last_event_ms: u64,
    last_unit_ms: u64,
}

/// The clip state of one camera.
#[derive(Debug)]
pub struct ClipTracker {
    pre_roll_us: i64,
    post_roll_us: i64,
    max_length_us: i64,
    jump_us: i64,
    post_roll_ms: u64,
    max_length_ms: u64,
    silence_ms: u64,
    last_pts_us: Option<i64>,
    clip: Option<OpenClip>,
    stopped: bool,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds from `since` to `now`, first pulling `since` back to `now`
/// if the clock went backwards.
fn elapsed(since: &mut u64, now: u64) -> u64 {
    *since = (*since).min(now);
    now - *since
}

fn one(action: Action) -> Actions {
    let mut out = Actions::new();
    // Capacity 2: the first push always fits.
    let _ = out.push(action);
    out
}

impl ClipTracker {
    /// A tracker with no clip open.
    pub fn new(config: ClipConfig) -> Self {
        ClipTracker {
            pre_roll_us: micros(config.pre_roll),
            post_roll_us: micros(config.post_roll),
            max_length_us: micros(config.max_length),
            jump_us: micros(config.jump),
            post_roll_ms: millis(config.post_roll),
            max_length_ms: millis(config.max_length),
            silence_ms: millis(config.silence),
            last_pts_us: None,
            clip: None,
            stopped: false,
        }
    }

    /// An event at stream time `event_pts_us`, seen at monotonic `now_ms`:
    /// opens a clip, or extends the open one. Ignored after [`shutdown`].
    ///
    /// [`shutdown`]: ClipTracker::shutdown
    pub fn on_event(&mut self, event_pts_us: i64, now_ms: u64) -> Actions {
        let mut out = self.tick(now_ms);
        if self.stopped {
            return out;
        }
        let wanted = event_pts_us.saturating_add(self.post_roll_us);
        match &mut self.clip {
            Some(clip) => {
                clip.end_us = clip.end_us.max(wanted.min(clip.limit_us));
                clip.clamped |= wanted > clip.limit_us;
                clip.last_event_ms = now_ms;
            }
            None => {
                let start_pts_us = event_pts_us.saturating_sub(self.pre_roll_us);
                let limit_us = start_pts_us.saturating_add(self.max_length_us);
                self.clip = Some(OpenClip {
                    end_us: wanted.min(limit_us),
                    limit_us,
                    clamped: wanted > limit_us,
                    opened_ms: now_ms,
                    last_event_ms: now_ms,
                    last_unit_ms: now_ms,
                });
                // A tick returns at most one action: there is room.
                let _ = out.push(Action::Open { start_pts_us });
            }
        }
        out
    }

    /// An access unit with stream time `pts_us` arrived at monotonic
    /// `now_ms`. Call it before the unit goes into the ring: on
    /// [`Action::Close`] the clip ends before this unit.
    pub fn on_unit(&mut self, pts_us: i64, now_ms: u64) -> Actions {
        let out = self.tick(now_ms);
        let step = self.last_pts_us.map(|last| pts_us.saturating_sub(last));
        self.last_pts_us = Some(pts_us);
        let Some(clip) = &mut self.clip else {
            return out;
        };
        clip.last_unit_ms = now_ms;
        let reason = match step {
            Some(s) if s >= self.jump_us => CloseReason::JumpForward,
            Some(s) if s < -REORDER_SLACK_US => CloseReason::JumpBackward,
            _ if pts_us >= clip.end_us && clip.clamped => CloseReason::MaxLength,
            _ if pts_us >= clip.end_us => CloseReason::Ended,
            _ => return one(Action::Write),
        };
        self.close(reason)
    }

    /// The passing of monotonic time, called periodically whether or not
    /// units arrive: closes a clip whose camera went silent or whose stream
    /// did not reach the end in time.
    pub fn tick(&mut self, now_ms: u64) -> Actions {
        let Some(clip) = &mut self.clip else {
            return Actions::new();
        };
        let since_unit = elapsed(&mut clip.last_unit_ms, now_ms);
        let since_event = elapsed(&mut clip.last_event_ms, now_ms);
        let since_open = elapsed(&mut clip.opened_ms, now_ms);
        let late = |since: u64, allowed: u64| since >= allowed.saturating_add(self.silence_ms);
        if since_unit >= self.silence_ms {
            self.close(CloseReason::Silence)
        } else if late(since_event, self.post_roll_ms) || late(since_open, self.max_length_ms) {
            self.close(CloseReason::WallClock)
        } else {
            Actions::new()
        }
    }

    /// The ring evicted units the clip's writer had not read: the clip closes.
    pub fn lapped(&mut self) -> Actions {
        self.close(CloseReason::Lapped)
    }

    /// The stream restarted (camera reconnect, with the ring reset): the clip
    /// closes and the next unit's pts is not compared with the last one.
    pub fn discontinuity(&mut self) -> Actions {
        self.last_pts_us = None;
        self.close(CloseReason::Discontinuity)
    }

    /// Closes the open clip, if any, and ignores events from now on, so the
    /// tracker holds no clip afterwards.
    pub fn shutdown(&mut self) -> Actions {
        self.stopped = true;
        self.close(CloseReason::Shutdown)
    }

    /// Whether a clip is open.
    pub fn is_open(&self) -> bool {
        self.clip.is_some()
    }

    fn close(&mut self, reason: CloseReason) -> Actions {
        match self.clip.take() {
            Some(_) => one(Action::Close { reason }),
            None => Actions::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: i64 = 40_000; // 25 fps
    const FRAME_MS: u64 = 40;

    fn config() -> ClipConfig {
        ClipConfig {
            pre_roll: Duration::from_secs(5),
            post_roll: Duration::from_secs(3),
            max_length: Duration::from_secs(30),
            silence: Duration::from_secs(10),
            jump: Duration::from_secs(10),
        }
    }

    fn open(start_pts_us: i64) -> Action {
        Action::Open { start_pts_us }
    }

    fn close(reason: CloseReason) -> Action {
        Action::Close { reason }
    }

    /// Feeds units `from..to` (frame indices) at 25 fps with pts and
    /// monotonic time advancing together (pts = index * 40 ms + `pts0`);
    /// returns the number of writes and the first other action with its
    /// frame index.
    fn run(t: &mut ClipTracker, from: i64, to: i64, pts0: i64) -> (usize, Option<(i64, Action)>) {
        let mut writes = 0;
        for i in from..to {
            let out = t.on_unit(pts0 + i * FRAME_US, i as u64 * FRAME_MS);
            match out.as_slice() {
                [] => {}
                [Action::Write] => writes += 1,
                [other] => return (writes, Some((i, *other))),
                more => panic!("unexpected {more:?}"),
            }
        }
        (writes, None)
    }

    #[test]
    fn steady_stream_clip_spans_pre_and_post_roll() {
        let mut t = ClipTracker::new(config());
        assert_eq!(run(&mut t, 0, 250, 0), (0, None)); // 10 s, nothing open
        assert_eq!(t.on_event(10_000_000, 10_000).as_slice(), [open(5_000_000)]);
        // Frames 250.. (10 s ..) are written until pts reaches 13 s.
        let (writes, end) = run(&mut t, 250, 1000, 0);
        assert_eq!(writes, 75);
        assert_eq!(end, Some((325, close(CloseReason::Ended))));
        assert!(!t.is_open());
    }

    #[test]
    fn a_gap_ends_the_clip_on_the_first_unit_past_the_end() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        assert_eq!(t.on_event(10_000_000, 10_000).len(), 1);
        // Units up to 11 s, then nothing for 5 s (ticks keep coming), then
        // the stream resumes at 16 s: no unit has pts equal to the end.
        assert_eq!(run(&mut t, 250, 275, 0), (25, None));
        for ms in (11_000..16_000).step_by(200) {
            assert!(t.tick(ms).is_empty(), "closed early at {ms} ms");
        }
        assert_eq!(
            t.on_unit(16_020_000, 16_020).as_slice(),
            [close(CloseReason::Ended)]
        );
    }

    #[test]
    fn a_forward_jump_closes_the_clip() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        t.on_event(10_000_000, 10_000);
        run(&mut t, 250, 260, 0);
        assert_eq!(
            t.on_unit(10_400_000 + 3_600_000_000, 10_400).as_slice(),
            [close(CloseReason::JumpForward)]
        );
    }

    #[test]
    fn a_backward_jump_closes_the_clip_but_reordering_does_not() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        t.on_event(10_000_000, 10_000);
        // Decode order with B-frames: pts steps back by two frames.
        for (n, pts) in [10_120_000, 10_040_000, 10_080_000, 10_240_000]
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                t.on_unit(pts, 10_000 + n as u64 * 40).as_slice(),
                [Action::Write]
            );
        }
        // The camera's clock resets: pts back to 0.
        assert_eq!(
            t.on_unit(0, 10_200).as_slice(),
            [close(CloseReason::JumpBackward)]
        );
        // The next clip opens in the new time base.
        assert_eq!(t.on_event(40_000, 10_240).as_slice(), [open(-4_960_000)]);
        assert_eq!(t.on_unit(40_000, 10_240).as_slice(), [Action::Write]);
    }

    #[test]
    fn frozen_timestamps_close_on_the_wall_clock() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        t.on_event(10_000_000, 10_000);
        // Units keep coming, every one with the same pts.
        let mut ms = 10_000;
        let reason = loop {
            ms += FRAME_MS;
            assert!(ms < 60_000, "never closed");
            match t.on_unit(10_000_000, ms).as_slice() {
                [Action::Write] => {}
                [Action::Close { reason }] => break *reason,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(reason, CloseReason::WallClock);
        // post_roll + silence after the event, not a moment earlier.
        assert_eq!(ms, 10_000 + 3_000 + 10_000);
    }

    #[test]
    fn events_cannot_keep_a_frozen_clip_open_past_max_length() {
        let mut t = ClipTracker::new(config());
        t.on_event(0, 0);
        let mut ms = 0;
        let out = loop {
            ms += 200;
            assert!(ms < 60_000, "never closed");
            let out = t.tick(ms);
            if !out.is_empty() {
                break out;
            }
            assert!(t.on_event(0, ms).is_empty());
            assert_eq!(t.on_unit(0, ms).as_slice(), [Action::Write]);
        };
        // Closed by the monotonic clock at max_length + silence.
        assert_eq!(out.as_slice(), [close(CloseReason::WallClock)]);
        assert_eq!(ms, 30_000 + 10_000);
    }

    #[test]
    fn a_silent_camera_closes_its_clip_on_ticks() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        t.on_event(10_000_000, 10_000);
        run(&mut t, 250, 260, 0); // last unit at 10.36 s
        let mut ms = 10_360;
        let out = loop {
            ms += 200;
            assert!(ms < 60_000, "never closed");
            let out = t.tick(ms);
            if !out.is_empty() {
                break out;
            }
        };
        assert_eq!(out.as_slice(), [close(CloseReason::Silence)]);
        assert_eq!(ms, 10_360 + 10_000);
    }

    #[test]
    fn events_extend_the_clip_up_to_max_length() {
        let mut t = ClipTracker::new(config());
        run(&mut t, 0, 250, 0);
        // Clip starts at 5 s, so it may not end after 35 s.
        assert_eq!(t.on_event(10_000_000, 10_000).as_slice(), [open(5_000_000)]);
        let mut i = 250;
        let end = loop {
            assert!(i < 2000, "never closed");
            // An event every 2 s keeps pushing the end 3 s ahead.
            if i % 50 == 0 {
                assert!(t.on_event(i * FRAME_US, i as u64 * FRAME_MS).is_empty());
            }
            match t.on_unit(i * FRAME_US, i as u64 * FRAME_MS).as_slice() {
                [Action::Write] => i += 1,
                [Action::Close { reason }] => break (i, *reason),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(end, (875, CloseReason::MaxLength)); // 35 s
                                                        // The next event opens a new clip at once.
        assert_eq!(
            t.on_event(35_000_000, 35_000).as_slice(),
            [open(30_000_000)]
        );
    }

    #[test]
    fn an_extension_within_the_limit_ends_as_ended() {
        let mut t = ClipTracker::new(config());
        t.on_event(10_000_000, 10_000);
        t.on_event(12_000_000, 10_000);
        t.on_event(11_000_000, 10_000); // an older event does not shorten it
        assert_eq!(
            run(&mut t, 250, 1000, 0).1,
            Some((375, close(CloseReason::Ended)))
        );
    }

    #[test]
    fn shutdown_closes_an_open_clip_and_ignores_later_events() {
        let mut t = ClipTracker::new(config());
        t.on_event(10_000_000, 10_000);
        assert_eq!(t.shutdown().as_slice(), [close(CloseReason::Shutdown)]);
        assert!(t.shutdown().is_empty());
        assert!(t.on_event(11_000_000, 11_000).is_empty());
        assert!(t.on_unit(11_000_000, 11_000).is_empty());
        assert!(!t.is_open());
    }

    #[test]
    fn lapped_and_discontinuity_close_and_forget_the_stream_time() {
        let mut t = ClipTracker::new(config());
        assert!(t.lapped().is_empty());
        t.on_event(10_000_000, 10_000);
        assert_eq!(t.lapped().as_slice(), [close(CloseReason::Lapped)]);
        t.on_unit(10_000_000, 10_000);
        t.on_event(10_000_000, 10_000);
        assert_eq!(
            t.discontinuity().as_slice(),
            [close(CloseReason::Discontinuity)]
        );
        // After a reconnect pts restart at 0: not a backward jump.
        t.on_event(0, 10_100);
        assert_eq!(t.on_unit(0, 10_100).as_slice(), [Action::Write]);
    }

    #[test]
    fn a_late_close_and_an_event_come_out_in_order() {
        let mut t = ClipTracker::new(config());
        t.on_event(0, 0);
        // No ticks for a minute: the event finds the clip overdue.
        assert_eq!(
            t.on_event(60_000_000, 60_000).as_slice(),
            [close(CloseReason::Silence), open(55_000_000)]
        );
    }

    #[test]
    fn a_monotonic_clock_going_back_delays_a_close_by_one_period_at_most() {
        let mut t = ClipTracker::new(config());
        t.on_event(0, 1_000_000);
        assert!(t.tick(5_000).is_empty()); // clock went back ~1000 s
        assert!(t.tick(14_999).is_empty());
        assert_eq!(t.tick(15_000).as_slice(), [close(CloseReason::Silence)]);
    }
}
