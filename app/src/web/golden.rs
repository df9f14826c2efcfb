//! Golden tests of what `/metrics`, `/api/status` and `/api/cameras` show
//! for one populated registry.
//!
//! The expected documents in `golden/` were captured from the renderers as
//! they were before the metric families became one table (issue 15), so
//! these tests prove the table changed no name, help text, label or value.
//! The fixture fills every family with distinct numbers so that a family
//! reading the wrong field shows up as a diff.

use super::{api, prom, WebContext};
use crate::detect::BBox;
use crate::events::{Event, EventRing};
use crate::metrics::{CameraState, DropReason, Registry};
use crate::packet::Codec;
use crate::store::{Batch, EventRecord, Store, StoreLimits};
use crate::test_dir::TempDir;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A web context over a registry where every family has a distinct value.
fn populated(dir: &TempDir) -> WebContext {
    let text = format!(
        "data_dir = \"{}\"\n[[camera]]\nname = \"door\"\nurl = \"rtsp://admin:pw@10.0.0.5/s1\"\n\
         [[camera]]\nname = \"usb\"\nurl = \"rtsp://10.0.0.6/s1\"\n",
        dir.0.display()
    );
    let config = crate::config::Config::parse(&text, "golden.toml").unwrap();
    let mut registry = Registry::new(["door", "usb"], "software");
    let frames = crate::pool::Pool::with("frames", 4, || 0u8);
    let held = [frames.try_take(), frames.try_take(), frames.try_take()];
    drop(held);
    // One lent for good, so that in_use and high_water differ.
    std::mem::forget(frames.try_take());
    let packets = crate::pool::Pool::with("packets", 8, || 0u8);
    for _ in 0..9 {
        let _ = packets.try_take().map(std::mem::forget);
    }
    registry.add_pool("door", Box::new(frames));
    registry.add_pool("", Box::new(packets));
    let r = &registry;
    let p = &r.process;
    p.rss_bytes.set(41_943_040.0);
    p.rss_peak_bytes.set(52_428_800.0);
    p.threads.set(17.0);
    p.open_fds.set(23.0);
    p.cpu_seconds.set(12.25);
    p.cpu_percent.set(37.5);
    p.heap_allocations.set(1234.0);
    p.engine_heap_allocations.set(56.0);
    r.memory_budget_bytes.set(150_000_000.0);
    r.memory_limit_bytes.set(268_435_456.0);
    for ms in [3, 12, 40, 40, 700, 4000] {
        r.inference_latency.observe(Duration::from_millis(ms));
    }
    for (i, c) in r.cameras.iter().enumerate() {
        let k = i as u64 * 100;
        c.packets_received.add(1000 + k);
        c.bytes_received.add(2_000_000 + k);
        for (j, why) in DropReason::ALL.into_iter().enumerate() {
            for _ in 0..(j as u64 + 1 + k / 50) {
                c.packets_dropped.inc(why);
            }
            for _ in 0..(2 * j as u64 + 3) {
                c.frames_dropped.inc(why);
            }
        }
        c.frames_decoded.add(900 + k);
        c.frames_detected.add(300 + k);
        c.detections.add(42 + k);
        c.events.add(7 + k);
        c.reconnects.add(2 + k);
        c.decode_fps.set(24.5 + i as f64);
        c.detect_fps.set(5.25 + i as f64);
        let rec = &c.record;
        rec.clips_opened.add(5 + k);
        rec.clips_finished.add(4 + k);
        rec.clips_truncated.add(1 + k);
        rec.units_written.add(500 + k);
        rec.bytes_written.add(3_000_000 + k);
        rec.ring_refused.add(3 + k);
        rec.recording.set(1.0 - i as f64);
        rec.ring_bytes.set(65_536.0 + k as f64);
        rec.ring_seconds.set(4.5 + i as f64);
    }
    let door = &r.cameras[0];
    door.set_state(CameraState::Streaming, "");
    door.set_format(Codec::H264, 1920, 1080);
    door.record.fail("door", "no space left on device");
    let usb = &r.cameras[1];
    usb.set_state(CameraState::Connecting, "open /dev/video0: busy");
    usb.v4l2.set_device("/dev/v4l/by-id/usb-\"Cam\"\\0");
    set_v4l2_mode(usb);
    for _ in 0..3 {
        usb.v4l2.driver_dropped.inc();
    }
    let o = &r.outputs;
    o.snapshots_written.add(11);
    o.snapshots_failed.add(2);
    o.snapshot_pool_empty.add(1);
    o.jobs_dropped.add(4);
    o.events_not_stored.add(6);
    let http = &o.upstream[0];
    *http.target.lock().unwrap() = "https://collector.example/events".into();
    http.succeed();
    http.succeed();
    http.rejected.add(1);
    http.clips_delivered.add(3);
    http.clip_fail("HTTP 503");
    let mqtt = &o.upstream[1];
    *mqtt.target.lock().unwrap() = "mqtt://broker:1883".into();
    mqtt.succeed();
    mqtt.fail("connection refused");
    mqtt.fail("connection refused");

    let events = Arc::new(EventRing::new(4));
    for id in 0..6u64 {
        events.push(Event {
            id: 0,
            camera: (id % 2) as usize,
            unix_ms: 1_700_000_000_000 + id as i64 * 1000,
            pts_us: id as i64 * 40_000,
            class_id: 0,
            class_name: "person",
            score: 0.5 + id as f32 / 16.0,
            bbox: BBox {
                x0: 0.125,
                y0: 0.25,
                x1: 0.5,
                y1: 0.75,
            },
        });
    }
    let mut ctx = WebContext::new(
        &config,
        Arc::new(registry),
        events,
        super::auth::AuthConfig::default(),
        Instant::now(),
        crate::disk::Disk::start("golden-disk", 4).unwrap(),
    )
    .unwrap();
    let store = Store::open(
        &dir.0.join("store"),
        StoreLimits {
            max_bytes: 64 << 20,
            max_events: 100_000,
            max_age: Duration::from_secs(30 * 86_400),
            outbox_max_bytes: 32 << 20,
            cache_bytes: 1 << 20,
        },
        [true, true],
    )
    .unwrap();
    let mut batch = Batch::with_capacity(8);
    for id in 1..=3u64 {
        batch
            .push(&EventRecord {
                id,
                camera: "door".into(),
                unix_ms: 1_700_000_000_000,
                pts_us: 0,
                class_id: 0,
                class: "person".into(),
                score: 0.75,
                bbox: [0.1, 0.2, 0.3, 0.4],
                snapshot_bytes: 0,
                clip: None,
                clock_unsynced: false,
            })
            .unwrap();
    }
    store.commit(&mut batch, 1_700_000_000_000).unwrap();
    store.counters.deleted.store(8, Ordering::Relaxed);
    store.counters.lost.store(9, Ordering::Relaxed);
    ctx.store = Some(Arc::new(store));
    ctx.recording = vec![true, false];
    ctx.boot_slot = Some("B".into());
    // No disk lines: their figures are the build machine's.
    ctx.data_dir = PathBuf::from("/nonexistent/vigil-golden");
    ctx.started_unix = 1_700_000_000.5;
    ctx.hub.opened.add(5);
    ctx.hub.rejected.add(1);
    ctx.hub.lost.add(13);
    ctx.bodies.busy.store(6, Ordering::Relaxed);
    ctx.bodies.overflowed.store(1, Ordering::Relaxed);
    let d = ctx.disk.stats();
    d.jobs.store(310, Ordering::Relaxed);
    d.queued.store(2, Ordering::Relaxed);
    d.refused.store(8, Ordering::Relaxed);
    d.failed.store(3, Ordering::Relaxed);
    let s = &ctx.stats;
    s.open.store(3, Ordering::Relaxed);
    s.accepted.add(120);
    s.refused.add(4);
    s.evicted.add(2);
    s.idle_closed.add(9);
    for (i, c) in s.responses.iter().enumerate() {
        c.add(100 / (i as u64 + 1));
    }
    ctx
}

