//! The per-camera packet ring: the last seconds of compressed access units,
//! in memory fixed at start, always starting at a key frame.
//!
//! One byte arena and one index of `max_units` entries are allocated by
//! [`PacketRing::new`]; [`PacketRing::push`] copies each unit into the arena
//! once and never allocates. The arena is a byte ring whose positions are
//! counted on a `u64` that never wraps: a unit at virtual position `p` lives
//! at `p % capacity`, a unit that would straddle the end starts at the next
//! lap instead (the skipped tail is counted as waste), and every unit kept
//! lies within the last `capacity` virtual bytes, so no two kept units
//! overlap. Pushing evicts the oldest units until the new one fits.
//!
//! Inter frames are useless without the key frame they hang from, so the
//! ring never starts or continues a chain whose references are gone:
//! evicting a key frame also evicts the inter frames after it, and after a
//! unit is refused (larger than the arena, or an inter frame that would need
//! its own key frame evicted) every inter frame is refused until the next key
//! frame.
//!
//! Units get consecutive sequence numbers. A [`Cursor`] names the next unit
//! a reader wants; [`PacketRing::read`] tells a reader that fell so far
//! behind that its next unit was evicted ([`ReadError::Lapped`], with how
//! many it missed) or whose ring was [`reset`](PacketRing::reset)
//! ([`ReadError::Reset`]), so it can close its clip early instead of reading
//! bytes that were overwritten.

use std::collections::VecDeque;

/// One unit's place in the arena and its timing.
#[derive(Clone, Copy, Debug)]
struct Unit {
    /// Virtual byte position of the first byte (arena offset is this modulo
    /// the capacity).
    start: u64,
    len: usize,
    pts_us: i64,
    key: bool,
}

/// Bytes a ring of `capacity_bytes` and `max_units` entries allocates (the
/// memory budget's line for it).
pub const fn bytes_for(capacity_bytes: usize, max_units: usize) -> usize {
    capacity_bytes + max_units * std::mem::size_of::<Unit>()
}

/// What [`PacketRing::push`] did with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored under sequence number `seq`, after evicting `evicted` units.
    Stored {
        /// The unit's sequence number.
        seq: u64,
        /// Units evicted to make room (or because they lost their key frame).
        evicted: usize,
    },
    /// Larger than the whole arena: refused; inter frames are refused until
    /// the next key frame.
    Oversize,
    /// An inter frame after a refused unit, a reset or an empty start:
    /// refused until the next key frame.
    AwaitingKey,
    /// An inter frame whose group of pictures no longer fits: storing it
    /// would evict its own key frame. Refused, and so are the inter frames
    /// after it, until the next key frame.
    GopTooLong,
}

/// Counters of one ring since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Units stored.
    pub stored: u64,
    /// Units evicted (for room, or as inter frames whose key frame went).
    pub evicted: u64,
    /// Units refused as larger than the arena.
    pub oversize: u64,
    /// Inter frames refused while waiting for a key frame.
    pub awaiting_key: u64,
    /// Inter frames refused because their group of pictures outgrew the ring.
    pub gop_too_long: u64,
    /// Arena bytes skipped because a unit would have straddled the end.
    pub wasted_bytes: u64,
    /// Calls to [`PacketRing::reset`].
    pub resets: u64,
}

/// A reader's position: the sequence number of the next unit it wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    seq: u64,
    generation: u64,
}

impl Cursor {
    /// Sequence number of the next unit this cursor reads.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Why a cursor cannot be read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Units the reader had not read yet were evicted; `missed` of them.
    Lapped {
        /// Units evicted before the reader got to them.
        missed: u64,
    },
    /// The ring was reset (a stream discontinuity) after the cursor was made.
    Reset,
}

/// One stored access unit, borrowed from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitRef<'a> {
    /// The access unit's bytes, as received.
    pub data: &'a [u8],
    /// Presentation time in microseconds of stream time.
    pub pts_us: i64,
    /// Whether the unit is a key frame.
    pub key: bool,
    /// The unit's sequence number.
    pub seq: u64,
}

