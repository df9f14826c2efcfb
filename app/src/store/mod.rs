//! The event store: every event's record in an embedded database, its
//! snapshot JPEG as a file beside it, the event clips (MP4 files recorded
//! around detections) and the upstream outbox, all under one quota.
//!
//! redb, not the design card's sled: decision 0006 measured both on this
//! workload (sled's RSS and disk kept creeping; redb stayed flat and starts
//! no threads). One database file, `<data_dir>/events.redb`, holds:
//!
//! - `events`: id -> record JSON ([`EventRecord`]);
//! - `outbox`: (sink, id) -> bytes, one entry per event not yet delivered to
//!   that upstream, written in the same transaction as the event, so an event
//!   is stored if and only if it is queued for delivery;
//! - `clips`: clip id -> (bytes, started unix ms), one entry per clip file
//!   `<data_dir>/clips/<id>.mp4`; the bytes are what the recorder reserved
//!   ahead of writing, or the final size once it finished;
//! - `clips_done`: clip id -> final bytes, one entry per clip whose file is
//!   complete (finished by the recorder, or found at open), which clip
//!   upload walks in id order;
//! - `meta`: running totals (bytes, event and clip counts, outbox bytes and
//!   drops, the newest clip retention deleted) so retention never scans a
//!   table, and per upstream the clip-upload cursor (`clip_uploaded_http`,
//!   `clip_uploaded_mqtt`: the newest clip delivered or given up).
//!
//! Every commit applies retention in the same transaction: while the store
//! is over its byte quota the oldest item goes, event or clip (by id: a
//! clip's id is the id of the event that opened it, so id order is time
//! order); while over its event count the oldest event goes; an event or a
//! clip at least `max_age` old (`>=`, on wall-clock time) goes. An event
//! goes with its outbox entries (counted as dropped) and, after the commit,
//! its snapshot file; a clip goes with its file, after the commit. Deleting
//! an event leaves its clip: the clip is an item of its own, since other
//! events may share it. A snapshot file is written and synced before the
//! commit that records it; a crash in between leaves an orphan file, removed
//! at the next open, never a record without its file. A clip is reserved
//! before its bytes are written, so its file never holds more than the
//! quota granted; a crash leaves a reservation larger than the file, which
//! the next open corrects to the file's size.
//!
//! Disk errors (a full or failing disk: [`StoreError::Full`],
//! [`StoreError::Io`]) fail the commit and clear the batch
//! (the events are counted as lost, never kept growing in memory); redb then
//! refuses further use ("previous I/O error"), so the next operation reopens
//! the database.
//!
//! Layout: `tables` (the schema and the totals in `meta`), `retention`
//! (what goes when over a limit), `outbox` (delivery queues), `clips`
//! (clip reservations and upload cursors), `recovery` (repairs at open and
//! after an I/O error), `query` (reads), `error` ([`StoreError`] and its
//! kinds); this file holds the [`Store`] type, opening, and the commit of
//! an event batch.

mod batch;
mod clips;
mod error;
mod outbox;
mod query;
pub mod record;
mod recovery;
mod retention;
mod tables;

pub use batch::{Batch, PushError};
pub use clips::ClipGrant;
pub use error::{Cause, During, StoreError};
pub use query::Recount;
pub use record::EventRecord;

use crate::clock::now_unix_ms;
use error::ctx;
use retention::DoomedFiles;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;
use tables::{read_totals, write_totals, Tables};

/// The database file's name in the data directory.
pub const DB_FILE: &str = "events.redb";

/// The snapshot directory's name in the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The clip directory's name in the data directory.
pub const CLIP_DIR: &str = "clips";

/// Quota bytes one record costs besides its snapshot: redb's B-tree pages
/// hold about 1.8 bytes per value byte on this workload (decision 0006), and
/// each record also has its outbox entries.
const RECORD_COST_FACTOR: u64 = 2;

const RECORD_COST_FIXED: u64 = 128;

/// Snapshot and clip files are counted in whole filesystem blocks. A clip's
/// entry in the database (24 bytes) is not counted besides: its file's
/// rounding up is larger.
const FILE_BLOCK: u64 = 4096;

/// Part of the quota kept for the database file's own structure (header,
/// allocator state, free pages not yet reused).
pub const DB_RESERVE: u64 = 1 << 20;

/// Quota bytes a file of `bytes` bytes uses.
fn blocks(bytes: u64) -> u64 {
    bytes.div_ceil(FILE_BLOCK) * FILE_BLOCK
}

/// Where an event is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// The HTTP endpoint.
    Http = 0,
    /// The MQTT broker.
    Mqtt = 1,
}

impl Sink {
    /// Both sinks, in index order.
    pub const ALL: [Sink; 2] = [Sink::Http, Sink::Mqtt];

