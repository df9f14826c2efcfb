//! `make bench-events`: figures for the events issue, asserting nothing.
//!
//! - store: events per second committed by the real events thread (records
//!   only, and with a 1280x720 snapshot drawn, encoded and synced per event);
//! - drain: events per second the HTTP drainer delivers from a backlog to a
//!   local receiver that acknowledges at once (each with a ~90 KB snapshot).

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::config::Config;
use vigil::detect::BBox;
use vigil::events::Event;
use vigil::metrics::OutputMetrics;
use vigil::pipeline::events::{DrawnBox, EventJob, EventWriter, JobQueue};
use vigil::pool::Pool;
use vigil::queue::WhenFull;
use vigil::snapshot::{JpegWriter, SnapshotBuf};
use vigil::store::{Batch, Sink, Store, StoreLimits};

const BBOX: BBox = BBox {
    x0: 0.2,
    y0: 0.2,
    x1: 0.6,
    y1: 0.8,
};

fn limits() -> StoreLimits {
    StoreLimits {
        max_bytes: 1 << 30,
        max_events: 1_000_000,
        max_age: Duration::from_secs(86_400),
        outbox_max_bytes: 1 << 29,
        cache_bytes: 4 << 20,
    }
}

/// A picture with detail, so the JPEG has a realistic size.
fn picture(w: usize, h: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let y = (0..w * h)
        .map(|i| ((i % w) * 255 / w) as u8 ^ (((i / w) * 7) as u8 & 0x1f))
        .collect();
    (y, vec![110; w * h / 4], vec![150; w * h / 4])
}

/// Stores `n` events through the events thread; snapshots on each when `snap`.
fn store_events(dir: &std::path::Path, n: u64, snap: bool, sinks: [bool; 2]) -> (Arc<Store>, f64) {
    let store = Arc::new(Store::open(dir, limits(), sinks).unwrap());
    let jobs = Arc::new(JobQueue::new(256, WhenFull::DropNewest));
    let pool = Pool::with("snapshots", 4, || SnapshotBuf::new(1280, 720));
    let writer = EventWriter {
        store: store.clone(),
        jobs: jobs.clone(),
        cameras: vec!["gate".to_string()].into(),
        batch: Batch::with_capacity(64),
        jpeg: JpegWriter::new(JpegWriter::capacity_for(1280, 720), 80),
        flush_after: Duration::from_millis(200),
        metrics: Arc::new(OutputMetrics::default()),
        committed: Arc::new(tokio::sync::Notify::new()),
    };
    let t = std::thread::spawn(move || writer.run());
    let (y, u, v) = picture(1280, 720);
    let image = vigil::image::ImageRef::I420(vigil::image::I420 {
        width: 1280,
        height: 720,
        y: &y,
        u: &u,
        v: &v,
        y_stride: 1280,
        uv_stride: 640,
    });
    let start = Instant::now();
    for id in 1..=n {
        let snapshot = snap.then(|| loop {
            if let Some(mut s) = pool.try_take() {
                s.copy_from(&image).unwrap();
                break s;
            }
            std::thread::sleep(Duration::from_micros(200));
        });
        let mut boxes = heapless::Vec::new();
        let _ = boxes.push(DrawnBox {
            bbox: BBOX,
            label: "person",
            score: 0.9,
        });
        let mut job = EventJob {
            event: Event {
                id,
                camera: 0,
                unix_ms: vigil::clock::now_unix_ms(),
                pts_us: 0,
                class_id: 1,
                class_name: "person",
                score: 0.9,
                bbox: BBOX,
            },
            clip: None,
            snapshot,
            boxes,
        };
        while let Some(back) = jobs.push(job) {
            job = back;
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    jobs.close();
    t.join().unwrap();
    (store, n as f64 / start.elapsed().as_secs_f64())
}

/// An HTTP receiver that acknowledges every POST; counts them.
fn receiver() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    c.fetch_add(1, Ordering::Relaxed);
                    if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

fn main() {
    let base = std::env::temp_dir().join(format!("vigil-bench-events-{}", std::process::id()));
    for (label, n, snap) in [
        ("records only", 50_000, false),
        ("1280x720 snapshots", 1_000, true),
    ] {
        let dir = base.join(label.replace(' ', "-"));
        let (_, rate) = store_events(&dir, n, snap, [false, false]);
        println!("store, {label}: {n} events, {rate:.0} events/s");
    }

    let dir = base.join("drain");
    let n = 2_000;
    let (store, _) = store_events(&dir, n, true, [true, false]);
    let (addr, received) = receiver();
    let config = Config::parse(
        &format!(
            "[upstream]\nretry_min = \"100ms\"\n[upstream.http]\nurl = \"http://{addr}/events\"\n"
        ),
        "bench",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (trigger, shutdown) = vigil::shutdown::channel();
    let start = Instant::now();
    vigil::upstream::spawn_with_clips(
        &rt,
        &config.upstream,
        vigil::config::ClipDelivery::Link,
        store.clone(),
        Arc::new(OutputMetrics::default()),
        Arc::new(tokio::sync::Notify::new()),
        shutdown,
        JpegWriter::capacity_for(1280, 720),
        vigil::disk::Disk::start("bench-disk", vigil::disk::QUEUE).unwrap(),
    )
    .unwrap();
    while store.totals().outbox_events[Sink::Http as usize] > 0 {
        std::thread::sleep(Duration::from_millis(20));
        assert!(start.elapsed() < Duration::from_secs(600), "drain stalled");
    }
    let secs = start.elapsed().as_secs_f64();
    trigger.trigger();
    drop(rt);
    println!(
        "drain, HTTP with snapshots: {} events delivered in {secs:.2} s, {:.0} events/s",
        received.load(Ordering::Relaxed),
        n as f64 / secs
    );
    let _ = std::fs::remove_dir_all(&base);
}