/// The last access units of one camera, in fixed memory.
pub struct PacketRing {
    arena: Box<[u8]>,
    units: VecDeque<Unit>,
    max_units: usize,
    /// Virtual position where the next unit goes (before any skip).
    write_pos: u64,
    /// Sequence number the next stored unit gets.
    next_seq: u64,
    /// Sequence number of the newest key frame (meaningful while non-empty).
    newest_key_seq: u64,
    awaiting_key: bool,
    generation: u64,
    stats: RingStats,
}

impl PacketRing {
    /// A ring of `capacity_bytes` (at least 1) of unit data and at most
    /// `max_units` (at least 1) units. The only allocation it makes.
    pub fn new(capacity_bytes: usize, max_units: usize) -> Self {
        let max_units = max_units.max(1);
        PacketRing {
            arena: crate::pool::resident(capacity_bytes.max(1)),
            units: VecDeque::with_capacity(max_units),
            max_units,
            write_pos: 0,
            next_seq: 0,
            newest_key_seq: 0,
            awaiting_key: true,
            generation: 0,
            stats: RingStats::default(),
        }
    }

    /// Copies one access unit in, evicting the oldest units as needed.
    pub fn push(&mut self, data: &[u8], pts_us: i64, key: bool) -> PushOutcome {
        let cap = self.arena.len() as u64;
        let len = data.len() as u64;
        if len > cap {
            self.stats.oversize += 1;
            self.awaiting_key = true;
            return PushOutcome::Oversize;
        }
        if !key && self.awaiting_key {
            self.stats.awaiting_key += 1;
            return PushOutcome::AwaitingKey;
        }
        let offset = self.write_pos % cap;
        let waste = if offset + len > cap { cap - offset } else { 0 };
        let start = self.write_pos + waste;
        let end = start + len;
        // Every unit kept must lie in the last `cap` virtual bytes.
        let keep_from = end.saturating_sub(cap);
        if !key {
            // Not awaiting a key, so the ring holds this unit's key frame.
            let k = (self.newest_key_seq - self.head_seq()) as usize;
            if self.units[k].start < keep_from || self.units.len() - k >= self.max_units {
                self.stats.gop_too_long += 1;
                self.awaiting_key = true;
                return PushOutcome::GopTooLong;
            }
        }
        let before = self.units.len();
        while let Some(oldest) = self.units.front() {
            if oldest.start >= keep_from && self.units.len() < self.max_units {
                break;
            }
            self.units.pop_front();
        }
        while self.units.front().is_some_and(|u| !u.key) {
            self.units.pop_front();
        }
        let evicted = before - self.units.len();
        let at = (start % cap) as usize;
        self.arena[at..at + data.len()].copy_from_slice(data);
        self.units.push_back(Unit {
            start,
            len: data.len(),
            pts_us,
            key,
        });
        self.write_pos = end;
        let seq = self.next_seq;
        self.next_seq += 1;
        if key {
            self.newest_key_seq = seq;
            self.awaiting_key = false;
        }
        self.stats.stored += 1;
        self.stats.evicted += evicted as u64;
        self.stats.wasted_bytes += waste;
        PushOutcome::Stored { seq, evicted }
    }

    /// Where a clip that should start at stream time `t_us` starts: the
    /// newest key frame with pts at or before `t_us`. When every key frame
    /// held is newer (the ring does not reach back that far), the oldest one:
    /// a clip with less pre-roll beats no clip. When the ring is empty, the
    /// next unit stored, which is a key frame (an empty ring refuses inter
    /// frames).
    pub fn start_for(&self, t_us: i64) -> Cursor {
        let head = self.head_seq();
        let at = self
            .units
            .iter()
            .rposition(|u| u.key && u.pts_us <= t_us)
            .unwrap_or(0);
        self.cursor(head + at as u64)
    }

    /// The units from `cursor` to the newest, oldest first.
    pub fn iter_from(
        &self,
        cursor: Cursor,
    ) -> Result<impl Iterator<Item = UnitRef<'_>> + '_, ReadError> {
        let at = self.index(cursor)?;
        Ok(self
            .units
            .iter()
            .skip(at)
            .zip(cursor.seq..)
            .map(|(u, seq)| self.unit_ref(u, seq)))
    }

