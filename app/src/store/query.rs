//! Reads: single events, pages of events for the API, and the recount of
//! every table that checks the running totals.
//!
//! Each read is its own redb read transaction, which never blocks the
//! writer; a record that does not parse is skipped, never a panic.

use super::error::ctx;
use super::tables::{CLIPS, EVENTS, OUTBOX};
use super::{blocks, EventRecord, Store, StoreError};
use redb::{ReadableDatabase, ReadableTable};
use std::sync::PoisonError;

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

impl Store {
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
        let mut out = Vec::with_capacity(limit.min(256));
        self.each_after(after, limit, |rec| {
            out.push(rec);
            true
        })?;
        Ok(out)
    }

    /// Hands up to `limit` events with id above `after` to `f`, oldest
    /// first, one at a time (nothing is collected), until `f` answers false.
    pub fn each_after(
        &self,
        after: u64,
        limit: usize,
        mut f: impl FnMut(EventRecord) -> bool,
    ) -> Result<(), StoreError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let r = db.begin_read().map_err(ctx("begin read"))?;
        let events = r.open_table(EVENTS).map_err(ctx("open events"))?;
        for entry in events
            .range(after.saturating_add(1)..)
            .map_err(ctx("read events"))?
            .take(limit)
        {
            let (_, v) = entry.map_err(ctx("read event"))?;
            if let Some(rec) = EventRecord::from_json(v.value()) {
                if !f(rec) {
                    break;
                }
            }
        }
        Ok(())
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
