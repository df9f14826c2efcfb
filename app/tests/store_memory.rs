//! The Python predecessor's third leak was a write buffer whose task list
//! was never cleared after a flush. This drives the real events thread
//! (`pipeline::events::EventWriter`) with 100,000 events, flushed by size, by
//! time and at shutdown, into a store whose retention and outbox quota are
//! both working, and checks that the process's memory stays flat.
//!
//! One test in this binary, so nothing else moves the RSS it measures.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::detect::BBox;
use vigil::events::Event;
use vigil::metrics::OutputMetrics;
use vigil::pipeline::events::{DrawnBox, EventJob, EventWriter, JobQueue};
use vigil::pool::Pool;
use vigil::procstat::ProcSample;
use vigil::queue::WhenFull;
use vigil::snapshot::{JpegWriter, SnapshotBuf};
use vigil::store::{Batch, Store, StoreLimits};

const EVENTS: u64 = 100_000;
/// One event in this many carries a snapshot (encoding is the slow part).
const SNAPSHOT_EVERY: u64 = 100;

fn rss() -> u64 {
    ProcSample::read_self().expect("read /proc/self").rss_bytes
}

#[test]
fn memory_is_flat_over_100k_events_through_the_events_thread() {
    let dir = std::env::temp_dir().join(format!("vigil-store-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let limits = StoreLimits {
        max_bytes: 64 << 20,
        max_events: 20_000,
        max_age: Duration::from_secs(86_400),
        outbox_max_bytes: 2 << 20,
        cache_bytes: 4 << 20,
    };
    let store = Arc::new(Store::open(&dir, limits, [true, false]).unwrap());
    let jobs = Arc::new(JobQueue::new(256, WhenFull::DropNewest));
    let metrics = Arc::new(OutputMetrics::default());
    let snapshots = Pool::with("snapshots", 2, || SnapshotBuf::new(320, 240));
    let writer = EventWriter {
        store: store.clone(),
        jobs: jobs.clone(),
        cameras: vec!["gate".to_string()].into(),
        batch: Batch::with_capacity(64),
        jpeg: JpegWriter::new(JpegWriter::capacity_for(320, 240), 80),
        flush_after: Duration::from_millis(20),
        metrics: metrics.clone(),
        committed: Arc::new(tokio::sync::Notify::new()),
    };
    let thread = std::thread::spawn(move || writer.run());

    // A grey picture to copy into the snapshot buffers.
    let (w, h) = (320usize, 240usize);
    let (y, u, v) = (
        vec![120u8; w * h],
        vec![128u8; w * h / 4],
        vec![128u8; w * h / 4],
    );
    let picture = vigil::image::ImageRef::I420(vigil::image::I420 {
        width: w as u32,
        height: h as u32,
        y: &y,
        u: &u,
        v: &v,
        y_stride: w,
        uv_stride: w / 2,
    });
    let bbox = BBox {
        x0: 0.2,
        y0: 0.2,
        x1: 0.6,
        y1: 0.8,
    };
    let started = Instant::now();
    let mut readings = Vec::new();
    let mut baseline = 0;
    for id in 1..=EVENTS {
        let snapshot = (id % SNAPSHOT_EVERY == 0).then(|| {
            // Wait for a buffer rather than skip: every 100th event has one.
            loop {
                if let Some(mut s) = snapshots.try_take() {
                    s.copy_from(&picture).unwrap();
                    return s;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut boxes = heapless::Vec::new();
        let _ = boxes.push(DrawnBox {
            bbox,
            label: "person",
            score: 0.9,
        });
        let mut job = EventJob {
            event: Event {
                id,
                camera: 0,
                unix_ms: vigil::clock::now_unix_ms(),
                pts_us: id as i64 * 40_000,
                class_id: 1,
                class_name: "person",
                score: 0.9,
                bbox,
            },
            clip: None,
            snapshot,
            boxes,
        };
        // Back-pressure instead of drops: every event must reach the store.
        while let Some(back) = jobs.push(job) {
            job = back;
            std::thread::sleep(Duration::from_micros(200));
        }
        // Pauses longer than flush_after, so the time path flushes too.
        if id % 5_000 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        if id % 10_000 == 0 {
            let r = rss();
            if id == 10_000 {
                baseline = r;
            }
            readings.push((id, r));
        }
    }
    jobs.close();
    thread.join().unwrap();
    let elapsed = started.elapsed();
    let end = rss();

    let t = store.totals();
    let c = &store.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{EVENTS} events in {:.1} s ({:.0}/s) into the store; RSS MiB at 10k steps: {:?}, end {:.1}; \
         store {} events, {} KiB, outbox {} ({} dropped), {} snapshots",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        readings
            .iter()
            .map(|(_, r)| format!("{:.1}", *r as f64 / 1048576.0))
            .collect::<Vec<_>>(),
        end as f64 / 1048576.0,
        t.events,
        t.bytes >> 10,
        t.outbox_events[0],
        t.outbox_dropped[0],
        metrics.snapshots_written.get()
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Everything arrived, retention and the outbox quota both worked.
    assert_eq!(load(&c.written), EVENTS);
    assert_eq!(load(&c.lost), 0);
    assert_eq!(t.last_id, EVENTS);
    assert_eq!(t.events, 20_000);
    assert!(
        t.outbox_bytes[0] <= 2 << 20 && t.outbox_dropped[0] > 0,
        "{t:?}"
    );
    assert_eq!(metrics.snapshots_written.get(), EVENTS / SNAPSHOT_EVERY);
    // Flat: after the first 10,000 events (page cache and allocator warm),
    // 90,000 more add less than 4 MiB.
    let peak = readings.iter().map(|r| r.1).max().unwrap();
    assert!(
        peak.saturating_sub(baseline) < 4 << 20,
        "RSS grew from {baseline} to {peak} bytes over {EVENTS} events: {readings:?}"
    );
}
