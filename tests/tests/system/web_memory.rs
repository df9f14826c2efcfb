//! Web responses are built in bounded memory (issue 16, item 5), black box:
//! 64 clients fetching `/api/events?limit=500` pages, snapshots and clips at
//! once, most of them slow readers, move vigil's RSS by no more than the
//! budget's `web` line; and paging with `next_after` still returns every
//! stored event exactly once, in order, however short the pages get.
//!
//! The data directory is filled before vigil starts, through the product's
//! own store (`vigil::store`): 600 events from cameras with 64-character
//! names (the longest allowed, so the biggest pages), each with a snapshot
//! file of 100-200 KiB, and three MP4 clips of a few MiB that some events
//! refer to. vigil runs with no camera, so nothing but the web side moves
//! its memory (a camera's warm-up would be counted as the web's).
//!
//! Seven clients in eight are slow readers: each shrinks its socket's
//! receive buffer and segment size, sends its request and reads nothing for
//! 1.5 s: a server that builds each whole response in
//! memory holds all of them at once. A bounded server answers some requests
//! 503 with `Retry-After` instead (allowed here); every kind of request must
//! still get some complete 200s.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil::store::{Batch, EventRecord, Sink, Store, StoreLimits};
use vigil_system_tests::api::num;
use vigil_system_tests::budget::budget_line;
use vigil_system_tests::config::{sample_clip, Config};
use vigil_system_tests::http::{get, get_slowly, Response};
use vigil_system_tests::media::{ffmpeg, TempDir};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Events stored before vigil starts (ids 1..=EVENTS).
const EVENTS: u64 = 600;

/// The clips: each is the id of the event that opened it, and the next
/// [`CLIP_EVENTS`] events (that one included) refer to it.
const CLIPS: [u64; 3] = [101, 301, 501];
const CLIP_EVENTS: u64 = 5;

/// Concurrent clients, and the rounds of three requests each makes.
const CLIENTS: usize = 64;
const ROUNDS: usize = 3;

/// How long a slow reader waits before reading, and its receive buffer.
const SLOW_WAIT: Duration = Duration::from_millis(1500);
const SLOW_RCVBUF: usize = 4096;

/// The store's quota here (and in vigil's configuration): room for all of it.
const MAX_BYTES: &str = "1GiB";

/// What the test stored, to check what vigil serves against.
struct Stored {
    /// Snapshot bytes per event id.
    snapshots: BTreeMap<u64, u64>,
    /// Clip bytes per clip id.
    clips: BTreeMap<u64, u64>,
}

impl Stored {
    /// The clip id event `id` refers to.
    fn clip_of(id: u64) -> Option<u64> {
        CLIPS
            .iter()
            .copied()
            .find(|c| (*c..*c + CLIP_EVENTS).contains(&id))
    }
}

