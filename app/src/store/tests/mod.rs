//! The store's tests: events, retention, the outbox and failures here;
//! clips in `clips`, error kinds and their texts in `errors`. Each test
//! opens its own store in a fresh temporary directory.

use super::*;
use crate::test_dir::TempDir;
use std::time::Duration;

mod clips;
mod errors;

const DAY_MS: i64 = 86_400_000;

fn limits() -> StoreLimits {
    StoreLimits {
        max_bytes: 64 << 20,
        max_events: 1_000_000,
        max_age: Duration::from_secs(30 * 86_400),
        outbox_max_bytes: 32 << 20,
        cache_bytes: 1 << 20,
    }
}

fn record(id: u64, unix_ms: i64, snapshot_bytes: u32) -> EventRecord {
    EventRecord {
        id,
        camera: "gate".into(),
        unix_ms,
        pts_us: id as i64 * 40_000,
        class_id: 1,
        class: "person".into(),
        score: 0.75,
        bbox: [0.1, 0.2, 0.3, 0.4],
        snapshot_bytes,
        clip: None,
        clock_unsynced: false,
    }
}

/// Stores events `ids` at `unix_ms`, each with a snapshot file of
/// `snapshot` bytes (none when 0), in batches of 64.
fn put(store: &Store, ids: std::ops::Range<u64>, unix_ms: i64, snapshot: u32) {
    let mut batch = Batch::with_capacity(64);
    for id in ids {
        if snapshot > 0 {
            std::fs::write(store.snapshot_path(id), vec![0xAB; snapshot as usize]).unwrap();
        }
        batch.push(&record(id, unix_ms, snapshot)).unwrap();
        if batch.is_full() {
            store.commit(&mut batch, unix_ms).unwrap();
        }
    }
    store.commit(&mut batch, unix_ms).unwrap();
    assert!(batch.is_empty());
}

fn ids(store: &Store) -> Vec<u64> {
    store
        .after(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

fn consistent(store: &Store) {
    let t = store.totals();
    let counted = Recount {
        events: t.events,
        clips: t.clips,
        clip_bytes: t.clip_bytes,
        bytes: t.bytes,
        outbox_events: t.outbox_events,
    };
    assert_eq!(store.recount().unwrap(), counted);
}

#[test]
fn events_are_stored_read_back_and_survive_reopen() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("reopen");
    {
        let store = Store::open(&dir.0, limits(), [true, false]).unwrap();
        put(&store, 1..201, t0, 0);
        assert_eq!(store.totals().events, 200);
        assert_eq!(store.totals().last_id, 200);
        assert_eq!(store.get(17).unwrap(), Some(record(17, t0, 0)));
        let latest: Vec<u64> = store
            .latest(None, 150, 3)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(latest, vec![149, 148, 147]);
        assert_eq!(store.latest(Some("other"), u64::MAX, 3).unwrap(), vec![]);
        consistent(&store);
    }
    let store = Store::open(&dir.0, limits(), [true, false]).unwrap();
    assert_eq!(store.totals().events, 200);
    assert_eq!(store.totals().last_id, 200);
    assert_eq!(store.totals().outbox_events, [200, 0]);
    assert_eq!(ids(&store), (1..201).collect::<Vec<_>>());
    consistent(&store);
}

#[test]
fn retention_by_count_keeps_the_newest() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("count");
    let store = Store::open(
        &dir.0,
        StoreLimits {
            max_events: 100,
            ..limits()
        },
        [false, false],
    )
    .unwrap();
    put(&store, 1..1001, t0, 0);
    assert_eq!(ids(&store), (901..1001).collect::<Vec<_>>());
    assert_eq!(store.counters.deleted.load(Ordering::Relaxed), 900);
    consistent(&store);
}

#[test]
fn retention_by_bytes_keeps_quota_and_removes_files() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("bytes");
    let lim = StoreLimits {
        max_bytes: 4 << 20,
        ..limits()
    };
    let store = Store::open(&dir.0, lim.clone(), [false, false]).unwrap();
    put(&store, 1..2001, t0, 20_000);
    let t = store.totals();
    assert!(t.bytes <= lim.max_bytes - DB_RESERVE, "{t:?}");
    // Each event costs 20 KiB rounded to 5 blocks, plus its record.
    assert!(t.events > 100 && t.events < 200, "{t:?}");
    let files = std::fs::read_dir(dir.0.join(SNAPSHOT_DIR)).unwrap().count() as u64;
    assert_eq!(
        files, t.events,
        "a file per kept event, none for deleted ones"
    );
    // What is on disk stays inside the quota, database file included.
    let on_disk: u64 = std::fs::read_dir(dir.0.join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>()
        + std::fs::metadata(dir.0.join(DB_FILE)).unwrap().len();
    assert!(on_disk <= lim.max_bytes, "{on_disk} on disk");
    consistent(&store);
}

