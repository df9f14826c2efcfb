//! A stop does not wait for the queued frames' inferences.
//!
//! On the emulated board one SSD inference takes tens of seconds, and a
//! restart to apply a saved configuration waited for every frame in the
//! queue to be detected first: minutes (the set-up test's "vigil did not
//! start again after the save"). A stop now hands queued frames back
//! undetected, and each worker finishes at most the frame it is on. The
//! detector here is a stand-in that takes 300 ms per frame and counts its
//! calls.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::config::Config;
use vigil::detect::{DetectError, Detections, Detector};
use vigil::image::ImageRef;
use vigil::pipeline::{software_parts, Pipeline};

const INFERENCE: Duration = Duration::from_millis(300);

struct Slow(Arc<AtomicU64>);

impl Detector for Slow {
    fn detect(&mut self, _: ImageRef<'_>, _: f32, out: &mut Detections) -> Result<(), DetectError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(INFERENCE);
        out.clear();
        Ok(())
    }
    fn class_name(&self, _: u16) -> &'static str {
        "person"
    }
    fn class_id(&self, _: &str) -> Option<u16> {
        Some(0)
    }
    fn tensor_bytes(&self) -> usize {
        0
    }
}

fn cached(rel: &str) -> PathBuf {
    let base = std::env::var_os("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vigil"));
    let p = base.join(rel);
    assert!(p.exists(), "{} missing: run `make sample`", p.display());
    p
}

#[test]
fn a_stop_hands_queued_frames_back_instead_of_detecting_them() {
    let clip = cached("media/bikes.mp4");
    let data = std::env::temp_dir().join(format!("vigil-stop-prompt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let text = format!(
        "data_dir = {:?}\n[[camera]]\nurl = {:?}\ndetect_fps = 25\nframe_pool = 8\nmax_resolution = \"640x480\"\n",
        data.display().to_string(),
        clip.display().to_string()
    );
    let config = Config::parse(&text, "test").unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::start(
        &config,
        software_parts(vec![Box::new(Slow(calls.clone()))], false),
    )
    .unwrap();
    let cam = pipeline.registry.cameras[0].clone();
    // The decoder outruns the detector: once frames are being dropped for a
    // full queue, the queue holds its 8 frames.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cam.frames_detected.get() < 2 || cam.frames_decoded.get() < 100 {
        assert!(Instant::now() < deadline, "the pipeline did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = calls.load(Ordering::SeqCst);
    let t0 = Instant::now();
    pipeline.stop();
    let took = t0.elapsed();
    let after = calls.load(Ordering::SeqCst);
    let _ = std::fs::remove_dir_all(&data);
    eprintln!(
        "stop took {took:?}; {} inference(s) started after the stop began",
        after - before
    );
    // The one worker may start one more frame (it was between frames when
    // the stop began), never the queue's 8.
    assert!(
        after - before <= 1,
        "{} inferences ran after the stop began",
        after - before
    );
    assert!(took < INFERENCE * 6, "the stop took {took:?}");
}
