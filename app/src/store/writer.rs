//! The events thread: turns each event into an annotated snapshot file and
//! a stored record, committed in batches.
//!
//! Inference workers only copy the picture into a buffer of the fixed
//! snapshot pool and queue an [`EventJob`] (the queue is bounded; when full
//! the newest job is dropped and counted). This one thread, fixed at start,
//! draws the boxes, encodes the JPEG into its one preallocated buffer, writes
//! and syncs the file, returns the buffer to the pool, and adds the record to
//! the batch. A batch is committed when it is full, when its oldest event has
//! waited `flush_after`, and at shutdown; every path empties it. Retention
//! also runs on its own once a minute, so events age out of a store that
//! receives none.

use super::{now_unix_ms, Batch, EventRecord, Store};
use crate::detect::BBox;
use crate::events::Event;
use crate::metrics::OutputMetrics;
use crate::pool::Lease;
use crate::queue::{BoundedQueue, PopError};
use crate::snapshot::{JpegWriter, SnapshotBuf};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Boxes drawn on one snapshot at most (the event's own first).
pub const MAX_BOXES: usize = 16;

/// How often retention runs when no events arrive.
const IDLE_RETENTION: Duration = Duration::from_secs(60);

/// One box to draw: where, the class name and the score.
#[derive(Clone, Copy, Debug)]
pub struct DrawnBox {
    /// Normalised box.
    pub bbox: BBox,
    /// Class name.
    pub label: &'static str,
    /// Score.
    pub score: f32,
}

/// An event on its way to the store.
pub struct EventJob {
    /// The event, with its id.
    pub event: Event,
    /// The clip the event belongs to (the id of the event that opened it),
    /// when recording is on.
    pub clip: Option<u64>,
    /// The picture, when the snapshot pool had a buffer.
    pub snapshot: Option<Lease<SnapshotBuf>>,
    /// The boxes to draw: the event's object first (highlighted), then the
    /// other detections of the same picture.
    pub boxes: heapless::Vec<DrawnBox, MAX_BOXES>,
}

/// The events thread's queue.
pub type JobQueue = BoundedQueue<EventJob>;

/// What the events thread needs.
pub struct EventWriter {
    /// The store.
    pub store: Arc<Store>,
    /// Jobs from the inference workers.
    pub jobs: Arc<JobQueue>,
    /// Camera names by index.
    pub cameras: Arc<[String]>,
    /// The batch (its capacity is the batch size).
    pub batch: Batch,
    /// The JPEG encoder and its buffer.
    pub jpeg: JpegWriter,
    /// Commit a batch whose oldest event has waited this long.
    pub flush_after: Duration,
    /// Counters for the status page and metrics.
    pub metrics: Arc<OutputMetrics>,
    /// Woken after each commit (the upstream drainers wait on it).
    pub committed: Arc<tokio::sync::Notify>,
}

impl EventWriter {
    /// Runs until the job queue is closed and drained, then commits what is
    /// left.
    pub fn run(mut self) {
        let mut oldest: Option<Instant> = None;
        let mut last_retention = Instant::now();
        loop {
            let wait = match oldest {
                Some(t) => self.flush_after.saturating_sub(t.elapsed()),
                None => Duration::from_millis(500),
            };
            match self.jobs.pop_timeout(wait) {
                Ok(job) => {
                    self.take(job);
                    oldest.get_or_insert_with(Instant::now);
                    if self.batch.is_full() {
                        self.flush("size");
                        oldest = None;
                    }
                }
                Err(PopError::Timeout) => {}
                Err(PopError::Closed) => break,
            }
            if oldest.is_some_and(|t| t.elapsed() >= self.flush_after) {
                self.flush("time");
                oldest = None;
            }
            if last_retention.elapsed() >= IDLE_RETENTION {
                last_retention = Instant::now();
                if let Err(e) = self.store.apply_retention(now_unix_ms()) {
                    log::error!("{e}");
                }
            }
        }
        self.flush("shutdown");
    }

    /// Commits the batch (if any). The store empties it whatever happens.
    fn flush(&mut self, why: &str) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len();
        match self.store.commit(&mut self.batch, now_unix_ms()) {
            Ok(report) => {
                log::debug!(
                    "event store: committed {n} events ({why}); retention deleted {}, outbox dropped {}",
                    report.deleted,
                    report.outbox_dropped
                );
                self.committed.notify_waiters();
            }
            Err(e) => log::error!("{e}; {n} events lost"),
        }
        debug_assert!(self.batch.is_empty());
    }

    /// Writes the job's snapshot and adds its record to the batch.
    fn take(&mut self, job: EventJob) {
        let EventJob {
            event,
            clip,
            snapshot,
            boxes,
        } = job;
        let snapshot_bytes = match snapshot {
            Some(mut snap) => {
                let written = self.write_snapshot(&mut snap, event.id, &boxes);
                // The buffer goes back to the pool before the commit waits.
                drop(snap);
                match written {
                    Ok(n) => {
                        self.metrics.snapshots_written.inc();
                        n
                    }
                    Err(e) => {
                        self.metrics.snapshots_failed.inc();
                        log::warn!("event {}: no snapshot: {e}", event.id);
                        0
                    }
                }
            }
            None => 0,
        };
        let record = EventRecord {
            id: event.id,
            camera: self.cameras.get(event.camera).cloned().unwrap_or_default(),
            unix_ms: event.unix_ms,
            pts_us: event.pts_us,
            class_id: event.class_id,
            class: event.class_name.to_string(),
            score: event.score,
            bbox: [event.bbox.x0, event.bbox.y0, event.bbox.x1, event.bbox.y1],
            snapshot_bytes,
            clip,
        };
        if let Err(e) = self.batch.push(&record) {
            // The loop flushes a full batch before taking the next job, so
            // this is a record too long to store: counted, never grown.
            self.metrics.events_not_stored.inc();
            log::error!("event {}: not stored: {e:?}", event.id);
            if snapshot_bytes > 0 {
                let _ = std::fs::remove_file(self.store.snapshot_path(event.id));
            }
        }
    }

    /// Draws, encodes and writes the snapshot of event `id`; its size.
    fn write_snapshot(
        &mut self,
        snap: &mut SnapshotBuf,
        id: u64,
        boxes: &[DrawnBox],
    ) -> Result<u32, String> {
        // The others first, so the event's own box is drawn on top.
        for (i, b) in boxes.iter().enumerate().rev() {
            snap.draw_detection(&b.bbox, b.label, b.score, i == 0);
        }
        let jpeg = self.jpeg.encode(snap).map_err(|e| e.to_string())?;
        let path = self.store.snapshot_path(id);
        let mut file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        // Synced before the record that names it is committed.
        file.write_all(jpeg)
            .and_then(|()| file.sync_data())
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                format!("cannot write {}: {e}", path.display())
            })?;
        Ok(jpeg.len() as u32)
    }
}