#[test]
fn age_expiry_is_at_least_max_age_and_survives_clock_jumps() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("age");
    let store = Store::open(
        &dir.0,
        StoreLimits {
            max_age: Duration::from_secs(86_400),
            ..limits()
        },
        [true, true],
    )
    .unwrap();
    put(&store, 1..11, t0, 0);
    put(&store, 11..21, t0 + 1000, 0);
    // One millisecond short of a day: nothing goes.
    store.apply_retention(t0 + DAY_MS - 1).unwrap();
    assert_eq!(store.totals().events, 20);
    // Exactly a day: the first ten go (>=, not ==).
    store.apply_retention(t0 + DAY_MS).unwrap();
    assert_eq!(ids(&store), (11..21).collect::<Vec<_>>());
    // Undelivered events deleted by age are counted as dropped per sink.
    assert_eq!(store.totals().outbox_dropped, [10, 10]);
    // The clock jumps back a year: nothing is deleted by age...
    store.apply_retention(t0 - 365 * DAY_MS).unwrap();
    assert_eq!(store.totals().events, 10);
    // ...and a jump far past the end (a skipped stretch) still expires all.
    store.apply_retention(t0 + 400 * DAY_MS).unwrap();
    assert_eq!(store.totals().events, 0);
    consistent(&store);
}

#[test]
fn outbox_settles_in_order_and_drops_oldest_over_quota() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("outbox");
    let store = Store::open(
        &dir.0,
        StoreLimits {
            outbox_max_bytes: 1 << 20,
            ..limits()
        },
        [true, true],
    )
    .unwrap();
    put(&store, 1..11, t0, 0);
    assert_eq!(store.next_pending(Sink::Http, 0).unwrap().unwrap().id, 1);
    assert!(store.settle(Sink::Http, 1, false).unwrap());
    assert!(!store.settle(Sink::Http, 1, true).unwrap(), "settled twice");
    assert_eq!(store.next_pending(Sink::Http, 0).unwrap().unwrap().id, 2);
    // The other sink's queue is its own.
    assert_eq!(store.next_pending(Sink::Mqtt, 0).unwrap().unwrap().id, 1);
    assert_eq!(store.totals().outbox_events, [9, 10]);
    // 100 events of 20 KB overflow the 1 MiB outbox: the oldest go.
    put(&store, 11..111, t0, 20_000);
    let t = store.totals();
    assert!(
        t.outbox_bytes[0] <= 1 << 20 && t.outbox_bytes[1] <= 1 << 20,
        "{t:?}"
    );
    assert!(t.outbox_dropped[0] > 0 && t.outbox_dropped[0] == t.outbox_dropped[1] - 1);
    let first = store.next_pending(Sink::Http, 0).unwrap().unwrap().id;
    assert_eq!(first, 10 + t.outbox_dropped[0] - 8, "{t:?}");
    // Dropped from the outbox is not deleted from the store.
    assert_eq!(t.events, 110);
    consistent(&store);
}

#[test]
fn reopen_removes_orphans_and_outboxes_no_longer_configured() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("orphans");
    {
        let store = Store::open(&dir.0, limits(), [true, true]).unwrap();
        put(&store, 1..6, t0, 100);
        // A crash after writing a snapshot file but before its commit.
        std::fs::write(store.snapshot_path(6), b"partial").unwrap();
        std::fs::write(dir.0.join(SNAPSHOT_DIR).join("junk.tmp"), b"x").unwrap();
    }
    let store = Store::open(&dir.0, limits(), [true, false]).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir.0.join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]);
    let t = store.totals();
    assert_eq!((t.outbox_events, t.outbox_dropped), ([5, 0], [0, 5]));
    consistent(&store);
}

#[test]
fn a_failed_commit_empties_the_batch_counts_the_loss_and_recovers() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("fail");
    let store = Store::open(&dir.0, limits(), [true, false]).unwrap();
    put(&store, 1..3, t0, 0);
    let mut batch = Batch::with_capacity(4);
    std::fs::write(store.snapshot_path(3), b"jpeg").unwrap();
    batch.push(&record(3, t0, 4)).unwrap();
    batch.push(&record(4, t0, 0)).unwrap();
    store.fail_next_commit.store(true, Ordering::Relaxed);
    let err = store.commit(&mut batch, t0).unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(batch.is_empty(), "the batch is empty after a failed commit");
    assert!(
        !store.snapshot_path(3).exists(),
        "the lost event's file is removed"
    );
    assert_eq!(store.counters.lost.load(Ordering::Relaxed), 2);
    // The status page shows the error as its text.
    assert_eq!(
        store.last_error(),
        "event store: commit: I/O error: No space left on device (os error 28)"
    );
    assert_eq!(store.counters.reopened.load(Ordering::Relaxed), 1);
    // The store works again, and the error clears.
    put(&store, 5..6, t0, 0);
    assert!(store.last_error().is_empty());
    assert_eq!(ids(&store), vec![1, 2, 5]);
    consistent(&store);
}

#[test]
fn the_batch_never_grows_whatever_is_pushed() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("grow");
    let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
    let mut batch = Batch::with_capacity(8);
    let before = batch.allocated_bytes();
    assert_eq!(before, Batch::bytes_for(8));
    let mut long = record(1, t0, 0);
    long.camera = "c".repeat(600);
    assert_eq!(batch.push(&long), Err(batch::PushError::TooLong));
    assert!(batch.is_empty());
    for i in 0..1000u64 {
        if batch.push(&record(i + 1, t0, 0)) == Err(batch::PushError::Full) {
            assert_eq!(batch.len(), 8);
            store.commit(&mut batch, t0).unwrap();
            batch.push(&record(i + 1, t0, 0)).unwrap();
        }
    }
    assert_eq!(batch.allocated_bytes(), before, "the batch never grows");
    store.commit(&mut batch, t0).unwrap();
    assert_eq!(store.totals().events, 1000);
}
