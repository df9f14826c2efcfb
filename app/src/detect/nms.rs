//! Candidate collection and per-class non-maximum suppression, with no
//! allocation.
//!
//! Every detector decodes its raw outputs into a [`Candidates`] list of fixed
//! capacity, then [`Candidates::nms_into`] keeps the best box of each cluster
//! of same-class boxes and writes the survivors, best first, into
//! [`Detections`]. When more candidates pass the score threshold than the list
//! holds (a low threshold on a busy scene), the list keeps the highest scores:
//! it is a min-heap, so a new candidate replaces the current minimum in
//! O(log n), and the evictions are counted for metrics.

use super::{BBox, Detection, Detections};

/// Default capacity of a detector's candidate list: far more boxes than a
/// sane threshold lets through on one picture, small enough (about 24 KiB)
/// that NMS over a full list stays well under a millisecond.
pub const MAX_CANDIDATES: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Entry {
    det: Detection,
    suppressed: bool,
}

/// A fixed-capacity list of scored boxes awaiting NMS.
#[derive(Debug)]
pub struct Candidates<const N: usize> {
    /// A binary min-heap on score while collecting; sorted best first
    /// during [`Candidates::nms_into`].
    heap: heapless::Vec<Entry, N>,
    evicted: u64,
}

impl<const N: usize> Default for Candidates<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// `a` ranks below `b` (lower score; ties broken by class then position so
/// results do not depend on the order candidates arrive in).
fn below(a: &Detection, b: &Detection) -> bool {
    let key = |d: &Detection| (d.score, d.class_id, d.bbox.y0, d.bbox.x0);
    match a.score.total_cmp(&b.score) {
        std::cmp::Ordering::Equal => key(a) > key(b),
        other => other.is_lt(),
    }
}

impl<const N: usize> Candidates<N> {
    /// An empty list.
    pub const fn new() -> Self {
        Candidates {
            heap: heapless::Vec::new(),
            evicted: 0,
        }
    }

    /// Candidates currently held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no candidate is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Candidates dropped because the list was full, since creation: either
    /// the pushed one or the minimum it replaced.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets all candidates (the eviction count stays).
    pub fn clear(&mut self) {
        self.heap.clear();
    }

