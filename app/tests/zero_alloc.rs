//! The promise behind the whole design: after warm-up, a frame travels
//! source -> decode -> pool -> detect -> events without one heap allocation
//! in vigil's code. The counting allocator is this test binary's global
//! allocator; tract's own allocations inside `engine_scope` are counted
//! apart and reported, and `detect::ssd` proves they are constant per call.
//!
//! This file holds a single test so nothing else in the binary allocates
//! while it measures.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil::alloc_count::{process_counts, CountingAllocator};
use vigil::config::Config;
use vigil::detect::ssd::SsdMobilenetV2;
use vigil::pipeline::{software_parts, Pipeline};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn cached(rel: &str) -> PathBuf {
    let base = std::env::var_os("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vigil"));
    let p = base.join(rel);
    assert!(
        p.exists(),
        "{} missing: run `make model sample`",
        p.display()
    );
    p
}

fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_frames_through_the_pipeline_allocate_nothing_after_warm_up() {
    let model = cached("models/ssd_mobilenet_v2_coco.pb");
    for clip in ["media/bikes.h264", "media/bikes.mp4"] {
        let clip = cached(clip);
        let data = std::env::temp_dir().join(format!("vigil-zero-alloc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        // A short track timeout makes events (snapshot copies, queued jobs)
        // part of the measured stretch.
        let text = format!(
            "data_dir = {:?}\n[detector]\nmodel = {:?}\n[events]\ntrack_timeout = \"100ms\"\n\
             [[camera]]\nurl = {:?}\ndetect_fps = 5\nmax_resolution = \"640x480\"\n",
            data.display().to_string(),
            model.display().to_string(),
            clip.display().to_string()
        );
        let config = Config::parse(&text, "test").unwrap();
        let detector = SsdMobilenetV2::load(&model).unwrap();
        let pipeline =
            Pipeline::start(&config, software_parts(vec![Box::new(detector)], false)).unwrap();
        let cam = pipeline.registry.cameras[0].clone();

        // Warm-up: more than one loop of the 250-frame clip and some detections.
        wait_until("warm-up", Duration::from_secs(120), || {
            cam.frames_decoded.get() >= 300 && cam.frames_detected.get() >= 5
        });
        let before = process_counts();
        let (decoded0, detected0, events0) = (
            cam.frames_decoded.get(),
            cam.frames_detected.get(),
            cam.events.get(),
        );
        wait_until("1000 frames", Duration::from_secs(300), || {
            cam.frames_decoded.get() >= decoded0 + 1000
                && cam.frames_detected.get() >= detected0 + 20
        });
        let after = process_counts();
        let decoded = cam.frames_decoded.get() - decoded0;
        let detected = cam.frames_detected.get() - detected0;
        let events = cam.events.get() - events0;
        let outputs = pipeline.registry.outputs.clone();
        pipeline.stop();
        let _ = std::fs::remove_dir_all(&data);

        let ours = after.ours - before.ours;
        let engine = after.engine - before.engine;
        let in_events = after.events - before.events;
        eprintln!(
            "{}: {decoded} frames decoded, {detected} detected, {events} events \
             ({} snapshots written): {ours} allocations in vigil's frame path, \
             {engine} inside tract ({:.1} per inference), {in_events} on the events thread",
            clip.display(),
            outputs.snapshots_written.get(),
            engine as f64 / detected.max(1) as f64
        );
        assert!(events > 0, "the measured stretch must include events");
        assert!(decoded >= 1000);
        assert_eq!(
            ours, 0,
            "vigil's own code allocated {ours} times over {decoded} frames"
        );
        assert!(engine > 0, "the engine scope must see tract's allocations");
    }
}
