//! Retention: which items go when the store is over a limit, inside the
//! transaction that put it there.
//!
//! One policy for every write (an event batch, a clip reservation, the
//! idle tick): over the byte quota the oldest item goes, event or clip; over
//! the event count the oldest event; past `max_age` whatever is that old.
//! Files go only after the transaction commits, and one transaction deletes
//! at most [`DELETE_CHUNK`] of them, so its list of doomed files is a fixed
//! array rather than a growing one; the caller loops for more.

use super::error::ctx;
use super::tables::Tables;
use super::{
    blocks, Batch, CommitReport, EventRecord, Sink, Store, StoreError, StoreTotals, DB_RESERVE,
};
use redb::ReadableTable;

/// Files (snapshots and clips) deleted by one retention transaction at
/// most; more go in the next.
pub(super) const DELETE_CHUNK: usize = 1024;

/// A file whose item a transaction deleted, removed once it commits.
#[derive(Clone, Copy, Debug)]
pub(super) enum Doomed {
    Snapshot(u64),
    Clip(u64),
}

/// The files one retention transaction deletes: fixed, so a transaction
/// deleting many items holds no growing list.
pub(super) type DoomedFiles = heapless::Vec<Doomed, DELETE_CHUNK>;

impl Store {
    /// Bytes events and clips may use: the quota less the database's own
    /// reserve.
    pub(super) fn byte_quota(&self) -> u64 {
        self.limits.max_bytes.saturating_sub(DB_RESERVE)
    }

    /// Applies retention alone (at open, and when time passes without
    /// events): one chunk of deletions.
    pub fn apply_retention(&self, now_ms: i64) -> Result<CommitReport, StoreError> {
        self.commit(&mut Batch::with_capacity(0), now_ms)
    }

    /// Deletes the oldest items while over a limit, until [`DELETE_CHUNK`]
    /// files are to be removed (they go to `doomed`). Over the byte quota
    /// the older of the oldest event and the oldest clip goes; over the
    /// count the oldest event; past `max_age` whichever oldest is too old.
    pub(super) fn retain(
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
    pub(super) fn delete_clip(
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

    /// Removes the files of items a committed transaction deleted.
    pub(super) fn remove_files(&self, doomed: DoomedFiles) {
        for d in doomed {
            let path = match d {
                Doomed::Snapshot(id) => self.snapshot_path(id),
                Doomed::Clip(id) => self.clip_path(id),
            };
            let _ = std::fs::remove_file(path);
        }
    }
}
