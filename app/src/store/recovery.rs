//! Recovery: bringing the database and the files beside it back in line
//! after a crash, a stop mid-clip, or an I/O error.
//!
//! At open, clip entries are corrected to their files' sizes (or dropped
//! when the file is gone) and files no entry names are removed; a crash can
//! leave either, never a record without its file. After an I/O error redb
//! refuses further use, so the store reopens the database.

use super::error::{ctx, Cause, During};
use super::retention::DELETE_CHUNK;
use super::tables::{read_totals, write_totals, CLIPS, CLIPS_DONE, EVENTS, META};
use super::{blocks, open_db, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

impl Store {
    /// Brings the clips table in line with the clip files: an entry whose
    /// file is missing goes, and every other entry's bytes become its
    /// file's size (a crash or a stop mid-clip leaves the reservation ahead
    /// of the file). Before retention, so it counts what is on disk. No
    /// clip is being written at open, so every clip left is then marked
    /// finished (a clip cut short by a stop or a crash is playable up to
    /// its last whole fragment, and clip upload sends it).
    pub(super) fn reconcile_clips(&self) -> Result<(), StoreError> {
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
    pub(super) fn remove_orphan_files(&self) -> Result<(), StoreError> {
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
    pub(super) fn reopen_after_error(&self) {
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
}

/// Removes the files in `dir` not named `<id><ext>` with `stored(id)`;
/// how many.
fn remove_unknown_files(
    dir: &Path,
    ext: &str,
    mut stored: impl FnMut(u64) -> Result<bool, StoreError>,
) -> Result<u64, StoreError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StoreError::new(During::ListDir(dir.to_path_buf()), Cause::Fs(e)))?;
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
