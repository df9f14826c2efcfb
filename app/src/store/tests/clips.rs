//! Clip tests: reservations and final sizes in the quota, eviction, clip
//! age, repairs at open, and the clip-upload cursors.

use super::*;
use crate::store::tables::{CLIPS_DONE, META};

/// Writes clip `id`'s file with `len` bytes, as the recorder would have.
fn clip_file(store: &Store, id: u64, len: usize) {
    std::fs::write(store.clip_path(id), vec![0x5A; len]).unwrap();
}

fn clip_files(dir: &TempDir) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.0.join(CLIP_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    files
}

/// Limits whose byte quota (after the database's reserve) is 1 MiB.
fn one_mib_quota() -> StoreLimits {
    StoreLimits {
        max_bytes: DB_RESERVE + (1 << 20),
        ..limits()
    }
}

#[test]
fn clip_reservations_and_final_sizes_count_in_blocks() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-account");
    {
        let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
        put(&store, 1..4, t0, 0);
        let events_bytes = store.totals().bytes;
        assert_eq!(store.clip_reserve(3, 1000, t0).unwrap(), ClipGrant::Granted);
        let t = store.totals();
        assert_eq!(
            (t.clips, t.clip_bytes),
            (1, 4096),
            "one block for 1000 bytes"
        );
        assert_eq!(t.bytes, events_bytes + 4096, "clips share the quota");
        assert_eq!(store.clip_bytes(3).unwrap(), Some(1000));
        // Reserving ahead adds to the same clip.
        assert_eq!(store.clip_reserve(3, 4000, t0).unwrap(), ClipGrant::Granted);
        assert_eq!(store.clip_bytes(3).unwrap(), Some(5000));
        assert_eq!(store.totals().clip_bytes, 2 * 4096);
        // The final size gives back what was not used, rounded up to blocks.
        store.clip_finish(3, 4097).unwrap();
        assert_eq!(store.clip_bytes(3).unwrap(), Some(4097));
        assert_eq!(store.totals().clip_bytes, 2 * 4096);
        store.clip_finish(3, 4096).unwrap();
        assert_eq!(store.totals().clip_bytes, 4096);
        assert_eq!(store.totals().bytes, events_bytes + 4096);
        clip_file(&store, 3, 4096);
        // Finishing a clip the store does not have changes nothing.
        let before = store.totals();
        store.clip_finish(99, 5).unwrap();
        assert_eq!(store.clip_bytes(99).unwrap(), None);
        assert_eq!(store.totals(), before);
        consistent(&store);
    }
    let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
    assert_eq!(store.clip_bytes(3).unwrap(), Some(4096));
    let t = store.totals();
    assert_eq!((t.events, t.clips, t.clip_bytes), (3, 1, 4096));
    consistent(&store);
}

#[test]
fn over_quota_the_oldest_item_goes_first_clip_or_event() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-oldest");
    let lim = one_mib_quota();
    let quota = lim.max_bytes - DB_RESERVE;
    let store = Store::open(&dir.0, lim, [true, false]).unwrap();
    // Clip 1 (opened by event 1, already deleted) of 600 KB, then ten events
    // of about 21 KB each: 811 KB.
    assert_eq!(
        store.clip_reserve(1, 600_000, t0).unwrap(),
        ClipGrant::Granted
    );
    clip_file(&store, 1, 600_000);
    put(&store, 2..12, t0, 20_000);
    assert_eq!(store.totals().clips, 1);
    // Clip 12 needs 400 KB: clip 1, the oldest item, goes, no event does.
    assert_eq!(
        store.clip_reserve(12, 400_000, t0).unwrap(),
        ClipGrant::Granted
    );
    assert_eq!(store.clip_bytes(1).unwrap(), None);
    assert!(
        !store.clip_path(1).exists(),
        "the deleted clip's file is removed"
    );
    assert_eq!(ids(&store), (2..12).collect::<Vec<_>>());
    assert_eq!(store.counters.clips_deleted.load(Ordering::Relaxed), 1);
    assert_eq!(store.totals().clips_evicted_through, 1);
    // A recorder still writing clip 1 learns it was evicted: it is not
    // created again.
    assert_eq!(store.clip_reserve(1, 4096, t0).unwrap(), ClipGrant::Evicted);
    assert_eq!(store.clip_bytes(1).unwrap(), None);
    // Clip 12 grows by 500 KB: now the oldest events go, never the clip
    // they are older than, and deleting events leaves clips alone.
    assert_eq!(
        store.clip_reserve(12, 500_000, t0).unwrap(),
        ClipGrant::Granted
    );
    assert_eq!(store.clip_bytes(12).unwrap(), Some(900_000));
    let kept = ids(&store);
    assert!(kept[0] > 2 && kept.ends_with(&[11]), "{kept:?}");
    let t = store.totals();
    assert!(t.bytes <= quota, "{t:?}");
    // Their snapshots went with them, and they left the outbox.
    assert!(!store.snapshot_path(2).exists());
    assert_eq!(t.outbox_dropped[0], 10 - kept.len() as u64);
    assert_eq!(
        store.counters.deleted.load(Ordering::Relaxed),
        t.outbox_dropped[0]
    );
    consistent(&store);
}