    /// The metrics and API label.
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Http => "http",
            Sink::Mqtt => "mqtt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The store's bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreLimits {
    /// Bytes the database, the snapshots and the clips may use together.
    pub max_bytes: u64,
    /// Events kept at most (clips are bounded by bytes and age only).
    pub max_events: u64,
    /// Events and clips at least this old are deleted (a clip's age is
    /// from its start).
    pub max_age: Duration,
    /// Bytes of undelivered events kept per upstream; over it the oldest
    /// undelivered are dropped (and counted).
    pub outbox_max_bytes: u64,
    /// redb's page cache.
    pub cache_bytes: usize,
}

/// Totals, as the status page and metrics show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Events stored.
    pub events: u64,
    /// Quota bytes used (records, snapshots and clips).
    pub bytes: u64,
    /// Clips stored.
    pub clips: u64,
    /// Quota bytes of the clips (their reservations or final sizes, in
    /// whole blocks), part of `bytes`.
    pub clip_bytes: u64,
    /// The newest clip id retention deleted (0: none): a clip that is not
    /// stored and not newer is refused rather than created again, so a
    /// recorder still writing a deleted clip learns it was evicted.
    pub clips_evicted_through: u64,
    /// Undelivered events per sink.
    pub outbox_events: [u64; 2],
    /// Bytes of undelivered events per sink.
    pub outbox_bytes: [u64; 2],
    /// Undelivered events dropped per sink (outbox quota or retention),
    /// over the life of the data directory.
    pub outbox_dropped: [u64; 2],
    /// The newest id stored (0 when none ever was).
    pub last_id: u64,
}

/// What one commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Events written.
    pub written: u64,
    /// Events deleted by retention.
    pub deleted: u64,
    /// Undelivered outbox entries dropped (quota or retention).
    pub outbox_dropped: u64,
    /// Clips deleted by retention.
    pub clips_deleted: u64,
}

/// Process-lifetime counters of the store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Events committed.
    pub written: AtomicU64,
    /// Events deleted by retention.
    pub deleted: AtomicU64,
    /// Clips deleted by retention.
    pub clips_deleted: AtomicU64,
    /// Events lost because a commit failed (disk full or failing).
    pub lost: AtomicU64,
    /// Commits that failed (event batches and clip reservations).
    pub failed_commits: AtomicU64,
    /// Times the database was reopened after an I/O error.
    pub reopened: AtomicU64,
}

/// The open store.
pub struct Store {
    db: RwLock<redb::Database>,
    path: PathBuf,
    snapshots: PathBuf,
    clips: PathBuf,
    limits: StoreLimits,
    sinks: [bool; 2],
    totals: RwLock<StoreTotals>,
    /// Held by a writer from its commit to publishing its totals, so totals
    /// are published in commit order without locking out their readers.
    publishing: Mutex<()>,
    /// Counters since start.
    pub counters: StoreCounters,
    /// The last error, for the status page ("" when the last write worked).
    last_error: RwLock<String>,
    /// Tests: make the next commit (or clip write) fail as a full disk
    /// would.
    #[cfg(test)]
    fail_next_commit: std::sync::atomic::AtomicBool,
}

/// Opens (or creates) the database file; redb repairs it first if it was
/// not closed cleanly.
fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| StoreError::new(During::Open(path.to_path_buf()), Cause::Db(e.into())))
}

impl Store {
    /// Opens (or creates) the store in `dir`, for the upstreams marked in
    /// `sinks`: outbox entries of an upstream no longer configured are
    /// dropped. Brings the clips table in line with the clip files, removes
    /// orphan snapshot and clip files and applies retention, so a store
    /// opened with smaller limits shrinks at once.
    pub fn open(dir: &Path, limits: StoreLimits, sinks: [bool; 2]) -> Result<Store, StoreError> {
        let snapshots = dir.join(SNAPSHOT_DIR);
        let clips = dir.join(CLIP_DIR);
        for d in [&snapshots, &clips] {
            std::fs::create_dir_all(d)
                .map_err(|e| StoreError::new(During::CreateDir(d.clone()), Cause::Fs(e)))?;
        }
        let path = dir.join(DB_FILE);
        let db = open_db(&path, limits.cache_bytes)?;
        let store = Store {
            db: RwLock::new(db),
            path,
            snapshots,
            clips,
            limits,
            sinks,
            totals: RwLock::new(StoreTotals::default()),
            publishing: Mutex::new(()),
            counters: StoreCounters::default(),
            last_error: RwLock::new(String::new()),
            #[cfg(test)]
            fail_next_commit: Default::default(),
        };
        store.init_tables()?;
        store.drop_unconfigured_outboxes()?;
        store.reconcile_clips()?;
        store.remove_orphan_files()?;
        while {
            let r = store.apply_retention(now_unix_ms())?;
            r.deleted + r.clips_deleted > 0
        } {}
        Ok(store)
    }

