//! Event clips in the store: quota reserved ahead of the recorder's
//! writes, final sizes, and the clip-upload cursors.
//!
//! The recorder reserves a chunk before writing it, so a clip file never
//! holds bytes the quota did not grant; retention may evict the very clip
//! being written ([`ClipGrant::Evicted`]), and the recorder then stops. A
//! finished clip is marked in `clips_done`, which clip upload walks in id
//! order behind each upstream's cursor.

use super::error::ctx;
use super::retention::DoomedFiles;
use super::tables::{read_totals, write_totals, Tables, CLIPS, CLIPS_DONE, META};
use super::{blocks, CommitReport, Sink, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable};
use std::sync::PoisonError;

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

impl Store {
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
}