#[test]
fn a_clip_larger_than_the_quota_is_evicted_alone() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-evicted");
    let store = Store::open(&dir.0, one_mib_quota(), [false, false]).unwrap();
    put(&store, 1..6, t0, 1000);
    assert_eq!(
        store.clip_reserve(6, 256 << 10, t0).unwrap(),
        ClipGrant::Granted
    );
    clip_file(&store, 6, 256 << 10);
    // More than the whole quota: the clip goes, its file too, and the older
    // events stay (deleting them could not have made room).
    assert_eq!(
        store.clip_reserve(6, 1 << 20, t0).unwrap(),
        ClipGrant::Evicted
    );
    assert!(!store.clip_path(6).exists());
    assert_eq!(store.clip_bytes(6).unwrap(), None);
    assert_eq!(ids(&store), (1..6).collect::<Vec<_>>());
    let t = store.totals();
    assert_eq!((t.clips, t.clip_bytes), (0, 0));
    assert_eq!(store.counters.clips_deleted.load(Ordering::Relaxed), 1);
    // The recorder finishing the evicted clip changes nothing.
    store.clip_finish(6, 300 << 10).unwrap();
    assert_eq!(store.totals(), t);
    // A clip that fits once the older items go is granted, and nothing is
    // left over the quota.
    assert_eq!(
        store.clip_reserve(7, 1 << 20, t0).unwrap(),
        ClipGrant::Granted
    );
    assert_eq!(store.totals().events, 0, "the older events made room");
    assert!(store.totals().bytes <= 1 << 20);
    consistent(&store);
}

#[test]
fn clip_age_expiry_is_at_least_max_age_and_survives_clock_jumps() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-age");
    let store = Store::open(
        &dir.0,
        StoreLimits {
            max_age: Duration::from_secs(86_400),
            max_events: 2,
            ..limits()
        },
        [false, false],
    )
    .unwrap();
    for (id, started) in [(1, t0), (2, t0 + 1000)] {
        assert_eq!(
            store.clip_reserve(id, 10_000, started).unwrap(),
            ClipGrant::Granted
        );
        clip_file(&store, id, 10_000);
    }
    // The event count limit is for events only.
    put(&store, 3..7, t0 + 2000, 0);
    assert_eq!(ids(&store), vec![5, 6]);
    assert_eq!(store.totals().clips, 2);
    // One millisecond short of a day: nothing goes.
    store.apply_retention(t0 + DAY_MS - 1).unwrap();
    assert_eq!(store.totals().clips, 2);
    // Exactly a day after it started: clip 1 goes (>=, not ==), file too.
    store.apply_retention(t0 + DAY_MS).unwrap();
    assert_eq!(store.clip_bytes(1).unwrap(), None);
    assert!(!store.clip_path(1).exists());
    assert_eq!(store.clip_bytes(2).unwrap(), Some(10_000));
    // The clock jumps back a year: nothing is deleted by age...
    store.apply_retention(t0 - 365 * DAY_MS).unwrap();
    assert_eq!(store.totals().clips, 1);
    // ...and a jump far past the end still expires it, with the events.
    store.apply_retention(t0 + 400 * DAY_MS).unwrap();
    let t = store.totals();
    assert_eq!((t.clips, t.events), (0, 0));
    assert_eq!(store.counters.clips_deleted.load(Ordering::Relaxed), 2);
    assert!(clip_files(&dir).is_empty());
    consistent(&store);
}