/// Camera `n`'s name: 64 characters, the longest vigil accepts.
fn camera_name(n: u64) -> String {
    let mut name = format!("camera-{n}-at-the-far-end-of-the-loading-yard-");
    while name.len() < 64 {
        name.push('x');
    }
    name
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A number in 0..1 from `id` and `k`, with as many digits as an f32 has.
fn noise(id: u64, k: u64) -> f32 {
    ((id * 7919 + k * 104_729) % 1_000_003) as f32 / 1_000_003.0
}

/// A snapshot-like file of `len` bytes (JPEG markers at both ends, noise
/// between, so nothing compresses it away).
fn fake_jpeg(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    out[..2].copy_from_slice(&[0xFF, 0xD8]);
    out[len - 2..].copy_from_slice(&[0xFF, 0xD9]);
    out
}

/// A fragmented MP4 of a few MiB: the sample clip six times over, as the
/// recorder writes them (init segment, then fragments).
fn clip_file(dir: &Path) -> PathBuf {
    let p = dir.join("clip.mp4");
    ffmpeg(&[
        "-stream_loop",
        "5",
        "-i",
        sample_clip().to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-f",
        "mp4",
        p.to_str().unwrap(),
    ]);
    p
}

/// Fills `data` with the events, snapshots and clips, through the store
/// vigil itself opens there (`<data>/events.redb`, `snapshots/`, `clips/`).
fn populate(data: &Path, clip_src: &Path) -> Stored {
    let limits = StoreLimits {
        max_bytes: 1 << 30,
        max_events: 100_000,
        max_age: Duration::from_secs(30 * 86_400),
        outbox_max_bytes: 64 * MIB,
        cache_bytes: 4 << 20,
    };
    let store = Store::open(data, limits, [false, false]).expect("open the store");
    let clip_bytes = std::fs::metadata(clip_src).expect("clip file").len();
    assert!(clip_bytes >= 2 * MIB, "clip of {clip_bytes} bytes");
    let now = now_ms();
    let mut stored = Stored {
        snapshots: BTreeMap::new(),
        clips: BTreeMap::new(),
    };
    for clip in CLIPS {
        let grant = store
            .clip_reserve(clip, clip_bytes, now)
            .expect("reserve a clip");
        assert_eq!(grant, vigil::store::ClipGrant::Granted, "clip {clip}");
        std::fs::copy(clip_src, store.clip_path(clip)).expect("write a clip file");
        store.clip_finish(clip, clip_bytes).expect("finish a clip");
        stored.clips.insert(clip, clip_bytes);
    }
    let mut batch = Batch::with_capacity(64);
    for id in 1..=EVENTS {
        let len = (100 * KIB + (id * 7919) % (100 * KIB)) as usize;
        std::fs::write(store.snapshot_path(id), fake_jpeg(len, id)).expect("write a snapshot");
        stored.snapshots.insert(id, len as u64);
        let record = EventRecord {
            id,
            camera: camera_name(id % 4),
            unix_ms: now - (EVENTS - id) as i64 * 1000,
            pts_us: id as i64 * 40_000,
            class_id: 1,
            class: "person".into(),
            // Detector output: arbitrary floats, printed with all digits.
            score: 0.5 + noise(id, 1) / 2.0,
            bbox: [
                noise(id, 2) / 2.0,
                noise(id, 3) / 2.0,
                0.5 + noise(id, 4) / 2.0,
                0.5 + noise(id, 5) / 2.0,
            ],
            snapshot_bytes: len as u32,
            clip: Stored::clip_of(id),
            clock_unsynced: false,
        };
        batch.push(&record).expect("room in the batch");
        if batch.is_full() || id == EVENTS {
            store.commit(&mut batch, now_ms()).expect("commit events");
        }
    }
    let t = store.totals();
    assert_eq!((t.events, t.clips, t.last_id), (EVENTS, 3, EVENTS), "{t:?}");
    assert_eq!(store.totals().outbox_events[Sink::Http as usize], 0);
    // Dropped here: the database is locked while open.
    stored
}

/// Every stored event by paging `/api/events?limit=500` with `next_after`
/// until a page has none: ids strictly increasing across pages.
fn page_all(addr: SocketAddr) -> (Vec<Value>, usize) {
    let mut out: Vec<Value> = Vec::new();
    let (mut after, mut pages) = (0u64, 0usize);
    loop {
        let path = format!("/api/events?after={after}&limit=500");
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let page = r.json();
        pages += 1;
        let events = page["events"].as_array().expect("events array").clone();
        if events.is_empty() {
            assert_eq!(num(&page, &["next_after"]), after, "{path}: next_after");
            return (out, pages);
        }
        assert!(events.len() <= 500, "{path}: {} events", events.len());
        for e in events {
            let id = num(&e, &["id"]);
            assert!(id > after, "{path} returned id {id} after {after}");
            after = id;
            out.push(e);
        }
        assert_eq!(num(&page, &["next_after"]), after, "{path}: next_after");
        assert!(pages <= 2 * EVENTS as usize, "paging does not end");
    }
}

/// What kind of request, for the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Page,
    Snapshot,
    Clip,
}

/// Checks one answer: 200 complete (the body's length as announced and
/// as stored, a page that parses and starts at the first event) or 503
/// with `Retry-After`; anything else is a failure, described.
fn check(kind: Kind, path: &str, r: &Response, expect_len: Option<u64>) -> Result<u16, String> {
    match r.status {
        200 => {
            if let Some(cl) = r.header("content-length") {
                let cl: u64 = cl
                    .parse()
                    .map_err(|_| format!("{path}: Content-Length {cl}"))?;
                if cl != r.body.len() as u64 {
                    return Err(format!(
                        "{path}: {} body bytes, Content-Length {cl}",
                        r.body.len()
                    ));
                }
            }
            if let Some(len) = expect_len {
                if r.body.len() as u64 != len {
                    return Err(format!(
                        "{path}: {} bytes served, {len} stored",
                        r.body.len()
                    ));
                }
            }
            if kind == Kind::Page {
                let page: Value = serde_json::from_slice(&r.body)
                    .map_err(|e| format!("{path}: not JSON ({e}), {} bytes", r.body.len()))?;
                let events = page["events"].as_array().map_or(0, Vec::len);
                if events == 0 || page["events"][0]["id"] != 1 {
                    return Err(format!(
                        "{path}: {events} events, first {}",
                        page["events"][0]["id"]
                    ));
                }
            }
            Ok(200)
        }
        503 if r.header("retry-after").is_some() => Ok(503),
        503 => Err(format!("{path}: 503 without Retry-After: {}", r.text())),
        s => Err(format!("{path}: status {s}: {}", r.text())),
    }
}

/// The three requests of client `client` in round `round`: a page, a
/// snapshot and a clip, with their expected lengths.
fn requests(stored: &Stored, client: usize, round: usize) -> [(Kind, String, Option<u64>); 3] {
    let snap = (client as u64 * 37 + round as u64 * 101) % EVENTS + 1;
    let clip = CLIPS[(client + round) % CLIPS.len()];
    let event = clip + (client as u64 % CLIP_EVENTS);
    [
        (Kind::Page, "/api/events?limit=500".to_owned(), None),
        (
            Kind::Snapshot,
            format!("/api/events/{snap}/snapshot.jpg"),
            Some(stored.snapshots[&snap]),
        ),
        (
            Kind::Clip,
            format!("/api/events/{event}/clip.mp4"),
            Some(stored.clips[&clip]),
        ),
    ]
}

