//! Events: "an object of a reported class appeared", not "a frame contained
//! an object".
//!
//! A per-camera [`Tracker`] remembers, in a fixed-capacity list, the objects
//! it has seen recently (class and box). A detection that overlaps a
//! remembered object of the same class only refreshes it; one that matches
//! nothing is a new object and raises an [`Event`]. An object unseen for
//! `track_timeout` is forgotten, with a `>=` test on a monotonic clock that
//! also survives the clock jumping backwards (the Python predecessor's
//! `now == end + 1` test kept a recording forever when a second was skipped;
//! no expiry here compares for equality). Events go into the [`EventRing`],
//! a fixed-capacity ring that evicts its oldest entry when full and counts it.

use crate::detect::{BBox, Detection};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Objects a tracker remembers per camera; when full, the least recently
/// seen is forgotten (and counted).
pub const MAX_TRACKS: usize = 64;

/// Overlap above which a detection is the same object as a remembered one.
pub const SAME_OBJECT_IOU: f32 = 0.3;

/// A detection event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    /// Increasing id, unique for the life of the process (starts at 1).
    pub id: u64,
    /// Index of the camera in the configuration.
    pub camera: usize,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub unix_ms: i64,
    /// Stream time of the picture in microseconds.
    pub pts_us: i64,
    /// Class id in the detector's table.
    pub class_id: u16,
    /// Class name.
    pub class_name: &'static str,
    /// Detection score.
    pub score: f32,
    /// Box, normalised to the picture.
    pub bbox: BBox,
}

#[derive(Clone, Copy, Debug)]
struct Track {
    class_id: u16,
    bbox: BBox,
    last_seen_ms: u64,
}

/// Remembers the objects one camera currently sees.
#[derive(Debug)]
pub struct Tracker {
    tracks: heapless::Vec<Track, MAX_TRACKS>,
    timeout_ms: u64,
    evicted: u64,
}

impl Tracker {
    /// A tracker that forgets an object after `timeout` unseen.
    pub fn new(timeout: std::time::Duration) -> Self {
        Tracker {
            tracks: heapless::Vec::new(),
            timeout_ms: timeout.as_millis() as u64,
            evicted: 0,
        }
    }

    /// Feeds one picture's detections seen at monotonic time `now_ms`; calls
    /// `new_object` for each detection that is a new object.
    pub fn update(
        &mut self,
        detections: &[Detection],
        now_ms: u64,
        mut new_object: impl FnMut(&Detection),
    ) {
        self.expire(now_ms);
        for d in detections {
            let same = self
                .tracks
                .iter_mut()
                .filter(|t| t.class_id == d.class_id)
                .map(|t| (t.bbox.iou(&d.bbox), t))
                .filter(|(iou, _)| *iou >= SAME_OBJECT_IOU)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match same {
                Some((_, t)) => {
                    t.bbox = d.bbox;
                    t.last_seen_ms = now_ms;
                }
                None => {
                    let track = Track {
                        class_id: d.class_id,
                        bbox: d.bbox,
                        last_seen_ms: now_ms,
                    };
                    if let Err(track) = self.tracks.push(track) {
                        // Full: forget the least recently seen object.
                        if let Some(oldest) =
                            (0..self.tracks.len()).min_by_key(|&i| self.tracks[i].last_seen_ms)
                        {
                            self.tracks[oldest] = track;
                            self.evicted += 1;
                        }
                    }
                    new_object(d);
                }
            }
        }
    }

    /// Forgets objects unseen for at least the timeout. A clock that went
    /// backwards (now before last seen) restarts that object's timeout from
    /// now, so a jump can delay an expiry by at most one timeout, never
    /// indefinitely.
    pub fn expire(&mut self, now_ms: u64) {
        let timeout = self.timeout_ms;
        for t in self.tracks.iter_mut() {
            if now_ms < t.last_seen_ms {
                t.last_seen_ms = now_ms;
            }
        }
        self.tracks.retain(|t| now_ms - t.last_seen_ms < timeout);
    }

    /// Objects remembered now.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Objects forgotten early because the list was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// The in-memory event history, newest last, of fixed capacity.
pub struct EventRing {
    events: Mutex<VecDeque<Event>>,
    capacity: usize,
    next_id: AtomicU64,
    evicted: AtomicU64,
}

impl EventRing {
    /// A ring holding the last `capacity` (at least 1) events.
    pub fn new(capacity: usize) -> Self {
        EventRing::starting_at(capacity, 1)
    }

    /// A ring whose first event gets id `first_id` (at least 1): ids continue
    /// after those of a store that outlives the process.
    pub fn starting_at(capacity: usize, first_id: u64) -> Self {
        let capacity = capacity.max(1);
        EventRing {
            events: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            next_id: AtomicU64::new(first_id.max(1)),
            evicted: AtomicU64::new(0),
        }
    }

