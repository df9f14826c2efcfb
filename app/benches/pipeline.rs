//! `make bench`: throughput and CPU cost per frame of each stage on the
//! sample clip, and peak RSS against the computed budget. Prints figures;
//! asserts nothing (timings on a shared 2-core machine are not test material).
//!
//! Stages:
//! - decode: the software H.264 decoder alone over the clip's access units;
//! - inference: the SSD detector alone on a decoded picture;
//! - glue: the whole pipeline (source, pools, queues, sampling, copy,
//!   tracker, events) with a detector that does nothing, minus decode;
//! - full pipeline: everything, unpaced, with peak RSS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::budget::Budget;
use vigil::config::Config;
use vigil::decode::openh264::new_software_decoder;
use vigil::detect::ssd::SsdMobilenetV2;
use vigil::detect::{DetectError, Detections, Detector};
use vigil::frame::FrameBuf;
use vigil::image::ImageRef;
use vigil::metrics::CameraMetrics;
use vigil::packet::{Codec, PacketBuf};
use vigil::pipeline::{software_parts, Pipeline};
use vigil::pool::Pool;
use vigil::procstat::ProcSample;
use vigil::queue::WhenFull;
use vigil::source::annexb::AnnexBFile;
use vigil::source::sink::{PacketQueue, PacketSink};
use vigil::source::FileSource;

fn cached(rel: &str) -> PathBuf {
    let base = std::env::var_os("VIGIL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vigil"));
    base.join(rel)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_cpu() -> f64 {
    ProcSample::read_self().map_or(0.0, |s| s.cpu_seconds())
}

/// Reads every access unit of one pass over an Annex-B clip.
fn access_units(clip: &std::path::Path, n: usize) -> (Vec<Vec<u8>>, Vec<bool>) {
    let mut file = AnnexBFile::open(clip, Codec::H264).expect("open clip");
    let pool = Pool::with("packets", 4, || PacketBuf::with_capacity(1 << 20));
    let queue = Arc::new(PacketQueue::new(4, WhenFull::DropNewest));
    let mut sink = PacketSink::new(pool, queue, Arc::new(CameraMetrics::new("bench")));
    let (mut units, mut keys) = (Vec::new(), Vec::new());
    while units.len() < n {
        if let Some(p) = file.next_unit(&mut sink).expect("read").packet {
            units.push(p.as_slice().to_vec());
            keys.push(p.keyframe);
        }
    }
    (units, keys)
}

struct NullDetector;

impl Detector for NullDetector {
    fn detect(&mut self, _: ImageRef<'_>, _: f32, out: &mut Detections) -> Result<(), DetectError> {
        out.clear();
        Ok(())
    }
    fn class_name(&self, _: u16) -> &'static str {
        "none"
    }
    fn class_id(&self, _: &str) -> Option<u16> {
        None
    }
    fn tensor_bytes(&self) -> usize {
        0
    }
}