#[test]
fn reopen_removes_orphan_clips_and_corrects_reservations() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-crash");
    {
        let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
        // A finished clip.
        store.clip_reserve(1, 1 << 20, t0).unwrap();
        clip_file(&store, 1, 100_000);
        store.clip_finish(1, 100_000).unwrap();
        // A crash mid-clip: 1 MiB reserved ahead, 10 KB written.
        store.clip_reserve(2, 1 << 20, t0).unwrap();
        clip_file(&store, 2, 10_000);
        // A crash between the first reservation and creating the file.
        store.clip_reserve(3, 1 << 20, t0).unwrap();
        // A file whose entry retention deleted just before a crash (or
        // never committed), and a stray file.
        clip_file(&store, 4, 5000);
        std::fs::write(dir.0.join(CLIP_DIR).join("junk.tmp"), b"x").unwrap();
        assert_eq!(store.totals().clip_bytes, blocks(100_000) + (2 << 20));
    }
    let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
    assert_eq!(clip_files(&dir), ["1.mp4", "2.mp4"]);
    assert_eq!(store.clip_bytes(1).unwrap(), Some(100_000));
    assert_eq!(store.clip_bytes(2).unwrap(), Some(10_000));
    assert_eq!(store.clip_bytes(3).unwrap(), None);
    let t = store.totals();
    assert_eq!(
        (t.clips, t.clip_bytes),
        (2, blocks(100_000) + blocks(10_000))
    );
    assert_eq!(t.bytes, t.clip_bytes);
    consistent(&store);
}

#[test]
fn a_failed_clip_reservation_is_reported_and_recovers() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-fail");
    let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
    store.fail_next_commit.store(true, Ordering::Relaxed);
    let err = store.clip_reserve(1, 4096, t0).unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert_eq!(store.last_error(), err.to_string());
    assert_eq!(store.counters.failed_commits.load(Ordering::Relaxed), 1);
    assert_eq!(store.counters.reopened.load(Ordering::Relaxed), 1);
    assert_eq!(store.clip_bytes(1).unwrap(), None);
    assert_eq!(store.clip_reserve(1, 4096, t0).unwrap(), ClipGrant::Granted);
    assert!(store.last_error().is_empty());
    consistent(&store);
}

/// The events thread commits and the recorder reserves at the same time:
/// the totals stay exact and inside the quota, and every clip file left has
/// its entry.
#[test]
fn events_and_clips_written_from_two_threads_stay_consistent() {
    // Recent: the store applies age retention against the real clock at open.
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-threads");
    let store = std::sync::Arc::new(Store::open(&dir.0, one_mib_quota(), [true, false]).unwrap());
    let recorder = {
        let store = store.clone();
        std::thread::spawn(move || {
            // A clip opened by every 20th event, reserved ahead in chunks
            // and written after each grant.
            for id in (1..400).step_by(20) {
                let mut written = 0;
                for _ in 0..4 {
                    match store.clip_reserve(id, 32 << 10, t0).unwrap() {
                        ClipGrant::Granted => written += 32 << 10,
                        ClipGrant::Evicted => break,
                    }
                    clip_file(&store, id, written);
                }
                store.clip_finish(id, written as u64).unwrap();
            }
        })
    };
    put(&store, 1..400, t0, 4000);
    recorder.join().unwrap();
    let t = store.totals();
    assert!(t.bytes <= 1 << 20, "{t:?}");
    assert!(t.clips + t.events > 0, "{t:?}");
    assert_eq!(clip_files(&dir).len() as u64, t.clips);
    consistent(&store);
}

/// Every clip `next_clip_to_upload` hands out for `sink`, advancing the
/// cursor after each.
fn upload_all(store: &Store, sink: Sink) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while let Some((id, bytes)) = store.next_clip_to_upload(sink, 0).unwrap() {
        out.push((id, bytes));
        store.clip_uploaded(sink, id).unwrap();
    }
    out
}

#[test]
fn clip_upload_sees_finished_clips_only_in_id_order() {
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-upload");
    let store = Store::open(&dir.0, limits(), [true, true]).unwrap();
    assert_eq!(store.next_clip_to_upload(Sink::Http, 0).unwrap(), None);
    // Clip 5 still being written, clip 3 finished, clip 7 finished empty.
    for id in [3, 5, 7] {
        store.clip_reserve(id, 10_000, t0).unwrap();
    }
    clip_file(&store, 3, 4000);
    store.clip_finish(3, 4000).unwrap();
    store.clip_finish(7, 0).unwrap();
    assert_eq!(
        store.next_clip_to_upload(Sink::Http, 0).unwrap(),
        Some((3, 4000))
    );
    // `after` skips, the cursor is per sink.
    assert_eq!(store.next_clip_to_upload(Sink::Http, 3).unwrap(), None);
    store.clip_uploaded(Sink::Http, 3).unwrap();
    assert_eq!(store.next_clip_to_upload(Sink::Http, 0).unwrap(), None);
    assert_eq!(store.clip_upload_cursor(Sink::Http).unwrap(), 3);
    assert_eq!(
        store.next_clip_to_upload(Sink::Mqtt, 0).unwrap(),
        Some((3, 4000))
    );
    clip_file(&store, 5, 6000);
    store.clip_finish(5, 6000).unwrap();
    assert_eq!(upload_all(&store, Sink::Http), [(5, 6000)]);
    assert_eq!(upload_all(&store, Sink::Mqtt), [(3, 4000), (5, 6000)]);
    // The cursor never goes back.
    store.clip_uploaded(Sink::Http, 1).unwrap();
    assert_eq!(store.clip_upload_cursor(Sink::Http).unwrap(), 5);
    consistent(&store);
}

