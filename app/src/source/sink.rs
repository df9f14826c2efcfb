//! The hand-off from a source to its camera's decoder thread.
//!
//! A source asks the [`PacketSink`] for a buffer, fills it with one access
//! unit and sends it. The sink owns the drop policy, so every source behaves
//! alike: an empty pool, an oversize unit or a full queue drops that unit
//! (counted by reason) and then everything up to the next key frame, because
//! the decoder cannot use inter frames whose references were lost. The first
//! unit after such a gap, or after a reconnect, carries `discontinuity`, which
//! tells the decoder to reset.

use crate::metrics::{CameraMetrics, DropReason};
use crate::packet::{Codec, PacketBuf};
use crate::pool::{Lease, Pool};
use crate::queue::BoundedQueue;
use std::sync::Arc;

/// A queue of access units to one decoder thread.
pub type PacketQueue = BoundedQueue<Lease<PacketBuf>>;

/// Where one camera's source delivers access units.
pub struct PacketSink {
    pool: Pool<PacketBuf>,
    queue: Arc<PacketQueue>,
    metrics: Arc<CameraMetrics>,
    gap: bool,
}

impl PacketSink {
    /// A sink lending from `pool` and queueing to `queue`.
    pub fn new(
        pool: Pool<PacketBuf>,
        queue: Arc<PacketQueue>,
        metrics: Arc<CameraMetrics>,
    ) -> Self {
        PacketSink {
            pool,
            queue,
            metrics,
            // The decoder needs a key frame first.
            gap: true,
        }
    }

    /// The camera's metrics, for state changes and reconnect counts.
    pub fn metrics(&self) -> &CameraMetrics {
        &self.metrics
    }

    /// Lends an empty packet buffer for a unit with this codec, time and key
    /// flag, or `None` when the unit must be skipped: the pool is empty (the
    /// unit is dropped and counted) or a key frame is awaited.
    pub fn begin(&mut self, codec: Codec, pts_us: i64, keyframe: bool) -> Option<Lease<PacketBuf>> {
        if self.gap && !keyframe {
            self.metrics
                .packets_dropped
                .inc(DropReason::AwaitingKeyframe);
            return None;
        }
        match self.pool.try_take() {
            Some(mut p) => {
                p.begin(codec, pts_us, keyframe);
                Some(p)
            }
            None => {
                self.drop_unit(DropReason::PoolEmpty);
                None
            }
        }
    }

    /// Whether a unit begun now would be lent a buffer and queued: the pool
    /// has a free buffer and the queue has room. Unpaced file sources wait
    /// for this instead of reading units only to drop them.
    pub fn has_room(&self) -> bool {
        let pool = self.pool.stats();
        pool.in_use < pool.capacity && self.queue.len() < self.queue.capacity()
    }

    /// Abandons a unit that could not be filled (oversize, malformed).
    pub fn abandon(&mut self, packet: Lease<PacketBuf>, why: DropReason) {
        drop(packet);
        self.drop_unit(why);
    }

    /// Queues a filled unit to the decoder.
    pub fn send(&mut self, mut packet: Lease<PacketBuf>) {
        if self.gap && !packet.keyframe {
            self.metrics
                .packets_dropped
                .inc(DropReason::AwaitingKeyframe);
            return;
        }
        packet.discontinuity = self.gap;
        self.gap = false;
        self.metrics.packets_received.inc();
        self.metrics.bytes_received.add(packet.len() as u64);
        if let Some(dropped) = self.queue.push(packet) {
            drop(dropped);
            self.drop_unit(DropReason::QueueFull);
        }
    }

    /// Marks a break in the stream (reconnect, source restart, lost data):
    /// units are skipped until the next key frame, which resets the decoder.
    pub fn discontinuity(&mut self) {
        self.gap = true;
    }

    fn drop_unit(&mut self, why: DropReason) {
        self.metrics.packets_dropped.inc(why);
        self.gap = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::WhenFull;

    fn sink(
        pool_size: usize,
        queue_size: usize,
    ) -> (PacketSink, Arc<PacketQueue>, Arc<CameraMetrics>) {
        let pool = Pool::with("packets", pool_size, || PacketBuf::with_capacity(16));
        let q = Arc::new(PacketQueue::new(queue_size, WhenFull::DropNewest));
        let m = Arc::new(CameraMetrics::new("c"));
        (PacketSink::new(pool, q.clone(), m.clone()), q, m)
    }

    fn send(s: &mut PacketSink, key: bool) -> bool {
        match s.begin(Codec::H264, 0, key) {
            Some(mut p) => {
                p.extend_from_slice(&[0, 0, 0, 1, 0x65]).unwrap();
                s.send(p);
                true
            }
            None => false,
        }
    }

    #[test]
    fn waits_for_a_key_frame_then_marks_the_discontinuity() {
        let (mut s, q, m) = sink(4, 4);
        assert!(!send(&mut s, false));
        assert!(send(&mut s, true));
        assert!(send(&mut s, false));
        assert_eq!(m.packets_dropped.get(DropReason::AwaitingKeyframe), 1);
        assert!(q.try_pop().unwrap().discontinuity);
        assert!(!q.try_pop().unwrap().discontinuity);
    }

    #[test]
    fn empty_pool_drops_until_the_next_key_frame() {
        let (mut s, q, m) = sink(1, 4);
        assert!(send(&mut s, true));
        assert!(!send(&mut s, false)); // pool empty: the lease is in the queue
        assert_eq!(m.packets_dropped.get(DropReason::PoolEmpty), 1);
        drop(q.try_pop());
        assert!(!send(&mut s, false)); // inter frame after a gap: skipped
        assert!(send(&mut s, true));
        assert!(q.try_pop().unwrap().discontinuity);
    }
}
