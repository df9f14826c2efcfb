//! A clip's timeline: decode times and composition offsets for samples
//! that carry only a pts. Streams that cannot reorder are shown in decode
//! order with decode times following the pts; streams that may reorder are
//! shown exactly at their pts, decoded at the pts R places back in sorted
//! order (R the reorder depth), with no look-ahead, so decode times come out
//! the same however a clip is cut into fragments. The reasoning, the edge
//! cases and the players' quirks behind it: docs/recording.md, "Timing".

use super::{ClipMux, TIMESCALE};
use crate::codec::sps::MAX_REORDER_FRAMES;

/// Frame duration assumed until two samples have shown the real one: 25 fps.
pub(super) const DEFAULT_DURATION: u32 = TIMESCALE / 25;

/// Longest sample duration written: a larger pts gap is a stall, not a frame.
const MAX_DURATION: u32 = 10 * TIMESCALE;

/// Longest pts delta remembered as the frame duration; longer ones are gaps,
/// which must not become the duration guessed for a fragment's last sample.
const MAX_FRAME_DURATION: u32 = TIMESCALE;

/// The last sample written to a clip, for the next one's duration.
#[derive(Clone, Copy, Debug)]
pub(super) struct LastSample {
    /// Its pts in ticks since the clip's start.
    pts_ticks: i64,
    /// Its decode time following the pts deltas (before any shift that
    /// keeps fragments from overlapping).
    dts: u64,
}

/// One pending sample.
#[derive(Clone, Copy, Default)]
pub(super) struct Sample {
    pub(super) pts_us: i64,
    /// Filled in by `FragmentBuilder::finish_fragment`.
    pub(super) dts: u64,
    /// Presentation minus decode time, filled in with `dts`.
    pub(super) cto: i32,
    pub(super) size: u32,
    pub(super) key: bool,
}

impl ClipMux {
    /// `pts_us` as ticks since the clip's start (saturating: a wild pts
    /// only yields a clamped duration).
    fn ticks(&self, pts_us: i64) -> i64 {
        let t = (i128::from(pts_us) - i128::from(self.start_pts_us)) * i128::from(TIMESCALE);
        let t = t.div_euclid(1_000_000);
        i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
    }

    /// The decode time of the next sample following the pts deltas, and
    /// remembers it as the last sample.
    fn advance(&mut self, pts_us: i64) -> u64 {
        let pts_ticks = self.ticks(pts_us);
        let dts = match self.last {
            None => 0,
            Some(last) => {
                let delta = pts_ticks.saturating_sub(last.pts_ticks);
                let step = if delta <= 0 {
                    self.frame_duration
                } else {
                    delta.min(i64::from(MAX_DURATION)) as u32
                };
                if delta > 0 && delta <= i64::from(MAX_FRAME_DURATION) {
                    self.frame_duration = step;
                }
                last.dts + u64::from(step)
            }
        };
        self.last = Some(LastSample { pts_ticks, dts });
        dts
    }

    /// Decode times and composition offsets of a fragment's samples
    /// without reordering: decode times follow the pts deltas, presentation
    /// is decoding (see docs/recording.md, "Timing").
    pub(super) fn time_in_order(&mut self, samples: &mut [Sample]) {
        // A fragment never starts before the previous one ended, and a
        // sample never before its predecessor: players expect decode times
        // to increase.
        let mut floor = self.end_dts;
        for s in samples.iter_mut() {
            s.dts = self.advance(s.pts_us).max(floor);
            s.cto = 0;
            floor = s.dts + 1;
        }
        self.end_dts = floor - 1 + u64::from(self.frame_duration);
    }

    /// Decode times and composition offsets of a fragment's samples when
    /// the stream may reorder (see docs/recording.md, "Timing"): `scratch` is room for
    /// one pts per sample and the pending ones.
    pub(super) fn time_reordered(&mut self, samples: &mut [Sample], scratch: &mut [i64]) {
        let n = samples.len();
        let pending = self.pending_len;
        // The reorder depth: how many samples decoded earlier are shown
        // later, at most (looking back twice the codecs' limit: a clock
        // stepping back is no deeper reordering).
        let window = 2 * MAX_REORDER_FRAMES as usize;
        for (i, s) in samples.iter().enumerate() {
            let t = self.ticks(s.pts_us);
            let earlier = &samples[i.saturating_sub(window)..i];
            let later = earlier.iter().filter(|e| e.pts_us > s.pts_us).count()
                + self.pending[..pending].iter().filter(|&&p| p > t).count();
            self.reorder_frames = self
                .reorder_frames
                .max(later.min(MAX_REORDER_FRAMES as usize));
        }
        // The pending pts and this fragment's, ascending: the first `used`
        // become decode times, the largest `keep` wait for the next
        // fragment. `keep` only grows, as the depth does; the samples that
        // get no pts when it grows (the clip's first ones) are squeezed in
        // just after the previous decode time.
        let merged = &mut scratch[..pending + n];
        merged[..pending].copy_from_slice(&self.pending[..pending]);
        for (m, s) in merged[pending..].iter_mut().zip(samples.iter()) {
            *m = self.ticks(s.pts_us);
        }
        merged.sort_unstable();
        let keep = self.reorder_frames.min(merged.len());
        let used = merged.len() - keep;
        let squeezed = n - used;
        // The frame duration: the mean plausible step between the pts used.
        let (mut sum, mut steps) = (0i64, 0i64);
        let mut previous = self.last_used;
        for &t in &merged[..used] {
            if let Some(p) = previous {
                let delta = t.saturating_sub(p);
                if delta > 0 && delta <= i64::from(MAX_FRAME_DURATION) {
                    sum += delta;
                    steps += 1;
                }
            }
            previous = Some(t);
        }
        if steps > 0 {
            self.frame_duration = (sum / steps) as u32;
        }
        let mut floor = self.end_dts;
        for (k, s) in samples.iter_mut().enumerate() {
            let ideal = k.checked_sub(squeezed).map_or(0, |k| merged[k]);
            s.dts = u64::try_from(ideal).unwrap_or(0).max(floor);
            // Presentation never before decoding: a sample the floor pushed
            // past its pts is shown when decoded (as in-order clips do).
            let pts = self.ticks(s.pts_us);
            let dts = i64::try_from(s.dts).unwrap_or(i64::MAX);
            s.cto = pts.saturating_sub(dts).clamp(0, i64::from(i32::MAX)) as i32;
            floor = s.dts + 1;
        }
        if used > 0 {
            self.last_used = Some(merged[used - 1]);
        }
        // The next decode time is the smallest pts not used yet: the first
        // pending one, unless a sample still to come is shown before it. So
        // the end is that pts, but at most a frame after the last pts used
        // (and after the last decode time), and never before the floor.
        let frame = i64::from(self.frame_duration);
        let mut next = floor - 1 + u64::from(self.frame_duration);
        if let Some(&p) = merged[used..].first() {
            next = next.min(u64::try_from(p).unwrap_or(0));
        }
        if let Some(last) = self.last_used {
            next = next.min(u64::try_from(last.saturating_add(frame)).unwrap_or(0));
        }
        self.end_dts = next.max(floor);
        self.pending[..keep].copy_from_slice(&merged[used..]);
        self.pending_len = keep;
    }
}
