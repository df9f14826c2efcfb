//! The event store: every event's record in an embedded database, its
//! snapshot JPEG as a file beside it, and the upstream outbox, all under one
//! quota.
//!
//! redb, not the design card's sled: decision 0006 measured both on this
//! workload (sled's RSS and disk kept creeping; redb stayed flat and starts
//! no threads). One database file, `<data_dir>/events.redb`, holds:
//!
//! - `events`: id -> record JSON ([`EventRecord`]);
//! - `outbox`: (sink, id) -> bytes, one entry per event not yet delivered to
//!   that upstream, written in the same transaction as the event, so an event
//!   is stored if and only if it is queued for delivery;
//! - `meta`: running totals (bytes, count, outbox bytes and drops) so
//!   retention never scans the table.
//!
//! Every commit applies retention in the same transaction: while the store
//! is over its byte quota, its event count or the oldest event is at least
//! `max_age` old (`>=`, on wall-clock time), the oldest event goes, with its
//! outbox entries (counted as dropped) and, after the commit, its snapshot
//! file. A snapshot file is written and synced before the commit that
//! records it; a crash in between leaves an orphan file, removed at the next
//! open, never a record without its file.
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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const OUTBOX: TableDefinition<(u8, u64), u64> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The database file's name in the data directory.
pub const DB_FILE: &str = "events.redb";
/// The snapshot directory's name in the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Quota bytes one record costs besides its snapshot: redb's B-tree pages
/// hold about 1.8 bytes per value byte on this workload (decision 0006), and
/// each record also has its outbox entries.
const RECORD_COST_FACTOR: u64 = 2;
const RECORD_COST_FIXED: u64 = 128;
/// Snapshot files are counted in whole filesystem blocks.
const FILE_BLOCK: u64 = 4096;
/// Part of the quota kept for the database file's own structure (header,
/// allocator state, free pages not yet reused).
pub const DB_RESERVE: u64 = 1 << 20;
/// Events deleted by one retention transaction at most; more go in the next.
const DELETE_CHUNK: usize = 1024;

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
    /// Bytes the database and the snapshots may use together.
    pub max_bytes: u64,
    /// Events kept at most.
    pub max_events: u64,
    /// Events at least this old are deleted.
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
    /// Quota bytes used (records and snapshots).
    pub bytes: u64,
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
}

/// Process-lifetime counters of the store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Events committed.
    pub written: AtomicU64,
    /// Events deleted by retention.
    pub deleted: AtomicU64,
    /// Events lost because a commit failed (disk full or failing).
    pub lost: AtomicU64,
    /// Commits that failed.
    pub failed_commits: AtomicU64,
    /// Times the database was reopened after an I/O error.
    pub reopened: AtomicU64,
}

