//! The database's schema: the redb tables, the running totals kept in
//! `meta`, and the per-upstream clip-upload cursors.
//!
//! Every other file of the store reads and writes through these
//! definitions, so a table's key and value types are stated once. Totals
//! live in `meta` rather than being counted, so retention never scans a
//! table; [`super::Store::recount`] counts them to check.

use super::error::ctx;
use super::{Sink, Store, StoreError, StoreTotals};
use redb::{ReadableTable, TableDefinition};
use std::sync::PoisonError;

/// Event id -> record JSON.
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// (sink, event id) -> outbox cost in bytes, one entry per event not yet
/// delivered to that upstream.
pub(super) const OUTBOX: TableDefinition<(u8, u64), u64> = TableDefinition::new("outbox");

/// Running totals and upload cursors, by name.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Clip id -> (reserved or final bytes, started unix ms).
pub(super) const CLIPS: TableDefinition<u64, (u64, i64)> = TableDefinition::new("clips");

/// Clip id -> final bytes, for every clip whose file is complete (the
/// recorder finished it, or the next open found it left by a stop or a
/// crash). Clip upload reads it; an entry goes with its clip.
pub(super) const CLIPS_DONE: TableDefinition<u64, u64> = TableDefinition::new("clips_done");

/// The tables a write transaction works on.
pub(super) struct Tables<'txn> {
    pub(super) events: redb::Table<'txn, u64, &'static [u8]>,
    pub(super) outbox: redb::Table<'txn, (u8, u64), u64>,
    pub(super) clips: redb::Table<'txn, u64, (u64, i64)>,
    pub(super) clips_done: redb::Table<'txn, u64, u64>,
    pub(super) meta: redb::Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(w: &'txn redb::WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            events: w.open_table(EVENTS).map_err(ctx("open events"))?,
            outbox: w.open_table(OUTBOX).map_err(ctx("open outbox"))?,
            clips: w.open_table(CLIPS).map_err(ctx("open clips"))?,
            clips_done: w.open_table(CLIPS_DONE).map_err(ctx("open clips_done"))?,
            meta: w.open_table(META).map_err(ctx("open meta"))?,
        })
    }
}

impl Store {
    /// Creates any table missing (all of them in a new database), starts
    /// the upload cursors of a database from before clip upload, and
    /// publishes the totals `meta` holds.
    pub(super) fn init_tables(&self) -> Result<(), StoreError> {
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

    /// The clip-upload cursor's key in `meta`.
    pub(super) fn upload_cursor_key(sink: Sink) -> &'static str {
        match sink {
            Sink::Http => "clip_uploaded_http",
            Sink::Mqtt => "clip_uploaded_mqtt",
        }
    }
}

/// The totals as `meta` holds them (0 for a key never written).
pub(super) fn read_totals(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<StoreTotals, StoreError> {
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

/// Writes every total to `meta`.
pub(super) fn write_totals(
    meta: &mut redb::Table<&str, u64>,
    t: &StoreTotals,
) -> Result<(), StoreError> {
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
