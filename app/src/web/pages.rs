//! Pages of `/api/events`, written into a response buffer one event at a
//! time.
//!
//! A page used to be three copies of up to 500 events (the records, their
//! JSON views, the text). Here each record is read, written into the
//! response buffer and dropped before the next is read, so a page costs its
//! text and one record. A page ends early when the next event would not fit
//! the buffer; `next_after` says where to continue either way, and a client
//! pages until it gets an empty page. Stored pages are written on the disk
//! thread (the store read may block), in-memory ones on the runtime.

use super::api::{self, MAX_PAGE};
use super::bodies::Lease;
use super::WebContext;
use crate::store::{Store, StoreError};
use serde::Serialize;

/// The longest end of a page: `],"next_after":<u64>}`.
const TAIL: usize = 40;

/// A page being written: `{"events":[` ... `],"next_after":N}`.
struct Page<'a> {
    out: &'a mut Lease,
    /// One event's JSON, before it is known to fit.
    item: Vec<u8>,
    events: usize,
    next_after: u64,
}

impl<'a> Page<'a> {
    fn new(out: &'a mut Lease, after: u64) -> Page<'a> {
        out.clear();
        out.push(b"{\"events\":[");
        Page {
            out,
            item: Vec::with_capacity(1 << 10),
            events: 0,
            next_after: after,
        }
    }

    /// Adds event `id`; false when it does not fit (the page ends before
    /// it). An event too large for an empty page is skipped, so that
    /// paging moves past it.
    fn add(&mut self, id: u64, doc: &impl Serialize) -> bool {
        self.item.clear();
        if serde_json::to_writer(&mut self.item, doc).is_err() {
            return true;
        }
        let comma = usize::from(self.events > 0);
        if comma + self.item.len() + TAIL > self.out.room() {
            if self.events == 0 {
                log::warn!("event {id} is too large for a page of /api/events; skipped");
                self.next_after = id;
                return true;
            }
            return false;
        }
        if comma == 1 {
            self.out.push(b",");
        }
        self.out.push(&self.item);
        self.events += 1;
        self.next_after = id;
        true
    }

    fn finish(self) {
        let mut tail = [0u8; TAIL];
        let mut w = &mut tail[..];
        let _ = std::io::Write::write_fmt(
            &mut w,
            format_args!("],\"next_after\":{}}}", self.next_after),
        );
        let n = TAIL - w.len();
        self.out.push(&tail[..n]);
    }
}

/// Writes the page of stored events after `after` (at most `limit`, capped
/// at [`MAX_PAGE`]) into `out`. Blocks on the store: call it on the disk
/// thread.
pub fn write_stored(
    store: &Store,
    after: u64,
    limit: usize,
    out: &mut Lease,
) -> Result<(), StoreError> {
    let mut page = Page::new(out, after);
    store.each_after(after, limit.min(MAX_PAGE), |rec| {
        page.add(rec.id, &api::stored_event(&rec))
    })?;
    page.finish();
    Ok(())
}

/// Writes the page of in-memory events after `after` (at most `limit`,
/// capped at [`MAX_PAGE`]) into `out`: the page when the store did not
/// open.
pub fn write_recent(ctx: &WebContext, after: u64, limit: usize, out: &mut Lease) {
    let mut found = Vec::with_capacity(limit.min(MAX_PAGE));
    ctx.events.after(after, limit.min(MAX_PAGE), &mut found);
    let mut page = Page::new(out, after);
    for e in &found {
        if !page.add(e.id, &api::event(ctx, e)) {
            break;
        }
    }
    page.finish();
}

#[cfg(test)]
mod tests {
    use super::super::bodies::Bodies;
    use super::*;
    use crate::store::{Batch, EventRecord, StoreLimits};
    use crate::test_dir::TempDir;
    use std::time::Duration;

    fn record(id: u64, camera: &str) -> EventRecord {
        EventRecord {
            id,
            camera: camera.into(),
            unix_ms: 1_700_000_000_000 + id as i64,
            pts_us: id as i64 * 40_000,
            class_id: 0,
            class: "person".into(),
            score: 0.5,
            bbox: [0.1, 0.2, 0.3, 0.4],
            snapshot_bytes: 1000,
            clip: Some(id),
            clock_unsynced: false,
        }
    }

    fn store_with(dir: &TempDir, n: u64, camera: &str) -> Store {
        let limits = StoreLimits {
            max_bytes: 1 << 30,
            max_events: 100_000,
            max_age: Duration::from_secs(86_400 * 365),
            outbox_max_bytes: 1 << 20,
            cache_bytes: 1 << 20,
        };
        let store = Store::open(&dir.0, limits, [false, false]).unwrap();
        let mut batch = Batch::with_capacity(64);
        for id in 1..=n {
            batch.push(&record(id, camera)).unwrap();
            if batch.is_full() {
                store.commit(&mut batch, 1_700_000_000_000).unwrap();
            }
        }
        store.commit(&mut batch, 1_700_000_000_000).unwrap();
        store
    }

    fn page(store: &Store, bodies: &std::sync::Arc<Bodies>, after: u64) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut lease = rt.block_on(bodies.take()).unwrap();
        write_stored(store, after, MAX_PAGE, &mut lease).unwrap();
        assert!(!lease.overflowed());
        serde_json::from_slice(lease.as_ref()).unwrap()
    }

    /// Pages end early when the buffer is full, never past it, and paging
    /// with `next_after` still sees every event once, in order.
    #[test]
    fn a_full_buffer_ends_the_page_and_paging_sees_every_event_once() {
        let dir = TempDir::new("pages");
        let store = store_with(&dir, 700, &"c".repeat(64));
        let bodies = Bodies::with(1, 64 << 10);
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let p = page(&store, &bodies, after);
            let events = p["events"].as_array().unwrap();
            if events.is_empty() {
                assert_eq!(p["next_after"], after);
                break;
            }
            assert!(
                events.len() < MAX_PAGE,
                "a 64 KiB page holds fewer than 500"
            );
            seen.extend(events.iter().map(|e| e["id"].as_u64().unwrap()));
            after = p["next_after"].as_u64().unwrap();
            assert_eq!(Some(after), seen.last().copied());
            pages += 1;
        }
        assert_eq!(seen, (1..=700).collect::<Vec<_>>());
        assert!(pages > 2, "{pages} pages");
    }

    /// The default buffer holds a whole page of 500 events with the longest
    /// camera names and ids.
    #[test]
    fn the_default_buffer_holds_a_full_page_of_the_largest_events() {
        let dir = TempDir::new("pages-full");
        let store = store_with(&dir, 600, &"c".repeat(64));
        let bodies = Bodies::new(1);
        let p = page(&store, &bodies, 0);
        assert_eq!(p["events"].as_array().unwrap().len(), MAX_PAGE);
        assert_eq!(p["next_after"], 500);
        assert_eq!(p["events"][0]["clip"], "/api/events/1/clip.mp4");
    }
}
