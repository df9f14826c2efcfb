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
//!
//! It lives in the pipeline, not in the store, because it handles pictures
//! (snapshots, boxes, JPEG): the store only persists the records and files
//! it is handed.

use super::StartError;
use crate::clock::now_unix_ms;
use crate::config::Config;
use crate::detect::BBox;
use crate::events::Event;
use crate::metrics::{OutputMetrics, Registry};
use crate::pool::{Lease, Pool};
use crate::queue::{BoundedQueue, PopError, WhenFull};
use crate::snapshot::{JpegWriter, SnapshotBuf, SnapshotError};
use crate::store::{Batch, EventRecord, Store};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
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
            clock_unsynced: self.metrics.clock_synchronized.get() < 0.5,
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
    ) -> Result<u32, SnapshotWriteError> {
        // The others first, so the event's own box is drawn on top.
        for (i, b) in boxes.iter().enumerate().rev() {
            snap.draw_detection(&b.bbox, b.label, b.score, i == 0);
        }
        let jpeg = self.jpeg.encode(snap).map_err(SnapshotWriteError::Encode)?;
        let path = self.store.snapshot_path(id);
        let mut file = match std::fs::File::create(&path) {
            Ok(f) => f,
            Err(source) => return Err(SnapshotWriteError::Create { path, source }),
        };
        // Synced before the record that names it is committed.
        if let Err(source) = file.write_all(jpeg).and_then(|()| file.sync_data()) {
            let _ = std::fs::remove_file(&path);
            return Err(SnapshotWriteError::Write { path, source });
        }
        Ok(jpeg.len() as u32)
    }
}

/// Why an event's snapshot file was not written (the event is still stored,
/// without a snapshot).
#[derive(Debug)]
enum SnapshotWriteError {
    /// The picture could not be encoded.
    Encode(SnapshotError),
    /// The file could not be created.
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file could not be written or synced (it is removed).
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for SnapshotWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotWriteError::Encode(e) => write!(f, "{e}"),
            SnapshotWriteError::Create { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            SnapshotWriteError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SnapshotWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotWriteError::Encode(e) => Some(e),
            SnapshotWriteError::Create { source, .. }
            | SnapshotWriteError::Write { source, .. } => Some(source),
        }
    }
}

/// The snapshot pool and the job queue: made only when the store opened
/// (without it no event reaches a disk, so no picture is copied).
pub(super) struct EventBuffers {
    /// Buffers the workers copy an event's picture into.
    pub snapshots: Pool<SnapshotBuf>,
    /// The events thread's queue.
    pub jobs: Arc<JobQueue>,
}

impl EventBuffers {
    /// Allocates the pool (registered for the status page) and the queue.
    pub fn new(config: &Config, registry: &mut Registry) -> EventBuffers {
        let e = &config.events;
        let snapshots = Pool::with("snapshots", e.snapshot_pool, || {
            SnapshotBuf::new(e.snapshot_width, e.snapshot_height)
        });
        registry.add_pool("", Box::new(snapshots.clone()));
        EventBuffers {
            snapshots,
            jobs: Arc::new(JobQueue::new(e.queue, WhenFull::DropNewest)),
        }
    }
}

/// Starts the events thread (`vigil-evt`) on `jobs`; answers its handle and
/// the notification it raises after each commit, for the upstream drainers.
pub(super) fn start(
    config: &Config,
    store: &Arc<Store>,
    jobs: &Arc<JobQueue>,
    metrics: &Arc<OutputMetrics>,
) -> Result<(JoinHandle<()>, Arc<tokio::sync::Notify>), StartError> {
    let committed = Arc::new(tokio::sync::Notify::new());
    let writer = EventWriter {
        store: store.clone(),
        jobs: jobs.clone(),
        cameras: config.cameras.iter().map(|c| c.name.clone()).collect(),
        batch: Batch::with_capacity(config.store.batch),
        jpeg: JpegWriter::new(
            JpegWriter::capacity_for(config.events.snapshot_width, config.events.snapshot_height),
            config.events.snapshot_quality,
        ),
        flush_after: config.store.flush_after,
        metrics: metrics.clone(),
        committed: committed.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("vigil-evt".into())
        .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
        .map_err(|source| StartError::Spawn {
            thread: super::Thread::Events,
            source,
        })?;
    Ok((handle, committed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLimits;

    fn job(id: u64) -> EventJob {
        EventJob {
            event: Event {
                id,
                camera: 0,
                unix_ms: now_unix_ms(),
                pts_us: 0,
                class_id: 1,
                class_name: "person",
                score: 0.9,
                bbox: BBox {
                    x0: 0.1,
                    y0: 0.1,
                    x1: 0.5,
                    y1: 0.5,
                },
            },
            clip: None,
            snapshot: None,
            boxes: heapless::Vec::new(),
        }
    }

    #[test]
    fn events_stored_before_the_clock_is_synchronised_carry_the_flag() {
        let dir = crate::test_dir::TempDir::new("events-clock");
        let limits = StoreLimits {
            max_bytes: 16 << 20,
            max_events: 100,
            max_age: Duration::from_secs(86_400),
            outbox_max_bytes: 1 << 20,
            cache_bytes: 1 << 20,
        };
        let store = Arc::new(Store::open(&dir.0, limits, [false, false]).unwrap());
        let jobs = Arc::new(JobQueue::new(8, WhenFull::DropNewest));
        let metrics = Arc::new(OutputMetrics::default());
        let mut writer = EventWriter {
            store: store.clone(),
            jobs,
            cameras: vec!["gate".to_string()].into(),
            batch: Batch::with_capacity(8),
            jpeg: JpegWriter::new(JpegWriter::capacity_for(64, 48), 80),
            flush_after: Duration::from_millis(10),
            metrics: metrics.clone(),
            committed: Arc::new(tokio::sync::Notify::new()),
        };
        // Before the monitor's first reading the clock counts as unsynchronised.
        writer.take(job(1));
        metrics.clock_synchronized.set(1.0);
        writer.take(job(2));
        metrics.clock_synchronized.set(0.0);
        writer.take(job(3));
        writer.flush("test");
        let flags: Vec<bool> = (1..=3)
            .map(|id| store.get(id).unwrap().unwrap().clock_unsynced)
            .collect();
        assert_eq!(flags, [true, false, true]);
    }
}