fn run_pipeline(config: &Config, detector: Box<dyn Detector>, frames: u64) -> (f64, f64, u64, u64) {
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let p = Pipeline::start(config, software_parts(vec![detector], false)).expect("start");
    let cam = p.registry.cameras[0].clone();
    while cam.frames_decoded.get() < frames {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (decoded, detected) = (cam.frames_decoded.get(), cam.frames_detected.get());
    let wall = t0.elapsed().as_secs_f64();
    p.stop();
    (wall, process_cpu() - cpu0, decoded, detected)
}

fn main() {
    let clip = cached("media/bikes.h264");
    let model = cached("models/ssd_mobilenet_v2_coco.pb");
    assert!(
        clip.exists() && model.exists(),
        "run `make model sample` first"
    );
    println!(
        "vigil pipeline benchmark on {} ({} cores)",
        clip.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Decode alone.
    let (units, keys) = access_units(&clip, 250);
    let mut decoder = new_software_decoder(Codec::H264).expect("decoder");
    let mut packet = PacketBuf::with_capacity(1 << 20);
    let loops = 8;
    let mut pictures = 0u64;
    let mut last = FrameBuf::new(640, 480);
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for l in 0..loops {
        for (i, (u, k)) in units.iter().zip(&keys).enumerate() {
            packet.begin(Codec::H264, (l * 250 + i) as i64 * 40_000, *k);
            packet.extend_from_slice(u).expect("fits");
            packet.discontinuity = i == 0;
            if packet.discontinuity {
                decoder.reset();
            }
            decoder
                .decode(&packet, &mut |pic| {
                    pictures += 1;
                    if let vigil::decode::Picture::Borrowed(image) = &pic.image {
                        let _ = last.copy_from(image);
                    }
                })
                .expect("decode");
        }
    }
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64(),
        (thread_cpu() - cpu0).as_secs_f64(),
    );
    let decode_cpu_per_frame = cpu / pictures as f64;
    println!(
        "decode     {pictures:>6} frames  {:>8.1} frames/s  {:>8.3} ms CPU/frame",
        pictures as f64 / wall,
        decode_cpu_per_frame * 1e3
    );

    // Inference alone.
    let mut ssd = SsdMobilenetV2::load(&model).expect("model");
    let mut dets = Detections::new();
    let calls = 30;
    ssd.detect(ImageRef::I420(last.image()), 0.5, &mut dets)
        .expect("warm");
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for _ in 0..calls {
        ssd.detect(ImageRef::I420(last.image()), 0.5, &mut dets)
            .expect("detect");
    }
    let (wall, cpu) = (
        t0.elapsed().as_secs_f64(),
        (thread_cpu() - cpu0).as_secs_f64(),
    );
    println!(
        "inference  {calls:>6} calls   {:>8.1} calls/s   {:>8.3} ms CPU/call",
        calls as f64 / wall,
        cpu / calls as f64 * 1e3
    );

    // Glue: the whole pipeline with a detector that does nothing.
    let text = format!(
        "[detector]\nmodel = {:?}\n[[camera]]\nurl = {:?}\ndetect_fps = 25\nmax_resolution = \"640x480\"\n",
        model.display().to_string(),
        clip.display().to_string()
    );
    let config = Config::parse(&text, "bench").expect("config");
    let (wall, cpu, decoded, detected) = run_pipeline(&config, Box::new(NullDetector), 2000);
    let glue = (cpu - decode_cpu_per_frame * decoded as f64) / decoded as f64;
    println!(
        "glue       {decoded:>6} frames  {:>8.1} frames/s  {:>8.3} ms CPU/frame (pipeline {:.3} minus decode; {detected} sampled)",
        decoded as f64 / wall,
        glue * 1e3,
        cpu / decoded as f64 * 1e3
    );

    // Everything, 5 detections per second of stream time.
    let text = text.replace("detect_fps = 25", "detect_fps = 5");
    let config = Config::parse(&text, "bench").expect("config");
    let (wall, cpu, decoded, detected) = run_pipeline(&config, Box::new(ssd), 1000);
    println!(
        "pipeline   {decoded:>6} frames  {:>8.1} frames/s  {:>8.3} ms CPU/frame ({detected} detections, unpaced)",
        decoded as f64 / wall,
        cpu / decoded as f64 * 1e3
    );
    let budget = Budget::compute(
        &config,
        vigil::hw::Backend::Software,
        std::fs::metadata(&model).map_or(0, |m| m.len()),
    );
    let peak = ProcSample::read_self().map_or(0, |s| s.rss_peak_bytes);
    println!(
        "peak RSS   {} of budget {} ({:.0}%), limit {}",
        vigil::budget::human(peak),
        vigil::budget::human(budget.total()),
        peak as f64 * 100.0 / budget.total() as f64,
        vigil::budget::human(budget.limit)
    );
}