#[test]
fn sixty_four_clients_fetching_pages_snapshots_and_clips_move_rss_within_the_web_line() {
    vigil_system_tests::http::raise_fd_limit();
    let dir = TempDir::new("web-memory");
    let data = dir.join("data");
    let stored = populate(&data, &clip_file(dir.as_ref()));
    let (v, addr) = Config::new()
        .listen_anywhere()
        .store("max_bytes", MAX_BYTES)
        .serve(&dir);
    let web = budget_line(&v, "web") as u64;

    // vigil sees what was stored: every event once, in order, with its
    // snapshot and clip links, and serves the files whole.
    let (events, pages) = page_all(addr);
    let ids: Vec<u64> = events.iter().map(|e| num(e, &["id"])).collect();
    assert_eq!(
        ids,
        (1..=EVENTS).collect::<Vec<_>>(),
        "paging with next_after until an empty page ({pages} pages)"
    );
    for e in &events {
        let id = num(e, &["id"]);
        let snap = format!("/api/events/{id}/snapshot.jpg");
        assert_eq!(e["snapshot"].as_str(), Some(snap.as_str()), "{e}");
        assert_eq!(e["camera"].as_str().map(str::len), Some(64), "{e}");
        match Stored::clip_of(id) {
            Some(clip) => {
                let url = format!("/api/events/{id}/clip.mp4");
                assert_eq!(e["clip"].as_str(), Some(url.as_str()), "{e}");
                assert_eq!(e["clip_id"].as_u64(), Some(clip), "{e}");
            }
            None => assert!(e["clip"].is_null(), "{e}"),
        }
    }

    // Warm-up: one of each kind, then the baseline.
    let mut page_bytes = 0;
    for (kind, path, len) in requests(&stored, 0, 0) {
        let r = get(addr, &path);
        assert_eq!(check(kind, &path, &r, len), Ok(200), "warm-up");
        if kind == Kind::Page {
            page_bytes = r.body.len() as u64;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let baseline = v.sample().rss_bytes;

    let max_rss = AtomicU64::new(baseline);
    let done = AtomicBool::new(false);
    let counts: Mutex<BTreeMap<(Kind, u16), usize>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let round_start = Barrier::new(CLIENTS);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                max_rss.fetch_max(v.sample().rss_bytes, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (stored, counts, failures, round_start) =
                    (&stored, &counts, &failures, &round_start);
                s.spawn(move || {
                    // Seven in eight are slow readers.
                    let slow = client % 8 != 0;
                    for round in 0..ROUNDS {
                        // Every round starts at once for all clients.
                        round_start.wait();
                        for (kind, path, len) in requests(stored, client, round) {
                            let r = if slow {
                                get_slowly(addr, &path, SLOW_WAIT, SLOW_RCVBUF)
                            } else {
                                get(addr, &path)
                            };
                            match check(kind, &path, &r, len) {
                                Ok(status) => {
                                    *counts.lock().unwrap().entry((kind, status)).or_default() += 1;
                                }
                                Err(why) => failures.lock().unwrap().push(why),
                            }
                        }
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
        done.store(true, Ordering::Relaxed);
    });
    let max = max_rss.load(Ordering::Relaxed);
    let delta = max.saturating_sub(baseline);
    let counts = counts.into_inner().unwrap();
    let count = |k: Kind, s: u16| counts.get(&(k, s)).copied().unwrap_or(0);
    eprintln!(
        "web memory: baseline {} KiB, max {} KiB, delta {} KiB, web line {} KiB; \
         page 200/503 {}/{}, snapshot {}/{}, clip {}/{} ({CLIENTS} clients x {ROUNDS} rounds, \
         a page of 500 is {} KiB)",
        baseline / KIB,
        max / KIB,
        delta / KIB,
        web / KIB,
        count(Kind::Page, 200),
        count(Kind::Page, 503),
        count(Kind::Snapshot, 200),
        count(Kind::Snapshot, 503),
        count(Kind::Clip, 200),
        count(Kind::Clip, 503),
        page_bytes / KIB,
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} bad answers, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for kind in [Kind::Page, Kind::Snapshot, Kind::Clip] {
        assert!(
            count(kind, 200) > 0,
            "no complete 200 for any {kind:?} request: {counts:?}"
        );
    }
    assert!(
        delta <= web,
        "64 clients moved RSS by {} KiB, more than the web line's {} KiB \
         (baseline {} KiB, max {} KiB)",
        delta / KIB,
        web / KIB,
        baseline / KIB,
        max / KIB
    );

    // Paging still returns every event once, in order, after the load.
    let (events, pages) = page_all(addr);
    let ids: Vec<u64> = events.iter().map(|e| num(e, &["id"])).collect();
    assert_eq!(
        ids,
        (1..=EVENTS).collect::<Vec<_>>(),
        "paging after the load ({pages} pages)"
    );
    assert_eq!(v.stop(), 0, "vigil's exit status");
}