    /// The unit at `cursor` (advancing it), `Ok(None)` when the reader has
    /// read everything stored so far, or why it cannot read on.
    pub fn read(&self, cursor: &mut Cursor) -> Result<Option<UnitRef<'_>>, ReadError> {
        let at = self.index(*cursor)?;
        Ok(self.units.get(at).map(|u| {
            let unit = self.unit_ref(u, cursor.seq);
            cursor.seq += 1;
            unit
        }))
    }

    /// Drops every unit, at a stream discontinuity (camera reconnect): the
    /// next unit stored must be a key frame, and every existing cursor reads
    /// [`ReadError::Reset`].
    pub fn reset(&mut self) {
        self.units.clear();
        self.awaiting_key = true;
        self.generation += 1;
        self.stats.resets += 1;
    }

    /// The sequence number the next stored unit gets: a clip closed now
    /// holds the units before it.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Stream time from the oldest to the newest unit held, in µs (0 when
    /// fewer than two are held): how much pre-roll the ring can give.
    pub fn span_us(&self) -> i64 {
        match (self.units.front(), self.units.back()) {
            (Some(a), Some(b)) => b.pts_us.saturating_sub(a.pts_us).max(0),
            _ => 0,
        }
    }

    /// Arena bytes from the oldest unit held to the end of the newest.
    pub fn bytes_held(&self) -> u64 {
        self.units
            .front()
            .map_or(0, |u| self.write_pos.saturating_sub(u.start))
    }

    /// The newest unit's pts, if any.
    pub fn newest_pts(&self) -> Option<i64> {
        self.units.back().map(|u| u.pts_us)
    }

    /// Units held now.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether no unit is held.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    fn head_seq(&self) -> u64 {
        self.next_seq - self.units.len() as u64
    }

    fn cursor(&self, seq: u64) -> Cursor {
        Cursor {
            seq,
            generation: self.generation,
        }
    }

    fn index(&self, cursor: Cursor) -> Result<usize, ReadError> {
        if cursor.generation != self.generation {
            return Err(ReadError::Reset);
        }
        let head = self.head_seq();
        if cursor.seq < head {
            return Err(ReadError::Lapped {
                missed: head - cursor.seq,
            });
        }
        Ok((cursor.seq - head) as usize)
    }

    fn unit_ref(&self, u: &Unit, seq: u64) -> UnitRef<'_> {
        let at = (u.start % self.arena.len() as u64) as usize;
        UnitRef {
            data: &self.arena[at..at + u.len],
            pts_us: u.pts_us,
            key: u.key,
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::thread_counts;

    /// A unit whose bytes say which unit it is: `tag` repeated `len` times.
    fn unit(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    fn stored(o: PushOutcome) -> u64 {
        match o {
            PushOutcome::Stored { seq, .. } => seq,
            other => panic!("expected Stored, got {other:?}"),
        }
    }

    fn contents(r: &PacketRing) -> Vec<(u8, i64, bool)> {
        r.iter_from(r.start_for(i64::MIN))
            .unwrap()
            .map(|u| {
                assert!(u.data.iter().all(|&b| b == u.data[0]), "torn unit");
                (u.data[0], u.pts_us, u.key)
            })
            .collect()
    }

    #[test]
    fn units_read_back_in_order_with_their_bytes() {
        let mut r = PacketRing::new(100, 10);
        assert_eq!(r.push(&unit(9, 5), 0, false), PushOutcome::AwaitingKey);
        assert_eq!(stored(r.push(&unit(1, 10), 0, true)), 0);
        assert_eq!(stored(r.push(&unit(2, 20), 40, false)), 1);
        assert_eq!(stored(r.push(&[], 80, false)), 2);
        let got: Vec<_> = r
            .iter_from(r.start_for(0))
            .unwrap()
            .map(|u| (u.data.len(), u.pts_us, u.key, u.seq))
            .collect();
        assert_eq!(
            got,
            vec![(10, 0, true, 0), (20, 40, false, 1), (0, 80, false, 2)]
        );
        assert_eq!(r.stats().awaiting_key, 1);
    }

    #[test]
    fn eviction_keeps_the_ring_starting_at_a_key_frame() {
        // 100 bytes: K1 P P K2 P, each 20 bytes, then one more unit evicts K1
        // and must take K1's inter frames with it.
        let mut r = PacketRing::new(100, 16);
        for (i, key) in [true, false, false, true, false].into_iter().enumerate() {
            stored(r.push(&unit(i as u8, 20), i as i64, key));
        }
        assert_eq!(
            r.push(&unit(5, 20), 5, false),
            PushOutcome::Stored { seq: 5, evicted: 3 }
        );
        let c = contents(&r);
        assert_eq!(c.iter().map(|u| u.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(c[0].2, "the ring must start at a key frame");
        assert_eq!(r.stats().evicted, 3);
    }

    #[test]
    fn max_units_bounds_the_index_and_keeps_key_alignment() {
        let mut r = PacketRing::new(1000, 4);
        for (i, key) in [true, false, true, false].into_iter().enumerate() {
            stored(r.push(&unit(i as u8, 1), i as i64, key));
        }
        // A fifth unit evicts the oldest key frame and its inter frame.
        assert_eq!(
            r.push(&unit(4, 1), 4, true),
            PushOutcome::Stored { seq: 4, evicted: 2 }
        );
        assert_eq!(
            contents(&r).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn oversize_unit_is_refused_and_breaks_the_chain_until_a_key_frame() {
        let mut r = PacketRing::new(50, 16);
        stored(r.push(&unit(1, 10), 0, true));
        assert_eq!(r.push(&unit(2, 51), 1, false), PushOutcome::Oversize);
        // The next inter frame references the refused one: refused too.
        assert_eq!(r.push(&unit(3, 10), 2, false), PushOutcome::AwaitingKey);
        assert_eq!(r.push(&unit(4, 51), 3, true), PushOutcome::Oversize);
        assert_eq!(r.push(&unit(5, 10), 4, false), PushOutcome::AwaitingKey);
        stored(r.push(&unit(6, 50), 5, true)); // exactly the arena: fits
        stored(r.push(&unit(7, 10), 6, true));
        stored(r.push(&unit(8, 10), 7, false));
        assert_eq!(
            contents(&r).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![7, 8]
        );
        let s = r.stats();
        assert_eq!((s.oversize, s.awaiting_key), (2, 2));
    }

    #[test]
    fn wrap_around_skips_the_tail_and_counts_it() {
        let mut r = PacketRing::new(100, 16);
        stored(r.push(&unit(1, 40), 0, true));
        stored(r.push(&unit(2, 40), 1, true));
        // 20 bytes left at the end; 30 do not fit there: start at 0, evict
        // unit 1 (which occupied 0..40) and waste the 20-byte tail.
        assert_eq!(
            r.push(&unit(3, 30), 2, true),
            PushOutcome::Stored { seq: 2, evicted: 1 }
        );
        assert_eq!(r.stats().wasted_bytes, 20);
        // 30..40 is free, unit 2 (40..80) is in the way of a 20-byte unit.
        assert_eq!(
            r.push(&unit(4, 20), 3, true),
            PushOutcome::Stored { seq: 3, evicted: 1 }
        );
        assert_eq!(
            contents(&r).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![3, 4]
        );
        // Many laps of odd sizes: every unit reads back whole and its own.
        let mut r = PacketRing::new(1000, 64);
        for i in 0..5000u32 {
            let len = 7 + (i as usize * 13) % 60;
            stored(r.push(&unit((i % 250) as u8, len), i64::from(i), i % 3 == 0));
            let c = contents(&r);
            assert!(c.iter().all(|u| i64::from(u.0) == u.1 % 250));
            assert_eq!(c.last().unwrap().1, i64::from(i));
            assert!(c[0].2);
        }
        assert!(r.stats().wasted_bytes > 20);
    }

    #[test]
    fn a_group_of_pictures_longer_than_the_ring_refuses_its_tail() {
        let mut r = PacketRing::new(100, 16);
        stored(r.push(&unit(1, 30), 0, true));
        stored(r.push(&unit(2, 30), 1, false));
        stored(r.push(&unit(3, 30), 2, false));
        // Room only by evicting the key frame this unit depends on.
        assert_eq!(r.push(&unit(4, 30), 3, false), PushOutcome::GopTooLong);
        assert_eq!(r.push(&unit(5, 1), 4, false), PushOutcome::AwaitingKey);
        assert_eq!(
            contents(&r).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        stored(r.push(&unit(6, 30), 5, true));
        assert_eq!(
            contents(&r).iter().map(|u| u.0).collect::<Vec<_>>(),
            vec![6]
        );
        assert_eq!(r.stats().gop_too_long, 1);
    }

    #[test]
    fn start_for_picks_the_newest_key_frame_at_or_before_the_time() {
        let mut r = PacketRing::new(1000, 64);
        assert_eq!(r.start_for(0).seq(), 0, "empty: the next unit");
        // Key frames at 0, 2 s, 4 s; inter frames every 0.5 s.
        for i in 0..12i64 {
            stored(r.push(&unit(i as u8, 10), i * 500_000, i % 4 == 0));
        }
        assert_eq!(r.start_for(3_999_999).seq(), 4);
        assert_eq!(r.start_for(4_000_000).seq(), 8);
        assert_eq!(r.start_for(i64::MAX).seq(), 8);
        assert_eq!(r.start_for(-1).seq(), 0, "older than the ring: oldest key");
        let first = r.iter_from(r.start_for(2_500_000)).unwrap().next().unwrap();
        assert!(first.key);
        assert_eq!(first.pts_us, 2_000_000);
    }

    #[test]
    fn a_lapped_reader_is_told_how_many_units_it_missed() {
        let mut r = PacketRing::new(100, 16);
        stored(r.push(&unit(0, 25), 0, true));
        let mut c = r.start_for(0);
        assert_eq!(r.read(&mut c).unwrap().unwrap().data, &unit(0, 25)[..]);
        assert_eq!(r.read(&mut c), Ok(None));
        for i in 1..4u8 {
            stored(r.push(&unit(i, 25), i64::from(i), true));
        }
        assert_eq!(r.read(&mut c).unwrap().unwrap().pts_us, 1);
        // Four more 25-byte units evict units 0 to 3; 2 and 3 were unread, so
        // the reader is lapped, never handed overwritten bytes.
        for i in 4..8u8 {
            stored(r.push(&unit(i, 25), i64::from(i), true));
        }
        assert_eq!(r.read(&mut c), Err(ReadError::Lapped { missed: 2 }));
        assert!(r.iter_from(c).is_err());
        // A reader that kept up is not lapped.
        let mut fresh = r.start_for(i64::MIN);
        assert_eq!(r.read(&mut fresh).unwrap().unwrap().seq, 4);
    }

    #[test]
    fn reset_drops_everything_and_invalidates_readers() {
        let mut r = PacketRing::new(100, 16);
        stored(r.push(&unit(0, 10), 0, true));
        let mut old = r.start_for(0);
        r.reset();
        assert!(r.is_empty());
        assert_eq!(r.read(&mut old), Err(ReadError::Reset));
        let mut c = r.start_for(0);
        assert_eq!(r.read(&mut c), Ok(None));
        assert_eq!(r.push(&unit(1, 10), 5, false), PushOutcome::AwaitingKey);
        stored(r.push(&unit(2, 10), 6, true));
        let u = r.read(&mut c).unwrap().unwrap();
        assert!(u.key && u.pts_us == 6);
        assert_eq!(r.read(&mut old), Err(ReadError::Reset));
        assert_eq!(r.stats().resets, 1);
    }

    #[test]
    fn pushing_and_reading_allocate_nothing_after_new() {
        let data = unit(7, 1500);
        let mut r = PacketRing::new(64 * 1024, 256);
        let mut c = r.start_for(0);
        let before = thread_counts();
        let mut read = 0u64;
        for i in 0..10_000i64 {
            let len = 200 + (i as usize * 37) % 1300;
            r.push(&data[..len], i * 40_000, i % 50 == 0);
            if i % 7 == 0 {
                loop {
                    match r.read(&mut c) {
                        Ok(Some(_)) => read += 1,
                        Ok(None) => break,
                        Err(_) => c = r.start_for(i64::MIN),
                    }
                }
            }
        }
        let after = thread_counts();
        assert_eq!(after.ours - before.ours, 0, "allocations after new");
        assert!(read > 1000);
        assert_eq!(r.stats().stored, 10_000);
        assert_eq!(
            bytes_for(64 * 1024, 256),
            64 * 1024 + 256 * std::mem::size_of::<Unit>()
        );
    }
}