    /// Commits `w` and makes `t` the current totals. The events thread,
    /// the recorder and the drainers all write; `publishing` is taken
    /// before the commit so the published totals follow commit order. The
    /// totals themselves are locked only to store `t`: a reader (the status
    /// page, `/metrics`, on the runtime) never waits for a commit's fsync.
    fn publish(&self, w: redb::WriteTransaction, t: StoreTotals) -> Result<(), StoreError> {
        let _order = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        w.commit().map_err(ctx("commit"))?;
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = t;
        Ok(())
    }

    /// Tests: fails as a full disk would when `fail_next_commit` is set.
    #[cfg(test)]
    fn injected_failure(&self) -> Result<(), StoreError> {
        if self.fail_next_commit.swap(false, Ordering::Relaxed) {
            // The shape redb gives a write that meets ENOSPC.
            let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(ctx("commit")(redb::Error::Io(full)));
        }
        Ok(())
    }

    /// The snapshot file of event `id` (it exists when the record's
    /// `snapshot_bytes` is not 0).
    pub fn snapshot_path(&self, id: u64) -> PathBuf {
        self.snapshots.join(format!("{id}.jpg"))
    }

    /// The clip file of clip `clip_id`.
    pub fn clip_path(&self, clip_id: u64) -> PathBuf {
        self.clips.join(format!("{clip_id}.mp4"))
    }

    /// The current totals.
    pub fn totals(&self) -> StoreTotals {
        *self.totals.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bounds the store was opened with.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// The last write error ("" when the last write worked).
    pub fn last_error(&self) -> String {
        self.last_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Quota bytes an event with a record of `record_len` bytes and a
    /// snapshot of `snapshot_len` bytes costs.
    pub fn cost(record_len: usize, snapshot_len: u32) -> u64 {
        RECORD_COST_FACTOR * record_len as u64 + RECORD_COST_FIXED + blocks(u64::from(snapshot_len))
    }

    /// Writes the batch's events (their snapshot files must already be on
    /// disk), queues each for every configured upstream, applies retention,
    /// and commits durably. The batch is empty afterwards whatever happens:
    /// on failure its events are lost and counted, and their snapshot files
    /// removed.
    pub fn commit(&self, batch: &mut Batch, now_unix_ms: i64) -> Result<CommitReport, StoreError> {
        let n = batch.len() as u64;
        let result = self.commit_inner(batch, now_unix_ms);
        match &result {
            Ok(_) => {
                self.counters.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.lost.fetch_add(n, Ordering::Relaxed);
                for item in batch.items() {
                    if item.snapshot_len > 0 {
                        let _ = std::fs::remove_file(self.snapshot_path(item.id));
                    }
                }
            }
        }
        self.after_write(result.as_ref());
        batch.clear();
        result
    }

    /// Counts what a write transaction deleted, or records its error and
    /// reopens the database (redb refuses every use after an I/O error).
    fn after_write(&self, result: Result<&CommitReport, &StoreError>) {
        match result {
            Ok(report) => {
                self.counters
                    .deleted
                    .fetch_add(report.deleted, Ordering::Relaxed);
                self.counters
                    .clips_deleted
                    .fetch_add(report.clips_deleted, Ordering::Relaxed);
                self.last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
            }
            Err(e) => {
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = e.to_string();
                self.reopen_after_error();
            }
        }
    }

    fn commit_inner(&self, batch: &Batch, now_ms: i64) -> Result<CommitReport, StoreError> {
        #[cfg(test)]
        self.injected_failure()?;
        let mut report = CommitReport::default();
        let mut doomed = DoomedFiles::new();
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let totals = {
            let mut tables = Tables::open(&w)?;
            let mut t = read_totals(&tables.meta)?;
            for item in batch.items() {
                let record = batch.record(item);
                tables
                    .events
                    .insert(item.id, record)
                    .map_err(ctx("insert event"))?;
                t.events += 1;
                t.bytes += Store::cost(record.len(), item.snapshot_len);
                t.last_id = t.last_id.max(item.id);
                for sink in Sink::ALL {
                    if self.sinks[sink.index()] {
                        let cost = Store::outbox_cost(record.len(), item.snapshot_len);
                        tables
                            .outbox
                            .insert((sink as u8, item.id), cost)
                            .map_err(ctx("queue event"))?;
                        t.outbox_events[sink.index()] += 1;
                        t.outbox_bytes[sink.index()] += cost;
                    }
                }
                report.written += 1;
            }
            self.retain(&mut tables, &mut t, now_ms, &mut report, &mut doomed)?;
            self.trim_outboxes(&mut tables.outbox, &mut t, &mut report)?;
            write_totals(&mut tables.meta, &t)?;
            t
        };
        self.publish(w, totals)?;
        drop(db);
        self.remove_files(doomed);
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
