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
//! Disk errors (a full or failing disk) fail the commit and clear the batch
//! (the events are counted as lost, never kept growing in memory); redb then
//! refuses further use ("previous I/O error"), so the next operation reopens
//! the database.

mod batch;
pub mod record;
pub mod writer;

pub use batch::{Batch, PushError};
pub use record::EventRecord;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const OUTBOX: TableDefinition<(u8, u64), u64> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Clip id -> (reserved or final bytes, started unix ms).
const CLIPS: TableDefinition<u64, (u64, i64)> = TableDefinition::new("clips");
/// Clip id -> final bytes, for every clip whose file is complete (the
/// recorder finished it, or the next open found it left by a stop or a
/// crash). Clip upload reads it; an entry goes with its clip.
const CLIPS_DONE: TableDefinition<u64, u64> = TableDefinition::new("clips_done");

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
/// Files (snapshots and clips) deleted by one retention transaction at
/// most; more go in the next.
const DELETE_CHUNK: usize = 1024;

/// Quota bytes a file of `bytes` bytes uses.
fn blocks(bytes: u64) -> u64 {
    bytes.div_ceil(FILE_BLOCK) * FILE_BLOCK
}

/// A file whose item a transaction deleted, removed once it commits.
#[derive(Clone, Copy, Debug)]
enum Doomed {
    Snapshot(u64),
    Clip(u64),
}

/// The files one retention transaction deletes: fixed, so a transaction
/// deleting many items holds no growing list.
type DoomedFiles = heapless::Vec<Doomed, DELETE_CHUNK>;

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

/// A failed store operation, with what was being done.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError(format!("event store: {what}: {e}"))
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

/// What the tables hold, counted entry by entry ([`Store::recount`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// Events.
    pub events: u64,
    /// Clips.
    pub clips: u64,
    /// Quota bytes of the clips.
    pub clip_bytes: u64,
    /// Quota bytes of events and clips.
    pub bytes: u64,
    /// Outbox entries per sink.
    pub outbox_events: [u64; 2],
}

/// What [`Store::clip_reserve`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipGrant {
    /// The quota holds the clip with the bytes reserved: write them.
    Granted,
    /// Retention deleted this clip (the quota cannot hold it, or older
    /// items had to go before it); its file is removed. Stop writing it.
    Evicted,
}

/// What a clip transaction does to its clip.
#[derive(Clone, Copy, Debug)]
enum ClipOp {
    /// Adds bytes to the reservation (creating the entry, started at
    /// `now_ms`, when new), then applies retention.
    Reserve { bytes: u64, now_ms: i64 },
    /// Applies retention alone: a further chunk after a reservation.
    Retain { now_ms: i64 },
    /// Sets the final size.
    Finish { bytes: u64 },
}

/// What a clip transaction left.
#[derive(Clone, Copy, Debug)]
struct ClipOutcome {
    report: CommitReport,
    /// The clip is still stored.
    exists: bool,
    /// The store is still over its byte quota (retention stopped at a full
    /// chunk of files).
    over_quota: bool,
}

/// The tables a write transaction works on.
struct Tables<'txn> {
    events: redb::Table<'txn, u64, &'static [u8]>,
    outbox: redb::Table<'txn, (u8, u64), u64>,
    clips: redb::Table<'txn, u64, (u64, i64)>,
    clips_done: redb::Table<'txn, u64, u64>,
    meta: redb::Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    fn open(w: &'txn redb::WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            events: w.open_table(EVENTS).map_err(ctx("open events"))?,
            outbox: w.open_table(OUTBOX).map_err(ctx("open outbox"))?,
            clips: w.open_table(CLIPS).map_err(ctx("open clips"))?,
            clips_done: w.open_table(CLIPS_DONE).map_err(ctx("open clips_done"))?,
            meta: w.open_table(META).map_err(ctx("open meta"))?,
        })
    }
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
    /// Counters since start.
    pub counters: StoreCounters,
    /// The last error, for the status page ("" when the last write worked).
    last_error: RwLock<String>,
    /// Tests: make the next commit (or clip write) fail as a full disk
    /// would.
    #[cfg(test)]
    fail_next_commit: std::sync::atomic::AtomicBool,
}

fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))
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
                .map_err(|e| StoreError(format!("cannot create {}: {e}", d.display())))?;
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

    fn init_tables(&self) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let totals = {
            w.open_table(EVENTS).map_err(ctx("open events"))?;
            w.open_table(OUTBOX).map_err(ctx("open outbox"))?;
            let clips = w.open_table(CLIPS).map_err(ctx("open clips"))?;
            w.open_table(CLIPS_DONE).map_err(ctx("open clips_done"))?;
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            // A database from before clip upload: its clips were recorded
            // while upload did not exist, so the cursors start after them
            // rather than uploading the whole store.
            let newest = clips
                .last()
                .map_err(ctx("read clips"))?
                .map_or(0, |(k, _)| k.value());
            for sink in Sink::ALL {
                let key = Store::upload_cursor_key(sink);
                if meta.get(key).map_err(ctx("read upload cursor"))?.is_none() {
                    meta.insert(key, newest)
                        .map_err(ctx("write upload cursor"))?;
                }
            }
            read_totals(&meta)?
        };
        self.publish(w, totals)
    }

    /// Commits `w` and makes `t` the current totals. The totals
    /// are locked before the commit: the events thread, the recorder and
    /// the drainers all write, and this keeps the published totals in
    /// commit order.
    fn publish(&self, w: redb::WriteTransaction, t: StoreTotals) -> Result<(), StoreError> {
        let mut totals = self.totals.write().unwrap_or_else(PoisonError::into_inner);
        w.commit().map_err(ctx("commit"))?;
        *totals = t;
        Ok(())
    }

    /// Tests: fails as a full disk would when `fail_next_commit` is set.
    #[cfg(test)]
    fn injected_failure(&self) -> Result<(), StoreError> {
        if self.fail_next_commit.swap(false, Ordering::Relaxed) {
            return Err(StoreError(
                "event store: commit: No space left on device (injected)".into(),
            ));
        }
        Ok(())
    }

    /// Removes the files of items a committed transaction deleted.
    fn remove_files(&self, doomed: DoomedFiles) {
        for d in doomed {
            let path = match d {
                Doomed::Snapshot(id) => self.snapshot_path(id),
                Doomed::Clip(id) => self.clip_path(id),
            };
            let _ = std::fs::remove_file(path);
        }
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

    /// The clip-upload cursor's key in `meta`.
    fn upload_cursor_key(sink: Sink) -> &'static str {
        match sink {
            Sink::Http => "clip_uploaded_http",
            Sink::Mqtt => "clip_uploaded_mqtt",
        }
    }

    /// The oldest finished clip with an id above both `after` and `sink`'s
    /// upload cursor that is still stored: its id and final bytes. A clip
    /// retention deleted is simply not found.
    pub fn next_clip_to_upload(
        &self,
        sink: Sink,
        after: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let meta = r.open_table(META).map_err(ctx("open meta"))?;
        let done = r.open_table(CLIPS_DONE).map_err(ctx("open clips_done"))?;
        let cursor = meta
            .get(Store::upload_cursor_key(sink))
            .map_err(ctx("read upload cursor"))?
            .map_or(0, |v| v.value());
        let from = after.max(cursor).saturating_add(1);
        let mut range = done.range(from..).map_err(ctx("read clips_done"))?;
        match range.next() {
            Some(entry) => {
                let (k, v) = entry.map_err(ctx("read clips_done"))?;
                Ok(Some((k.value(), v.value())))
            }
            None => Ok(None),
        }
    }

    /// `sink`'s clip-upload cursor: the newest clip delivered or given up.
    pub fn clip_upload_cursor(&self, sink: Sink) -> Result<u64, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let meta = r.open_table(META).map_err(ctx("open meta"))?;
        Ok(meta
            .get(Store::upload_cursor_key(sink))
            .map_err(ctx("read upload cursor"))?
            .map_or(0, |v| v.value()))
    }

    /// Advances `sink`'s clip-upload cursor to `clip_id` (delivered, or
    /// given up on), durably; never moves it back.
    pub fn clip_uploaded(&self, sink: Sink, clip_id: u64) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        {
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            let key = Store::upload_cursor_key(sink);
            let cursor = meta
                .get(key)
                .map_err(ctx("read upload cursor"))?
                .map_or(0, |v| v.value());
            if clip_id > cursor {
                meta.insert(key, clip_id)
                    .map_err(ctx("write upload cursor"))?;
            }
        }
        w.commit().map_err(ctx("commit"))
    }

    /// Bytes one event costs in an outbox: what delivering it sends.
    fn outbox_cost(record_len: usize, snapshot_len: u32) -> u64 {
        record_len as u64 + u64::from(snapshot_len)
    }

    fn byte_quota(&self) -> u64 {
        self.limits.max_bytes.saturating_sub(DB_RESERVE)
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
                    .unwrap_or_else(PoisonError::into_inner) = e.0.clone();
                self.reopen_after_error();
            }
        }
    }

    /// Reserves `bytes` more quota for clip `clip_id` (creating its entry,
    /// started at `now_unix_ms`, when new), then applies retention, oldest
    /// first across events and clips, so the total never exceeds the
    /// quota. [`ClipGrant::Evicted`] when retention had to delete this very
    /// clip (the quota cannot hold it): its file is removed by then, and the
    /// recorder stops writing it. Commits durably; on an error the
    /// reservation is not made (the recorder should stop the clip too).
    pub fn clip_reserve(
        &self,
        clip_id: u64,
        bytes: u64,
        now_unix_ms: i64,
    ) -> Result<ClipGrant, StoreError> {
        let mut op = ClipOp::Reserve {
            bytes,
            now_ms: now_unix_ms,
        };
        loop {
            let result = self.clip_txn(clip_id, op);
            self.after_write(result.as_ref().map(|o| &o.report));
            let out = result?;
            if !out.exists {
                // Retention removed the file if it deleted the entry now;
                // this also catches a file the recorder created for a clip
                // refused as already evicted.
                let _ = std::fs::remove_file(self.clip_path(clip_id));
                return Ok(ClipGrant::Evicted);
            }
            // A transaction deletes one chunk of files at most: more
            // chunks until the quota holds (each deletes at least one item
            // while over it, the clip itself last).
            if !out.over_quota || out.report.deleted + out.report.clips_deleted == 0 {
                return Ok(ClipGrant::Granted);
            }
            op = ClipOp::Retain {
                now_ms: now_unix_ms,
            };
        }
    }

    /// Sets clip `clip_id`'s final size in bytes, returning the unused part
    /// of what was reserved ahead. When retention already deleted the clip
    /// nothing is accounted, and its file is removed should it be there
    /// again (retention can delete a clip between its first reservation and
    /// the recorder creating its file). A size above the reservation is
    /// accounted as it is; the next retention brings the store back under
    /// its quota.
    pub fn clip_finish(&self, clip_id: u64, bytes: u64) -> Result<(), StoreError> {
        let result = self.clip_txn(clip_id, ClipOp::Finish { bytes });
        self.after_write(result.as_ref().map(|o| &o.report));
        if !result?.exists {
            let _ = std::fs::remove_file(self.clip_path(clip_id));
        }
        Ok(())
    }

    /// Whether clip `clip_id` is still stored, and its bytes (reserved, or
    /// final once finished; the quota counts them in whole blocks).
    pub fn clip_bytes(&self, clip_id: u64) -> Result<Option<u64>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let clips = r.open_table(CLIPS).map_err(ctx("open clips"))?;
        let v = clips.get(clip_id).map_err(ctx("read clip"))?;
        Ok(v.map(|v| v.value().0))
    }

    /// Applies `op` to clip `clip_id` in one durable transaction.
    fn clip_txn(&self, clip_id: u64, op: ClipOp) -> Result<ClipOutcome, StoreError> {
        #[cfg(test)]
        self.injected_failure()?;
        let mut report = CommitReport::default();
        let mut doomed = DoomedFiles::new();
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let (totals, exists) = {
            let mut tables = Tables::open(&w)?;
            let mut t = read_totals(&tables.meta)?;
            let entry = tables
                .clips
                .get(clip_id)
                .map_err(ctx("read clip"))?
                .map(|v| v.value());
            let update = match (op, entry) {
                (ClipOp::Reserve { bytes, .. }, Some((had, started))) => {
                    Some((had, had.saturating_add(bytes), started))
                }
                (ClipOp::Reserve { bytes, now_ms }, None) if clip_id > t.clips_evicted_through => {
                    t.clips += 1;
                    Some((0, bytes, now_ms))
                }
                (ClipOp::Finish { bytes }, Some((had, started))) => Some((had, bytes, started)),
                // Not stored: retention deleted it (or, reserving, it is
                // older than a clip retention deleted, so it would go
                // first); nothing to account.
                _ => None,
            };
            if let Some((had, bytes, started)) = update {
                tables
                    .clips
                    .insert(clip_id, (bytes, started))
                    .map_err(ctx("write clip"))?;
                if matches!(op, ClipOp::Finish { .. }) && bytes > 0 {
                    tables
                        .clips_done
                        .insert(clip_id, bytes)
                        .map_err(ctx("write clips_done"))?;
                }
                t.clip_bytes = t.clip_bytes.saturating_sub(blocks(had)) + blocks(bytes);
                t.bytes = t.bytes.saturating_sub(blocks(had)) + blocks(bytes);
                // A clip the whole quota cannot hold goes at once, rather
                // than after everything older was deleted for nothing.
                if matches!(op, ClipOp::Reserve { .. }) && blocks(bytes) > self.byte_quota() {
                    Store::delete_clip(
                        &mut tables,
                        &mut t,
                        clip_id,
                        bytes,
                        &mut report,
                        &mut doomed,
                    )?;
                }
            }
            match op {
                ClipOp::Reserve { now_ms, .. } | ClipOp::Retain { now_ms } => {
                    self.retain(&mut tables, &mut t, now_ms, &mut report, &mut doomed)?;
                }
                ClipOp::Finish { .. } => {}
            }
            write_totals(&mut tables.meta, &t)?;
            let exists = tables
                .clips
                .get(clip_id)
                .map_err(ctx("read clip"))?
                .is_some();
            (t, exists)
        };
        self.publish(w, totals)?;
        drop(db);
        self.remove_files(doomed);
        Ok(ClipOutcome {
            report,
            exists,
            over_quota: totals.bytes > self.byte_quota(),
        })
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

    /// Deletes the oldest items while over a limit, until [`DELETE_CHUNK`]
    /// files are to be removed (they go to `doomed`). Over the byte quota
    /// the older of the oldest event and the oldest clip goes; over the
    /// count the oldest event; past `max_age` whichever oldest is too old.
    fn retain(
        &self,
        tables: &mut Tables,
        t: &mut StoreTotals,
        now_ms: i64,
        report: &mut CommitReport,
        doomed: &mut DoomedFiles,
    ) -> Result<(), StoreError> {
        let quota = self.byte_quota();
        let max_age_ms = self.limits.max_age.as_millis() as i64;
        // `>=` on the age, and a clock that went backwards (now before the
        // item) deletes nothing by age: the count and byte limits still
        // bound the store while the clock is wrong.
        let too_old =
            |unix_ms: i64| now_ms.saturating_sub(unix_ms) >= max_age_ms && now_ms >= unix_ms;
        while !doomed.is_full() {
            let event = {
                let first = tables.events.first().map_err(ctx("read oldest"))?;
                first.map(|(k, v)| {
                    let bytes = v.value();
                    let rec = EventRecord::from_json(bytes);
                    let (unix_ms, snap) =
                        rec.map_or((i64::MIN, 0), |r| (r.unix_ms, r.snapshot_bytes));
                    (k.value(), Store::cost(bytes.len(), snap), unix_ms, snap)
                })
            };
            let clip = tables
                .clips
                .first()
                .map_err(ctx("read oldest clip"))?
                .map(|(k, v)| (k.value(), v.value()));
            let over_bytes = t.bytes > quota;
            let event_due = event.is_some_and(|(_, _, unix_ms, _)| {
                over_bytes || t.events > self.limits.max_events || too_old(unix_ms)
            });
            let clip_due = clip.is_some_and(|(_, (_, started))| over_bytes || too_old(started));
            // Both due: the older first. A clip and the event that opened
            // it share an id; the clip goes first, since it frees far more
            // and the event keeps its snapshot.
            match (event, clip) {
                (Some((event_id, ..)), Some((clip_id, (bytes, _))))
                    if clip_due && (!event_due || clip_id <= event_id) =>
                {
                    Store::delete_clip(tables, t, clip_id, bytes, report, doomed)?;
                }
                (None, Some((clip_id, (bytes, _)))) if clip_due => {
                    Store::delete_clip(tables, t, clip_id, bytes, report, doomed)?;
                }
                (Some((id, cost, _, snapshot)), _) if event_due => {
                    tables.events.remove(id).map_err(ctx("delete event"))?;
                    t.events = t.events.saturating_sub(1);
                    t.bytes = t.bytes.saturating_sub(cost);
                    for sink in Sink::ALL {
                        if let Some(c) = tables
                            .outbox
                            .remove((sink as u8, id))
                            .map_err(ctx("unqueue event"))?
                        {
                            let i = sink.index();
                            t.outbox_events[i] = t.outbox_events[i].saturating_sub(1);
                            t.outbox_bytes[i] = t.outbox_bytes[i].saturating_sub(c.value());
                            t.outbox_dropped[i] += 1;
                            report.outbox_dropped += 1;
                        }
                    }
                    report.deleted += 1;
                    if snapshot > 0 {
                        let _ = doomed.push(Doomed::Snapshot(id));
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Deletes clip `id` of `bytes` bytes (retention); its file goes after
    /// the commit.
    fn delete_clip(
        tables: &mut Tables,
        t: &mut StoreTotals,
        id: u64,
        bytes: u64,
        report: &mut CommitReport,
        doomed: &mut DoomedFiles,
    ) -> Result<(), StoreError> {
        tables.clips.remove(id).map_err(ctx("delete clip"))?;
        tables
            .clips_done
            .remove(id)
            .map_err(ctx("delete clips_done"))?;
        t.clips = t.clips.saturating_sub(1);
        t.clip_bytes = t.clip_bytes.saturating_sub(blocks(bytes));
        t.bytes = t.bytes.saturating_sub(blocks(bytes));
        t.clips_evicted_through = t.clips_evicted_through.max(id);
        report.clips_deleted += 1;
        let _ = doomed.push(Doomed::Clip(id));
        Ok(())
    }

    /// Drops each outbox's oldest entries while it is over its quota.
    fn trim_outboxes(
        &self,
        outbox: &mut redb::Table<(u8, u64), u64>,
        t: &mut StoreTotals,
        report: &mut CommitReport,
    ) -> Result<(), StoreError> {
        for sink in Sink::ALL {
            let i = sink.index();
            while t.outbox_bytes[i] > self.limits.outbox_max_bytes {
                let oldest = {
                    let mut range = outbox
                        .range((sink as u8, 0)..=(sink as u8, u64::MAX))
                        .map_err(ctx("read outbox"))?;
                    match range.next() {
                        Some(r) => {
                            let (k, v) = r.map_err(ctx("read outbox"))?;
                            Some((k.value().1, v.value()))
                        }
                        None => None,
                    }
                };
                let Some((id, cost)) = oldest else {
                    t.outbox_bytes[i] = 0;
                    t.outbox_events[i] = 0;
                    break;
                };
                outbox
                    .remove((sink as u8, id))
                    .map_err(ctx("drop from outbox"))?;
                t.outbox_events[i] = t.outbox_events[i].saturating_sub(1);
                t.outbox_bytes[i] = t.outbox_bytes[i].saturating_sub(cost);
                t.outbox_dropped[i] += 1;
                report.outbox_dropped += 1;
            }
        }
        Ok(())
    }

    /// Applies retention alone (at open, and when time passes without
    /// events): one chunk of deletions.
    pub fn apply_retention(&self, now_ms: i64) -> Result<CommitReport, StoreError> {
        self.commit(&mut Batch::with_capacity(0), now_ms)
    }

    fn drop_unconfigured_outboxes(&self) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let totals = {
            let mut outbox = w.open_table(OUTBOX).map_err(ctx("open outbox"))?;
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            let mut t = read_totals(&meta)?;
            for sink in Sink::ALL {
                if self.sinks[sink.index()] {
                    continue;
                }
                let i = sink.index();
                let dropped = outbox
                    .extract_from_if((sink as u8, 0)..=(sink as u8, u64::MAX), |_, _| true)
                    .map_err(ctx("drop outbox"))?
                    .count() as u64;
                if dropped > 0 {
                    log::warn!(
                        "event store: {dropped} events queued for the {} upstream, which is no longer configured, are dropped",
                        sink.as_str()
                    );
                }
                t.outbox_dropped[i] += dropped;
                t.outbox_events[i] = 0;
                t.outbox_bytes[i] = 0;
            }
            write_totals(&mut meta, &t)?;
            t
        };
        self.publish(w, totals)
    }

    /// Brings the clips table in line with the clip files: an entry whose
    /// file is missing goes, and every other entry's bytes become its
    /// file's size (a crash or a stop mid-clip leaves the reservation ahead
    /// of the file). Before retention, so it counts what is on disk. No
    /// clip is being written at open, so every clip left is then marked
    /// finished (a clip cut short by a stop or a crash is playable up to
    /// its last whole fragment, and clip upload sends it).
    fn reconcile_clips(&self) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let (mut dropped, mut resized) = (0, 0);
        let totals = {
            let mut clips = w.open_table(CLIPS).map_err(ctx("open clips"))?;
            let mut done = w.open_table(CLIPS_DONE).map_err(ctx("open clips_done"))?;
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            let mut t = read_totals(&meta)?;
            let mut after = Bound::Unbounded;
            loop {
                // (id, bytes, started, file size): found in a chunk, fixed
                // once the table is no longer being read.
                let mut fixes: heapless::Vec<(u64, u64, i64, Option<u64>), DELETE_CHUNK> =
                    heapless::Vec::new();
                let mut more = false;
                for entry in clips
                    .range::<u64>((after, Bound::Unbounded))
                    .map_err(ctx("read clips"))?
                {
                    let (k, v) = entry.map_err(ctx("read clip"))?;
                    let (id, (bytes, started)) = (k.value(), v.value());
                    let size = std::fs::metadata(self.clip_path(id)).ok().map(|m| m.len());
                    if size != Some(bytes) && fixes.push((id, bytes, started, size)).is_err() {
                        more = true;
                        break;
                    }
                    after = Bound::Excluded(id);
                }
                for (id, bytes, started, size) in fixes {
                    let now = match size {
                        Some(size) => {
                            clips
                                .insert(id, (size, started))
                                .map_err(ctx("write clip"))?;
                            resized += 1;
                            size
                        }
                        None => {
                            clips.remove(id).map_err(ctx("delete clip"))?;
                            done.remove(id).map_err(ctx("delete clips_done"))?;
                            t.clips = t.clips.saturating_sub(1);
                            dropped += 1;
                            0
                        }
                    };
                    t.clip_bytes = t.clip_bytes.saturating_sub(blocks(bytes)) + blocks(now);
                    t.bytes = t.bytes.saturating_sub(blocks(bytes)) + blocks(now);
                }
                if !more {
                    break;
                }
            }
            // Every clip left is complete now: mark those not marked yet
            // (and correct the marks of resized ones), and drop marks whose
            // clip is gone.
            for entry in clips.iter().map_err(ctx("read clips"))? {
                let (k, v) = entry.map_err(ctx("read clip"))?;
                let (id, bytes) = (k.value(), v.value().0);
                let marked = done
                    .get(id)
                    .map_err(ctx("read clips_done"))?
                    .map(|v| v.value());
                if bytes > 0 && marked != Some(bytes) {
                    done.insert(id, bytes).map_err(ctx("write clips_done"))?;
                }
            }
            let mut after = Bound::Unbounded;
            loop {
                let mut stale: heapless::Vec<u64, DELETE_CHUNK> = heapless::Vec::new();
                let mut more = false;
                for entry in done
                    .range::<u64>((after, Bound::Unbounded))
                    .map_err(ctx("read clips_done"))?
                {
                    let id = entry.map_err(ctx("read clips_done"))?.0.value();
                    let bytes = clips
                        .get(id)
                        .map_err(ctx("read clip"))?
                        .map(|v| v.value().0);
                    if bytes.is_none_or(|b| b == 0) && stale.push(id).is_err() {
                        more = true;
                        break;
                    }
                    after = Bound::Excluded(id);
                }
                for id in stale {
                    done.remove(id).map_err(ctx("delete clips_done"))?;
                }
                if !more {
                    break;
                }
            }
            write_totals(&mut meta, &t)?;
            t
        };
        self.publish(w, totals)?;
        if dropped + resized > 0 {
            log::info!(
                "event store: {dropped} clips without a file dropped, {resized} clip sizes corrected to their files"
            );
        }
        Ok(())
    }

    /// Removes snapshot files that no record refers to and clip files that
    /// no clip entry does (left by a crash between writing a file and
    /// committing its entry, or between deleting an entry and its file).
    fn remove_orphan_files(&self) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let clips = r.open_table(CLIPS).map_err(ctx("open clips"))?;
        let snapshot_files = remove_unknown_files(&self.snapshots, ".jpg", |id| {
            Ok(events.get(id).map_err(ctx("read event"))?.is_some())
        })?;
        let clip_files = remove_unknown_files(&self.clips, ".mp4", |id| {
            Ok(clips.get(id).map_err(ctx("read clip"))?.is_some())
        })?;
        if snapshot_files + clip_files > 0 {
            log::info!(
                "event store: removed {snapshot_files} snapshot files without a record, {clip_files} clip files without an entry"
            );
        }
        Ok(())
    }

    /// After an I/O error redb refuses every later operation; reopening
    /// (which repairs the file if needed) recovers once the disk does.
    fn reopen_after_error(&self) {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle must be dropped first: the file is locked while open.
        let placeholder =
            redb::Builder::new().create_with_backend(redb::backends::InMemoryBackend::new());
        let Ok(placeholder) = placeholder else { return };
        drop(std::mem::replace(&mut *db, placeholder));
        match open_db(&self.path, self.limits.cache_bytes) {
            Ok(reopened) => {
                *db = reopened;
                self.counters.reopened.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::error!("{e}"),
        }
    }

    /// The event with this id.
    pub fn get(&self, id: u64) -> Result<Option<EventRecord>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let v = events.get(id).map_err(ctx("read event"))?;
        Ok(v.and_then(|v| EventRecord::from_json(v.value())))
    }

    /// Up to `limit` events with id below `before` (of `camera` only, when
    /// given), newest first.
    pub fn latest(
        &self,
        camera: Option<&str>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let mut out = Vec::with_capacity(limit.min(256));
        for entry in events.range(..before).map_err(ctx("read events"))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = entry.map_err(ctx("read event"))?;
            if let Some(rec) = EventRecord::from_json(v.value()) {
                if camera.is_none_or(|c| c == rec.camera) {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with id above `after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let mut out = Vec::with_capacity(limit.min(256));
        for entry in events
            .range(after.saturating_add(1)..)
            .map_err(ctx("read events"))?
            .take(limit)
        {
            let (_, v) = entry.map_err(ctx("read event"))?;
            if let Some(rec) = EventRecord::from_json(v.value()) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The oldest event still queued for `sink` with id above `after`.
    pub fn next_pending(&self, sink: Sink, after: u64) -> Result<Option<EventRecord>, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let outbox = r.open_table(OUTBOX).map_err(ctx("open outbox"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let range = outbox
            .range((sink as u8, after.saturating_add(1))..=(sink as u8, u64::MAX))
            .map_err(ctx("read outbox"))?;
        for entry in range {
            let (k, _) = entry.map_err(ctx("read outbox"))?;
            let id = k.value().1;
            if let Some(v) = events.get(id).map_err(ctx("read event"))? {
                if let Some(rec) = EventRecord::from_json(v.value()) {
                    return Ok(Some(rec));
                }
            }
        }
        Ok(None)
    }

    /// Takes event `id` off `sink`'s outbox (delivered, or given up on).
    /// With `durable` false the change reaches the disk with the next
    /// durable commit; a crash before it only means a redelivery.
    pub fn settle(&self, sink: Sink, id: u64, durable: bool) -> Result<bool, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let mut w = db.begin_write().map_err(ctx("begin"))?;
        if !durable {
            w.set_durability(redb::Durability::None)
                .map_err(ctx("set durability"))?;
        }
        let (removed, totals) = {
            let mut outbox = w.open_table(OUTBOX).map_err(ctx("open outbox"))?;
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            let mut t = read_totals(&meta)?;
            let cost = outbox
                .remove((sink as u8, id))
                .map_err(ctx("unqueue event"))?
                .map(|c| c.value());
            if let Some(c) = cost {
                let i = sink.index();
                t.outbox_events[i] = t.outbox_events[i].saturating_sub(1);
                t.outbox_bytes[i] = t.outbox_bytes[i].saturating_sub(c);
                write_totals(&mut meta, &t)?;
            }
            (cost.is_some(), t)
        };
        self.publish(w, totals)?;
        Ok(removed)
    }

    /// Counts the tables' entries and sums their costs (tests and the
    /// consistency check).
    pub fn recount(&self) -> Result<Recount, StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let outbox = r.open_table(OUTBOX).map_err(ctx("open outbox"))?;
        let clips = r.open_table(CLIPS).map_err(ctx("open clips"))?;
        let mut n = Recount::default();
        for e in events.iter().map_err(ctx("read events"))? {
            let (_, v) = e.map_err(ctx("read event"))?;
            let snap = EventRecord::from_json(v.value()).map_or(0, |r| r.snapshot_bytes);
            n.events += 1;
            n.bytes += Store::cost(v.value().len(), snap);
        }
        for e in clips.iter().map_err(ctx("read clips"))? {
            let (_, v) = e.map_err(ctx("read clip"))?;
            n.clips += 1;
            n.clip_bytes += blocks(v.value().0);
        }
        n.bytes += n.clip_bytes;
        for e in outbox.iter().map_err(ctx("read outbox"))? {
            let (k, _) = e.map_err(ctx("read outbox"))?;
            n.outbox_events[usize::from(k.value().0).min(1)] += 1;
        }
        Ok(n)
    }
}

/// Removes the files in `dir` not named `<id><ext>` with `stored(id)`;
/// how many.
fn remove_unknown_files(
    dir: &Path,
    ext: &str,
    mut stored: impl FnMut(u64) -> Result<bool, StoreError>,
) -> Result<u64, StoreError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StoreError(format!("cannot list {}: {e}", dir.display())))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(ext))
            .and_then(|n| n.parse::<u64>().ok());
        let keep = match id {
            Some(id) => stored(id)?,
            None => false,
        };
        if !keep && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn read_totals(meta: &impl ReadableTable<&'static str, u64>) -> Result<StoreTotals, StoreError> {
    let get = |k: &str| -> Result<u64, StoreError> {
        Ok(meta
            .get(k)
            .map_err(ctx("read totals"))?
            .map_or(0, |v| v.value()))
    };
    Ok(StoreTotals {
        events: get("events")?,
        bytes: get("bytes")?,
        clips: get("clips")?,
        clip_bytes: get("clip_bytes")?,
        clips_evicted_through: get("clips_evicted_through")?,
        outbox_events: [get("outbox_events.http")?, get("outbox_events.mqtt")?],
        outbox_bytes: [get("outbox_bytes.http")?, get("outbox_bytes.mqtt")?],
        outbox_dropped: [get("outbox_dropped.http")?, get("outbox_dropped.mqtt")?],
        last_id: get("last_id")?,
    })
}

fn write_totals(meta: &mut redb::Table<&str, u64>, t: &StoreTotals) -> Result<(), StoreError> {
    let pairs = [
        ("events", t.events),
        ("bytes", t.bytes),
        ("clips", t.clips),
        ("clip_bytes", t.clip_bytes),
        ("clips_evicted_through", t.clips_evicted_through),
        ("outbox_events.http", t.outbox_events[0]),
        ("outbox_events.mqtt", t.outbox_events[1]),
        ("outbox_bytes.http", t.outbox_bytes[0]),
        ("outbox_bytes.mqtt", t.outbox_bytes[1]),
        ("outbox_dropped.http", t.outbox_dropped[0]),
        ("outbox_dropped.mqtt", t.outbox_dropped[1]),
        ("last_id", t.last_id),
    ];
    for (k, v) in pairs {
        meta.insert(k, v).map_err(ctx("write totals"))?;
    }
    Ok(())
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests;