/// The mode the fixture's V4L2 camera negotiated.
fn set_v4l2_mode(c: &crate::metrics::CameraMetrics) {
    c.v4l2.set_mode(crate::metrics::V4l2Mode {
        format: "yuyv",
        width: 640,
        height: 480,
        stride: 1280,
        frame_bytes: 614_400,
        fps: 29.97,
        buffers: 4,
    });
    c.set_picture(None, 640, 480);
}

/// Where a golden file lives.
fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/web/golden")
        .join(name)
}

/// Compares `actual` with the golden file `name`, showing the first
/// differing line (the version string shows as `{version}`).
fn check(name: &str, actual: &str) {
    let path = golden(name);
    // The version changes with every release, not with the table.
    let actual = actual.replace(&format!("\"{}\"", crate::version::get()), "\"{version}\"");
    let expected = std::fs::read_to_string(&path).unwrap();
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        assert_eq!(e, a, "{name} line {}", i + 1);
    }
    assert_eq!(expected, actual, "{name}");
}

/// A JSON document as pretty text, with the readings of the build machine
/// (uptime, load) blanked.
fn json_text(v: impl serde::Serialize) -> String {
    let mut v = serde_json::to_value(v).unwrap();
    if let Some(o) = v.as_object_mut() {
        for volatile in ["uptime_seconds", "load1"] {
            if o.contains_key(volatile) {
                o.insert(volatile.into(), serde_json::Value::Null);
            }
        }
    }
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

#[test]
fn metrics_text_is_unchanged() {
    let dir = TempDir::new("golden");
    let ctx = populated(&dir);
    check("metrics.txt", &prom::render(&ctx));
}

#[test]
fn status_json_is_unchanged() {
    let dir = TempDir::new("golden");
    let ctx = populated(&dir);
    check("status.json", &json_text(api::status(&ctx)));
    let cameras: Vec<_> = (0..ctx.registry.cameras.len())
        .map(|i| api::camera(&ctx, i, true))
        .collect();
    check("cameras.json", &json_text(cameras));
}

/// The largest documents vigil writes fit their response buffers: 32
/// cameras with the longest names, every counter at 20 digits, V4L2 modes
/// and error texts, rendered into buffers sized for 32 cameras. Prints the
/// bytes per camera the sizes are based on.
#[test]
fn the_largest_documents_fit_their_response_buffers() {
    use super::bodies::Bodies;
    const N: usize = 32;
    let dir = TempDir::new("golden-large");
    let names: Vec<String> = (0..N)
        .map(|i| format!("{i:02}{}", "c".repeat(62)))
        .collect();
    let mut text = format!("data_dir = \"{}\"\n", dir.0.display());
    for (i, n) in names.iter().enumerate() {
        text += &format!(
            "[[camera]]\nname = \"{n}\"\nurl = \"rtsp://user:pw@10.0.{i}.1:554/{}\"\n",
            "p".repeat(120)
        );
    }
    let config = crate::config::Config::parse(&text, "large.toml").unwrap();
    let registry = Registry::new(names.iter().map(String::as_str), "software");
    let big = u64::MAX / 2;
    for c in &registry.cameras {
        for counter in [
            &c.packets_received,
            &c.bytes_received,
            &c.frames_decoded,
            &c.frames_detected,
            &c.detections,
            &c.events,
            &c.reconnects,
        ] {
            counter.add(big);
        }
        c.decode_fps.set(1.0 / 3.0);
        c.detect_fps.set(2.0 / 3.0);
        c.set_state(CameraState::Error, &"e".repeat(200));
        c.set_format(Codec::H265, 3840, 2160);
        c.record.fail(&c.name, &"f".repeat(200));
        c.v4l2
            .set_device(&format!("/dev/v4l/by-id/{}", "u".repeat(100)));
        set_v4l2_mode(c);
    }
    let ctx = WebContext::new(
        &config,
        Arc::new(registry),
        Arc::new(EventRing::new(4)),
        super::auth::AuthConfig::default(),
        Instant::now(),
        crate::disk::Disk::start("golden-disk", 4).unwrap(),
    )
    .unwrap();
    let bodies = Bodies::new(N);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sizes = Vec::new();
    for doc in ["metrics", "status", "cameras"] {
        let mut out = rt.block_on(bodies.take()).unwrap();
        let _ = match doc {
            "metrics" => {
                prom::render_into(&ctx, &mut out);
                Ok(())
            }
            "status" => serde_json::to_writer(&mut out, &api::status(&ctx)),
            _ => serde_json::to_writer(
                &mut out,
                &(0..N)
                    .map(|i| api::camera(&ctx, i, true))
                    .collect::<Vec<_>>(),
            ),
        };
        assert!(
            !out.overflowed(),
            "{doc} overflowed {} bytes",
            bodies.size()
        );
        sizes.push((doc, out.len()));
        let per_camera = out.len() / N;
        assert!(
            per_camera < super::bodies::PER_CAMERA_BYTES,
            "{doc}: {per_camera} bytes per camera"
        );
    }
    println!(
        "documents for {N} cameras in buffers of {} bytes: {sizes:?}",
        bodies.size()
    );
}