/// The open store.
pub struct Store {
    db: RwLock<redb::Database>,
    path: PathBuf,
    snapshots: PathBuf,
    limits: StoreLimits,
    sinks: [bool; 2],
    totals: RwLock<StoreTotals>,
    /// Counters since start.
    pub counters: StoreCounters,
    /// The last error, for the status page ("" when the last commit worked).
    last_error: RwLock<String>,
    /// Tests: make the next commit fail as a full disk would.
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
    /// dropped. Removes orphan snapshot files and applies retention, so a
    /// store opened with smaller limits shrinks at once.
    pub fn open(dir: &Path, limits: StoreLimits, sinks: [bool; 2]) -> Result<Store, StoreError> {
        let snapshots = dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", snapshots.display())))?;
        let path = dir.join(DB_FILE);
        let db = open_db(&path, limits.cache_bytes)?;
        let store = Store {
            db: RwLock::new(db),
            path,
            snapshots,
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
        store.remove_orphan_snapshots()?;
        while store.apply_retention(now_unix_ms())?.deleted > 0 {}
        Ok(store)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let totals = {
            w.open_table(EVENTS).map_err(ctx("open events"))?;
            w.open_table(OUTBOX).map_err(ctx("open outbox"))?;
            let meta = w.open_table(META).map_err(ctx("open meta"))?;
            read_totals(&meta)?
        };
        w.commit().map_err(ctx("commit"))?;
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = totals;
        Ok(())
    }

    /// The snapshot file of event `id` (it exists when the record's
    /// `snapshot_bytes` is not 0).
    pub fn snapshot_path(&self, id: u64) -> PathBuf {
        self.snapshots.join(format!("{id}.jpg"))
    }

    /// The current totals.
    pub fn totals(&self) -> StoreTotals {
        *self.totals.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bounds the store was opened with.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// The last commit error ("" when the last commit worked).
    pub fn last_error(&self) -> String {
        self.last_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Quota bytes an event with a record of `record_len` bytes and a
    /// snapshot of `snapshot_len` bytes costs.
    pub fn cost(record_len: usize, snapshot_len: u32) -> u64 {
        RECORD_COST_FACTOR * record_len as u64
            + RECORD_COST_FIXED
            + u64::from(snapshot_len).div_ceil(FILE_BLOCK) * FILE_BLOCK
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
            Ok(report) => {
                self.counters.written.fetch_add(n, Ordering::Relaxed);
                self.counters
                    .deleted
                    .fetch_add(report.deleted, Ordering::Relaxed);
                self.last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
            }
            Err(e) => {
                self.counters.lost.fetch_add(n, Ordering::Relaxed);
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                for item in batch.items() {
                    if item.snapshot_len > 0 {
                        let _ = std::fs::remove_file(self.snapshot_path(item.id));
                    }
                }
                *self
                    .last_error
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = e.0.clone();
                self.reopen_after_error();
            }
        }
        batch.clear();
        result
    }

    fn commit_inner(&self, batch: &Batch, now_ms: i64) -> Result<CommitReport, StoreError> {
        #[cfg(test)]
        if self.fail_next_commit.swap(false, Ordering::Relaxed) {
            return Err(StoreError(
                "event store: commit: No space left on device (injected)".into(),
            ));
        }
        let mut report = CommitReport::default();
        let mut deleted_files: heapless::Vec<u64, DELETE_CHUNK> = heapless::Vec::new();
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let w = db.begin_write().map_err(ctx("begin"))?;
        let totals = {
            let mut events = w.open_table(EVENTS).map_err(ctx("open events"))?;
            let mut outbox = w.open_table(OUTBOX).map_err(ctx("open outbox"))?;
            let mut meta = w.open_table(META).map_err(ctx("open meta"))?;
            let mut t = read_totals(&meta)?;
            for item in batch.items() {
                let record = batch.record(item);
                events
                    .insert(item.id, record)
                    .map_err(ctx("insert event"))?;
                t.events += 1;
                t.bytes += Store::cost(record.len(), item.snapshot_len);
                t.last_id = t.last_id.max(item.id);
                for sink in Sink::ALL {
                    if self.sinks[sink.index()] {
                        let cost = Store::outbox_cost(record.len(), item.snapshot_len);
                        outbox
                            .insert((sink as u8, item.id), cost)
                            .map_err(ctx("queue event"))?;
                        t.outbox_events[sink.index()] += 1;
                        t.outbox_bytes[sink.index()] += cost;
                    }
                }
                report.written += 1;
            }
            self.retain(
                &mut events,
                &mut outbox,
                &mut t,
                now_ms,
                &mut report,
                &mut deleted_files,
            )?;
            self.trim_outboxes(&mut outbox, &mut t, &mut report)?;
            write_totals(&mut meta, &t)?;
            t
        };
        w.commit().map_err(ctx("commit"))?;
        drop(db);
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = totals;
        for id in deleted_files {
            let _ = std::fs::remove_file(self.snapshot_path(id));
        }
        Ok(report)
    }

    /// Deletes the oldest events while over a limit, at most
    /// [`DELETE_CHUNK`] per call (their ids go to `deleted`).
    fn retain(
        &self,
        events: &mut redb::Table<u64, &[u8]>,
        outbox: &mut redb::Table<(u8, u64), u64>,
        t: &mut StoreTotals,
        now_ms: i64,
        report: &mut CommitReport,
        deleted: &mut heapless::Vec<u64, DELETE_CHUNK>,
    ) -> Result<(), StoreError> {
        let quota = self.byte_quota();
        let max_age_ms = self.limits.max_age.as_millis() as i64;
        while !deleted.is_full() {
            let Some((id, cost, unix_ms, snapshot)) = ({
                let first = events.first().map_err(ctx("read oldest"))?;
                first.map(|(k, v)| {
                    let bytes = v.value();
                    let rec = EventRecord::from_json(bytes);
                    let (unix_ms, snap) =
                        rec.map_or((i64::MIN, 0), |r| (r.unix_ms, r.snapshot_bytes));
                    (k.value(), Store::cost(bytes.len(), snap), unix_ms, snap)
                })
            }) else {
                break;
            };
            // `>=` on the age, and a clock that went backwards (now before
            // the event) deletes nothing by age: the count and byte limits
            // still bound the store while the clock is wrong.
            let too_old = now_ms.saturating_sub(unix_ms) >= max_age_ms && now_ms >= unix_ms;
            if t.events <= self.limits.max_events && t.bytes <= quota && !too_old {
                break;
            }
            events.remove(id).map_err(ctx("delete event"))?;
            t.events = t.events.saturating_sub(1);
            t.bytes = t.bytes.saturating_sub(cost);
            for sink in Sink::ALL {
                if let Some(c) = outbox
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
                let _ = deleted.push(id);
            }
        }
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
        w.commit().map_err(ctx("commit"))?;
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = totals;
        Ok(())
    }

    /// Removes snapshot files that no record refers to (left by a crash
    /// between writing a file and committing its record, or between
    /// deleting a record and its file).
    fn remove_orphan_snapshots(&self) -> Result<(), StoreError> {
        let dir = std::fs::read_dir(&self.snapshots)
            .map_err(|e| StoreError(format!("cannot list {}: {e}", self.snapshots.display())))?;
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let mut removed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jpg"))
                .and_then(|n| n.parse::<u64>().ok());
            let keep = match id {
                Some(id) => events.get(id).map_err(ctx("read event"))?.is_some(),
                None => false,
            };
            if !keep && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            log::info!("event store: removed {removed} snapshot files without a record");
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
        w.commit().map_err(ctx("commit"))?;
        drop(db);
        *self.totals.write().unwrap_or_else(PoisonError::into_inner) = totals;
        Ok(removed)
    }

    /// Counts the tables' entries and sums their costs (tests and the
    /// consistency check): (events, bytes, outbox events per sink).
    pub fn recount(&self) -> Result<(u64, u64, [u64; 2]), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        let outbox = r.open_table(OUTBOX).map_err(ctx("open outbox"))?;
        let (mut n, mut bytes) = (0, 0);
        for e in events.iter().map_err(ctx("read events"))? {
            let (_, v) = e.map_err(ctx("read event"))?;
            let snap = EventRecord::from_json(v.value()).map_or(0, |r| r.snapshot_bytes);
            n += 1;
            bytes += Store::cost(v.value().len(), snap);
        }
        let mut pending = [0; 2];
        for e in outbox.iter().map_err(ctx("read outbox"))? {
            let (k, _) = e.map_err(ctx("read outbox"))?;
            pending[usize::from(k.value().0).min(1)] += 1;
        }
        Ok((n, bytes, pending))
    }
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