    /// Stores `event` under a new id (returned); evicts the oldest when full.
    pub fn push(&self, mut event: Event) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        event.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if events.len() == self.capacity {
            events.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        events.push_back(event);
        event.id
    }

    /// Copies up to `limit` events with id greater than `after`, oldest
    /// first, into `out` (cleared first).
    pub fn after(&self, after: u64, limit: usize, out: &mut Vec<Event>) {
        out.clear();
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend(events.iter().filter(|e| e.id > after).take(limit).copied());
    }

    /// Copies the newest `limit` events (of `camera` only, when given),
    /// newest first, into `out` (cleared first).
    pub fn latest(&self, camera: Option<usize>, limit: usize, out: &mut Vec<Event>) {
        out.clear();
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        out.extend(
            events
                .iter()
                .rev()
                .filter(|e| camera.is_none_or(|c| e.camera == c))
                .take(limit)
                .copied(),
        );
    }

    /// The id of the newest event ever stored (0 before the first).
    pub fn latest_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events evicted because the ring was full.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn det(class_id: u16, x: f32) -> Detection {
        Detection {
            class_id,
            score: 0.9,
            bbox: BBox {
                x0: x,
                y0: 0.1,
                x1: x + 0.2,
                y1: 0.5,
            },
        }
    }

    fn count(t: &mut Tracker, dets: &[Detection], now: u64) -> usize {
        let mut n = 0;
        t.update(dets, now, |_| n += 1);
        n
    }

    #[test]
    fn one_event_per_object_not_per_frame() {
        let mut t = Tracker::new(Duration::from_secs(5));
        assert_eq!(count(&mut t, &[det(1, 0.1)], 0), 1);
        for ms in (200..4000).step_by(200) {
            // The object drifts slowly; still the same object.
            assert_eq!(count(&mut t, &[det(1, 0.1 + ms as f32 / 100_000.0)], ms), 0);
        }
        // A second object of another class, and one far away of the same class.
        assert_eq!(
            count(&mut t, &[det(1, 0.1), det(3, 0.1), det(1, 0.7)], 4000),
            2
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn expiry_is_at_least_the_timeout_even_across_gaps() {
        let mut t = Tracker::new(Duration::from_millis(1000));
        count(&mut t, &[det(1, 0.1)], 10_000);
        t.expire(10_999);
        assert_eq!(t.len(), 1);
        t.expire(11_000); // exactly the timeout: gone (>=, not ==)
        assert_eq!(t.len(), 0);
        count(&mut t, &[det(1, 0.1)], 20_000);
        t.expire(25_000_000); // a skipped stretch far past the end still expires
        assert!(t.is_empty());
    }

    #[test]
    fn a_backward_clock_jump_delays_expiry_by_at_most_one_timeout() {
        let mut t = Tracker::new(Duration::from_millis(1000));
        count(&mut t, &[det(1, 0.1)], 1_000_000);
        t.expire(5_000); // clock jumped back by about 1000 s
        assert_eq!(t.len(), 1);
        t.expire(6_000);
        assert!(
            t.is_empty(),
            "object must expire one timeout after the jump"
        );
        // And the same object returning after expiry is a new event.
        assert_eq!(count(&mut t, &[det(1, 0.1)], 6_001), 1);
    }

    #[test]
    fn a_full_tracker_forgets_the_least_recent_object() {
        let mut t = Tracker::new(Duration::from_secs(60));
        for i in 0..MAX_TRACKS as u64 {
            count(&mut t, &[det(i as u16 + 1, 0.1)], i);
        }
        assert_eq!(count(&mut t, &[det(999, 0.1)], 1000), 1);
        assert_eq!(t.len(), MAX_TRACKS);
        assert_eq!(t.evicted(), 1);
        // Class 1 (seen at t=0) was forgotten: it is new again.
        assert_eq!(count(&mut t, &[det(1, 0.1)], 1001), 1);
    }

    #[test]
    fn ring_evicts_oldest_and_pages_by_id() {
        let ring = EventRing::new(3);
        let e = Event {
            id: 0,
            camera: 0,
            unix_ms: 0,
            pts_us: 0,
            class_id: 1,
            class_name: "person",
            score: 0.9,
            bbox: BBox {
                x0: 0.0,
                y0: 0.0,
                x1: 1.0,
                y1: 1.0,
            },
        };
        let ids: Vec<u64> = (0..5).map(|_| ring.push(e)).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!((ring.len(), ring.evicted()), (3, 2));
        let mut out = Vec::new();
        ring.after(0, 10, &mut out);
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        ring.after(3, 1, &mut out);
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4]);
        assert_eq!(ring.latest_id(), 5);
        ring.push(Event { camera: 1, ..e });
        ring.latest(None, 2, &mut out);
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![6, 5]);
        ring.latest(Some(0), 5, &mut out);
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![5, 4]);
        ring.latest(Some(1), 5, &mut out);
        assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), vec![6]);
    }
}