    /// Adds a candidate; when full, it replaces the lowest-scoring one if it
    /// scores higher, else it is dropped.
    pub fn push(&mut self, class_id: u16, score: f32, bbox: BBox) {
        let entry = Entry {
            det: Detection {
                class_id,
                score,
                bbox,
            },
            suppressed: false,
        };
        match self.heap.push(entry) {
            Ok(()) => self.sift_up(self.heap.len() - 1),
            Err(entry) => {
                self.evicted += 1;
                if N > 0 && below(&self.heap[0].det, &entry.det) {
                    self.heap[0] = entry;
                    self.sift_down(0);
                }
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !below(&self.heap[i].det, &self.heap[parent].det) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let len = self.heap.len();
        loop {
            let mut least = i;
            for child in [2 * i + 1, 2 * i + 2] {
                if child < len && below(&self.heap[child].det, &self.heap[least].det) {
                    least = child;
                }
            }
            if least == i {
                break;
            }
            self.heap.swap(i, least);
            i = least;
        }
    }

    /// Per-class NMS: sorts the candidates best first and keeps a box unless
    /// a better kept box of the same class overlaps it with IoU above
    /// `iou_threshold`. Writes the kept ones into `out` (cleared first; at most
    /// its capacity, best first) and empties the list.
    pub fn nms_into(&mut self, iou_threshold: f32, out: &mut Detections) {
        out.clear();
        // Unstable sort: the stable one allocates a buffer. `below` is a
        // total order, so the result is still deterministic.
        self.heap.sort_unstable_by(|a, b| {
            if below(&a.det, &b.det) {
                std::cmp::Ordering::Greater
            } else if below(&b.det, &a.det) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let n = self.heap.len();
        for i in 0..n {
            if self.heap[i].suppressed {
                continue;
            }
            let kept = self.heap[i].det;
            if out.push(kept).is_err() {
                break;
            }
            for later in self.heap[i + 1..].iter_mut() {
                if !later.suppressed
                    && later.det.class_id == kept.class_id
                    && kept.bbox.iou(&later.det.bbox) > iou_threshold
                {
                    later.suppressed = true;
                }
            }
        }
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::MAX_DETECTIONS;

    fn bbox(x0: f32, y0: f32, x1: f32, y1: f32) -> BBox {
        BBox { x0, y0, x1, y1 }
    }

    #[test]
    fn overlapping_same_class_boxes_merge_into_the_best() {
        let mut c = Candidates::<16>::new();
        c.push(1, 0.7, bbox(0.1, 0.1, 0.5, 0.5));
        c.push(1, 0.9, bbox(0.12, 0.1, 0.52, 0.5)); // IoU ~0.9 with the first
        c.push(1, 0.8, bbox(0.6, 0.6, 0.9, 0.9)); // far away: kept
        c.push(2, 0.6, bbox(0.1, 0.1, 0.5, 0.5)); // other class: kept
        let mut out = Detections::new();
        c.nms_into(0.6, &mut out);
        let got: Vec<_> = out.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, [(1, 0.9), (1, 0.8), (2, 0.6)]);
        assert!(c.is_empty());
    }

    #[test]
    fn threshold_is_exclusive_and_a_parameter() {
        // Two boxes with IoU exactly 1/3 (area 2 each, overlap 1, union 3).
        let push = |c: &mut Candidates<4>| {
            c.push(0, 0.9, bbox(0.0, 0.0, 2.0, 1.0));
            c.push(0, 0.8, bbox(1.0, 0.0, 3.0, 1.0));
        };
        let mut c = Candidates::<4>::new();
        let mut out = Detections::new();
        push(&mut c);
        c.nms_into(0.6, &mut out);
        assert_eq!(out.len(), 2);
        push(&mut c);
        c.nms_into(0.3, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
    }

    #[test]
    fn suppressed_boxes_do_not_suppress_others() {
        // A overlaps B, B overlaps C, A does not overlap C: A and C survive.
        let mut c = Candidates::<4>::new();
        c.push(0, 0.9, bbox(0.0, 0.0, 1.0, 1.0));
        c.push(0, 0.8, bbox(0.2, 0.0, 1.2, 1.0));
        c.push(0, 0.7, bbox(0.9, 0.0, 1.9, 1.0));
        let mut out = Detections::new();
        c.nms_into(0.5, &mut out);
        let scores: Vec<_> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.7]);
    }

    #[test]
    fn full_list_keeps_the_highest_scores() {
        let mut c = Candidates::<8>::new();
        // 100 disjoint boxes in a scrambled score order.
        for i in 0..100u32 {
            let score = ((i * 37) % 100) as f32 / 100.0;
            let x = i as f32;
            c.push(3, score, bbox(x, 0.0, x + 0.5, 1.0));
        }
        assert_eq!(c.len(), 8);
        assert_eq!(c.evicted(), 92);
        let mut out = Detections::new();
        c.nms_into(0.5, &mut out);
        let scores: Vec<_> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92]);
    }

    #[test]
    fn output_is_capped_at_max_detections_best_first() {
        let mut c = Candidates::<MAX_CANDIDATES>::new();
        for i in 0..200u16 {
            let x = f32::from(i);
            c.push(i % 5, f32::from(i) / 200.0, bbox(x, 0.0, x + 0.5, 1.0));
        }
        let mut out = Detections::new();
        c.nms_into(0.5, &mut out);
        assert_eq!(out.len(), MAX_DETECTIONS);
        assert_eq!(out[0].score, 199.0 / 200.0);
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(out[MAX_DETECTIONS - 1].score, 136.0 / 200.0);
    }

    #[test]
    fn empty_list_gives_nothing() {
        let mut c = Candidates::<4>::new();
        let mut out = Detections::new();
        out.push(Detection {
            class_id: 1,
            score: 1.0,
            bbox: bbox(0.0, 0.0, 1.0, 1.0),
        })
        .unwrap();
        c.nms_into(0.5, &mut out);
        assert!(out.is_empty());
    }
}
