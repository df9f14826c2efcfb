//! The real binary on file cameras: events from the sample clip, a fixed set
//! of named threads, bad streams isolated to their own camera, and a detector
//! slower than the stream that drops frames without growing memory.

use std::path::Path;
use std::time::Duration;
use vigil_system_tests::config::{sample_clip, ssd_model, Camera, Config};
use vigil_system_tests::media::{corrupt_copy, h264_clip, h265_clip, TempDir};
use vigil_system_tests::process::Vigil;

#[test]
fn sample_clip_raises_events_on_a_fixed_set_of_named_threads() {
    let clip = sample_clip();
    let model = ssd_model();
    let v = Vigil::start(&[
        "run",
        "--camera",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--status-every",
        "1",
    ]);
    let event = v.wait_for_line(Duration::from_secs(60), |l| {
        l.contains("event ") && l.contains("camera-1 saw")
    });
    assert!(
        ["person", "bicycle", "car"]
            .iter()
            .any(|c| event.contains(c)),
        "{event}"
    );
    let first = v.thread_names();
    // main + 1 io worker + 1 blocking + 1 decoder + 1 inference worker + the
    // disk thread + the events thread + the clip writer.
    assert_eq!(
        first,
        vec![
            "vigil",
            "vigil-dec-0",
            "vigil-det-0",
            "vigil-disk",
            "vigil-evt",
            "vigil-io-0",
            "vigil-io-1",
            "vigil-rec"
        ],
        "{first:?}"
    );
    // The clip loops (250 frames at 25 fps): watch it wrap at least once.
    v.wait_status("camera-1", Duration::from_secs(40), |s| {
        s.num("decoded") > 300.0
    });
    assert_eq!(v.thread_names(), first, "thread set changed while running");
    let st = v.wait_status("camera-1", Duration::from_secs(5), |_| true);
    assert_eq!(st.get("state"), "streaming");
    assert!(st.num("events") >= 1.0);
    assert_eq!(v.stop(), 0, "clean exit on SIGTERM");
}

#[test]
fn a_bad_camera_never_stops_the_others() {
    let dir = TempDir::new("bad");
    let good = h264_clip(&dir.0, "good.h264", 4, "320x240", 25);
    let hevc = h265_clip(&dir.0, "cam.h265", 2);
    let corrupt = dir.join("corrupt.h264");
    corrupt_copy(&good, &corrupt, 200, 97, 7);
    let truncated = dir.join("truncated.h264");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3 + 17]).unwrap();
    let garbage = dir.join("garbage.h264");
    std::fs::write(
        &garbage,
        (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let cam = |name: &str, url: &Path| Camera::named(name, url).max_resolution("640x480");
    let cfg = Config::new()
        .ssd_model()
        .camera(cam("good", &good))
        .camera(cam("hevc", &hevc))
        .camera(cam("corrupt", &corrupt))
        .camera(cam("truncated", &truncated))
        .camera(cam("garbage", &garbage))
        .camera(cam("missing", Path::new("/nonexistent/clip.mp4")))
        .write(&dir);
    let v = Vigil::run_with_status(&cfg);
    let hevc_state = v.wait_status("hevc", Duration::from_secs(30), |s| {
        s.get("state") == "error"
    });
    assert_eq!(hevc_state.get("state"), "error");
    v.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("camera hevc") && l.contains("h265 needs the hardware")
    });
    v.wait_for_line(Duration::from_secs(10), |l| {
        l.contains("camera missing") && l.contains("/nonexistent/clip.mp4")
    });
    let a = v.wait_status("good", Duration::from_secs(30), |s| s.num("decoded") > 50.0);
    let b = v.wait_status("good", Duration::from_secs(30), |s| {
        s.num("decoded") > a.num("decoded") + 50.0
    });
    assert_eq!(b.get("state"), "streaming");
    let t = v.wait_status("truncated", Duration::from_secs(30), |s| {
        s.num("decoded") > 10.0
    });
    assert_ne!(
        t.get("state"),
        "error",
        "a truncated file loops what it has"
    );
    assert!(v.lines_matching(|l| l.contains("panicked")).is_empty());
    assert_eq!(v.stop(), 0);
}

#[test]
fn a_detector_slower_than_the_stream_drops_frames_and_holds_memory() {
    let dir = TempDir::new("slow");
    // 25 fps detection asked of a CPU detector that manages about 10/s here.
    let cfg = Config::new()
        .ssd_model()
        .camera(
            Camera::named("busy", sample_clip())
                .detect_fps(25)
                .frame_pool(2)
                .max_resolution("640x480"),
        )
        .write(&dir);
    let v = Vigil::run_with_status(&cfg);
    let warm = v.wait_status("busy", Duration::from_secs(60), |s| {
        s.num("frames_dropped_pool_empty") > 20.0
    });
    let rss_warm = v.sample().rss_bytes;
    let threads = v.sample().threads;
    let later = v.wait_status("busy", Duration::from_secs(60), |s| {
        s.num("frames_dropped_pool_empty") > warm.num("frames_dropped_pool_empty") + 100.0
    });
    let s = v.sample();
    assert!(later.num("detected") < later.num("decoded"), "{later:?}");
    assert_eq!(s.threads, threads);
    let growth = s.rss_bytes as i64 - rss_warm as i64;
    assert!(
        growth < 1 << 20,
        "RSS grew {growth} bytes while dropping frames"
    );
    assert_eq!(v.stop(), 0);
}
