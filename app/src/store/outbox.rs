//! The upstream outbox: the events each configured upstream has yet to
//! receive, their delivery order, and the per-upstream byte quota.
//!
//! An event is queued in the transaction that stores it (see
//! [`Store::commit`]), so it is stored if and only if it is queued. A
//! delivered event is settled off its outbox; over the quota the oldest
//! undelivered go and are counted as dropped, as are the entries of an
//! upstream no longer configured.

use super::error::ctx;
use super::tables::{read_totals, write_totals, EVENTS, META, OUTBOX};
use super::{CommitReport, EventRecord, Sink, Store, StoreError, StoreTotals};
use redb::{ReadableDatabase, ReadableTable};
use std::sync::PoisonError;

impl Store {
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

    /// Bytes one event costs in an outbox: what delivering it sends.
    pub(super) fn outbox_cost(record_len: usize, snapshot_len: u32) -> u64 {
        record_len as u64 + u64::from(snapshot_len)
    }

    /// Drops each outbox's oldest entries while it is over its quota.
    pub(super) fn trim_outboxes(
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

    /// Drops, as delivered to no one, the entries of every upstream not
    /// configured now (at open).
    pub(super) fn drop_unconfigured_outboxes(&self) -> Result<(), StoreError> {
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
}