#[test]
fn clip_upload_skips_clips_retention_deleted() {
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-upload-retention");
    let store = Store::open(&dir.0, one_mib_quota(), [true, false]).unwrap();
    // Three finished clips of 400 KiB: the third pushes the first out.
    for id in [1, 2, 3] {
        assert_eq!(
            store.clip_reserve(id, 400 << 10, t0).unwrap(),
            ClipGrant::Granted
        );
        clip_file(&store, id, 400 << 10);
        store.clip_finish(id, 400 << 10).unwrap();
    }
    assert_eq!(store.clip_bytes(1).unwrap(), None);
    assert_eq!(
        upload_all(&store, Sink::Http),
        [(2, 400 << 10), (3, 400 << 10)]
    );
    // A clip deleted while waiting is skipped as well.
    store.clip_reserve(4, 400 << 10, t0).unwrap();
    clip_file(&store, 4, 400 << 10);
    store.clip_finish(4, 400 << 10).unwrap();
    store.clip_reserve(5, 900 << 10, t0).unwrap();
    clip_file(&store, 5, 900 << 10);
    store.clip_finish(5, 900 << 10).unwrap();
    assert_eq!(store.clip_bytes(4).unwrap(), None);
    assert_eq!(upload_all(&store, Sink::Http), [(5, 900 << 10)]);
    consistent(&store);
}

#[test]
fn clip_upload_cursor_and_marks_persist_across_reopen() {
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-upload-reopen");
    {
        let store = Store::open(&dir.0, limits(), [true, true]).unwrap();
        for id in [1, 2] {
            store.clip_reserve(id, 10_000, t0).unwrap();
            clip_file(&store, id, 1000 * id as usize);
            store.clip_finish(id, 1000 * id).unwrap();
        }
        store.clip_uploaded(Sink::Http, 1).unwrap();
        // Cut off by a stop or a crash: reserved, written, never finished.
        store.clip_reserve(3, 10_000, t0).unwrap();
        clip_file(&store, 3, 3000);
        assert_eq!(
            store.next_clip_to_upload(Sink::Http, 0).unwrap(),
            Some((2, 2000))
        );
    }
    let store = Store::open(&dir.0, limits(), [true, true]).unwrap();
    assert_eq!(store.clip_upload_cursor(Sink::Http).unwrap(), 1);
    assert_eq!(store.clip_upload_cursor(Sink::Mqtt).unwrap(), 0);
    // The clip left unfinished is complete at open, at its file's size.
    assert_eq!(upload_all(&store, Sink::Http), [(2, 2000), (3, 3000)]);
    assert_eq!(
        upload_all(&store, Sink::Mqtt),
        [(1, 1000), (2, 2000), (3, 3000)]
    );
    consistent(&store);
}

#[test]
fn a_database_from_before_clip_upload_does_not_upload_its_old_clips() {
    let t0 = now_unix_ms() - 60_000;
    let dir = TempDir::new("clip-upload-old-db");
    {
        let store = Store::open(&dir.0, limits(), [false, false]).unwrap();
        store.clip_reserve(4, 10_000, t0).unwrap();
        clip_file(&store, 4, 1000);
        store.clip_finish(4, 1000).unwrap();
    }
    // Make it look like an old database: no clips_done table, no cursors.
    {
        let db = redb::Database::create(dir.0.join(DB_FILE)).unwrap();
        let w = db.begin_write().unwrap();
        w.delete_table(CLIPS_DONE).unwrap();
        {
            let mut meta = w.open_table(META).unwrap();
            meta.remove("clip_uploaded_http").unwrap();
            meta.remove("clip_uploaded_mqtt").unwrap();
        }
        w.commit().unwrap();
    }
    let store = Store::open(&dir.0, limits(), [true, true]).unwrap();
    assert_eq!(store.clip_bytes(4).unwrap(), Some(1000));
    assert_eq!(store.clip_upload_cursor(Sink::Http).unwrap(), 4);
    assert_eq!(store.next_clip_to_upload(Sink::Http, 0).unwrap(), None);
    // New clips are uploaded.
    store.clip_reserve(9, 10_000, t0).unwrap();
    clip_file(&store, 9, 500);
    store.clip_finish(9, 500).unwrap();
    assert_eq!(upload_all(&store, Sink::Http), [(9, 500)]);
    consistent(&store);
}
