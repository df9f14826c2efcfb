//! The inference workers: `detector.workers` threads (`vigil-det-N`), each
//! lending a detector (and with it its tensor memory) from the fixed pool for
//! one frame at a time.
//!
//! A worker runs the detector on the oldest queued frame, keeps the
//! detections of the classes the camera asks for, lets the camera's
//! [`Tracker`] decide which are new objects, and for each new one pushes an
//! event to the ring, tells the camera's recorder, logs it and queues an
//! [`EventJob`] (with a copy of the picture in a snapshot buffer) for the
//! events thread. Nothing here allocates per frame or event. A detector
//! that fails is logged once per camera and interval, with a count.

use super::events::{DrawnBox, EventJob, JobQueue, MAX_BOXES};
use super::{FrameQueue, POLL};
use crate::config::{CameraConfig, Config};
use crate::detect::{Detections, Detector};
use crate::events::{Event, EventRing, Tracker};
use crate::log_limit::{Key, LogLimit};
use crate::metrics::{CameraMetrics, DropReason, Registry};
use crate::pool::Pool;
use crate::queue::PopError;
use crate::record::recorder::CameraRecorder;
use crate::snapshot::SnapshotBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The set of class ids a camera reports, as a 256-bit mask.
#[derive(Clone, Copy, Debug, Default)]
struct ClassSet([u64; 4]);

impl ClassSet {
    fn insert(&mut self, id: u16) {
        if let Some(word) = self.0.get_mut(usize::from(id) / 64) {
            *word |= 1 << (id % 64);
        }
    }
    fn contains(&self, id: u16) -> bool {
        self.0
            .get(usize::from(id) / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// What an inference worker needs to know about each camera.
pub(super) struct CameraRoute {
    metrics: Arc<CameraMetrics>,
    classes: ClassSet,
    min_score: f32,
    tracker: Mutex<Tracker>,
    recorder: Option<Arc<CameraRecorder>>,
    /// Detector failures, logged once per interval.
    errors: LogLimit<1>,
}

/// Every camera's route, in camera order.
pub(super) fn routes(
    config: &Config,
    registry: &Registry,
    recorders: &[Option<Arc<CameraRecorder>>],
    tensors: &Pool<Box<dyn Detector>>,
) -> Arc<Vec<CameraRoute>> {
    Arc::new(
        config
            .cameras
            .iter()
            .zip(&registry.cameras)
            .zip(recorders)
            .map(|((cam, metrics), rec)| route(cam, metrics.clone(), rec.clone(), tensors, config))
            .collect(),
    )
}

/// Camera `cam`'s route: its class names resolved to the detector's ids.
fn route(
    cam: &CameraConfig,
    metrics: Arc<CameraMetrics>,
    recorder: Option<Arc<CameraRecorder>>,
    tensors: &Pool<Box<dyn Detector>>,
    config: &Config,
) -> CameraRoute {
    let mut classes = ClassSet::default();
    if let Some(det) = tensors.try_take() {
        for name in &cam.classes {
            if let Some(id) = det.class_id(name) {
                classes.insert(id);
            }
        }
    }
    CameraRoute {
        metrics,
        classes,
        min_score: cam.min_score,
        tracker: Mutex::new(Tracker::new(config.events.track_timeout)),
        recorder,
        errors: LogLimit::new(crate::log_limit::INTERVAL_MS),
    }
}

/// What each inference worker holds (every worker a clone of the same).
#[derive(Clone)]
pub(super) struct WorkerContext {
    /// Decoded frames from every camera.
    pub frames: Arc<FrameQueue>,
    /// The detectors, one per worker.
    pub tensors: Pool<Box<dyn Detector>>,
    /// Per camera: classes, score, tracker, recorder.
    pub routes: Arc<Vec<CameraRoute>>,
    /// Every measurement.
    pub registry: Arc<Registry>,
    /// Recent events.
    pub events: Arc<EventRing>,
    /// Snapshot buffers (when the store opened).
    pub snapshots: Option<Pool<SnapshotBuf>>,
    /// The events thread's queue (when the store opened).
    pub jobs: Option<Arc<JobQueue>>,
    /// The pipeline's start (the tracker's and recorder's clock).
    pub started: Instant,
}

impl WorkerContext {
    /// Starts worker `w`'s thread (`vigil-det-N`) with a copy of this
    /// context.
    pub fn spawn(&self, w: usize) -> std::io::Result<JoinHandle<()>> {
        let ctx = self.clone();
        std::thread::Builder::new()
            .name(format!("vigil-det-{w}"))
            .spawn(move || ctx.run())
    }

    /// Queues event `event` for the events thread with a copy of the
    /// picture (when a snapshot buffer is free) and the boxes to draw.
    fn queue_job(
        &self,
        event: Event,
        clip: Option<u64>,
        image: &crate::image::ImageRef<'_>,
        detections: &Detections,
        own: &crate::detect::Detection,
        detector: &dyn Detector,
    ) {
        let Some(jobs) = &self.jobs else { return };
        let outputs = &self.registry.outputs;
        let snapshot = self.snapshots.as_ref().and_then(|pool| {
            let Some(mut buf) = pool.try_take() else {
                outputs.snapshot_pool_empty.inc();
                return None;
            };
            match buf.copy_from(image) {
                Ok(()) => Some(buf),
                Err(e) => {
                    outputs.snapshots_failed.inc();
                    log::debug!("event {}: no snapshot: {e}", event.id);
                    None
                }
            }
        });
        let mut boxes = heapless::Vec::<DrawnBox, MAX_BOXES>::new();
        let drawn = |d: &crate::detect::Detection| DrawnBox {
            bbox: d.bbox,
            label: detector.class_name(d.class_id),
            score: d.score,
        };
        let _ = boxes.push(drawn(own));
        for d in detections.iter().filter(|d| !std::ptr::eq(*d, own)) {
            if boxes.push(drawn(d)).is_err() {
                break;
            }
        }
        if jobs
            .push(EventJob {
                event,
                clip,
                snapshot,
                boxes,
            })
            .is_some()
        {
            outputs.jobs_dropped.inc();
        }
    }

    fn run(self) {
        let mut detections = Detections::new();
        loop {
            let frame = match self.frames.pop_timeout(POLL) {
                Ok(f) => f,
                Err(PopError::Timeout) => continue,
                Err(PopError::Closed) => break,
            };
            let Some(mut detector) = self.tensors.try_take() else {
                // Cannot happen (one detector per worker); counted if it does.
                self.routes[frame.camera()]
                    .metrics
                    .frames_dropped
                    .inc(DropReason::PoolEmpty);
                continue;
            };
            let route = &self.routes[frame.camera()];
            let t0 = Instant::now();
            let image = frame.image();
            let result = detector.detect(image, route.min_score, &mut detections);
            self.registry.inference_latency.observe(t0.elapsed());
            if let Err(e) = result {
                // A detector that fails once fails on every frame: one line
                // per interval, with the count.
                let key = Key {
                    source: frame.camera(),
                    reason: "detect",
                };
                let now_ms = self.started.elapsed().as_millis() as u64;
                if let Some(repeats) = route.errors.check(key, now_ms) {
                    log::error!("camera {}: {e}{repeats}", route.metrics.name);
                }
                continue;
            }
            route.metrics.frames_detected.inc();
            detections.retain(|d| route.classes.contains(d.class_id));
            route.metrics.detections.add(detections.len() as u64);
            let now_ms = self.started.elapsed().as_millis() as u64;
            let unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut tracker = route.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            tracker.update(&detections, now_ms, |d| {
                let mut event = Event {
                    id: 0,
                    camera: frame.camera(),
                    unix_ms,
                    pts_us: frame.pts_us(),
                    class_id: d.class_id,
                    class_name: detector.class_name(d.class_id),
                    score: d.score,
                    bbox: d.bbox,
                };
                let id = self.events.push(event);
                event.id = id;
                let clip = route
                    .recorder
                    .as_ref()
                    .and_then(|r| r.on_event(id, event.pts_us, now_ms));
                self.queue_job(event, clip, &image, &detections, d, &**detector);
                route.metrics.events.inc();
                let (w, h) = image.size();
                let (w, h) = (w as f32, h as f32);
                log::info!(
                    "event {id}: camera {} saw {} ({:.2}) at [{:.0}, {:.0}, {:.0}, {:.0}]",
                    route.metrics.name,
                    detector.class_name(d.class_id),
                    d.score,
                    d.bbox.x0 * w,
                    d.bbox.y0 * h,
                    d.bbox.x1 * w,
                    d.bbox.y1 * h
                );
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectError;
    use crate::frame::{Frame, FrameBuf};
    use crate::image::ImageRef;
    use crate::queue::WhenFull;
    use std::sync::Once;
    use std::time::Duration;

    /// The lines this module logged (a logger for the test binary that
    /// keeps only them, so other tests' logging stays off).
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    const TARGET: &str = "vigil::pipeline::infer";

    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.target() == TARGET
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                LINES.lock().unwrap().push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    fn captured(camera: &str) -> Vec<String> {
        let prefix = format!("camera {camera}: ");
        LINES
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// A detector that fails on every frame, like an NPU model given CPU
    /// frames.
    struct Failing;
    impl Detector for Failing {
        fn detect(
            &mut self,
            _: ImageRef<'_>,
            _: f32,
            _: &mut Detections,
        ) -> Result<(), DetectError> {
            Err(DetectError::BadImage("no dma-buf".into()))
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

    /// Runs a worker over `n` frames of camera 0 to the end, its clock
    /// `started` ago.
    fn run_worker(ctx: &WorkerContext, n: usize, started: Duration) {
        let frames = Arc::new(FrameQueue::new(n, WhenFull::DropNewest));
        let pool = Pool::new("frames", (0..n).map(|_| FrameBuf::new(16, 16)));
        for _ in 0..n {
            assert!(frames.push(Frame::Cpu(pool.try_take().unwrap())).is_none());
        }
        frames.close();
        let mut ctx = ctx.clone();
        ctx.frames = frames;
        ctx.started = Instant::now().checked_sub(started).unwrap();
        ctx.run();
    }

    #[test]
    fn a_detector_failing_every_frame_logs_once_per_interval_with_a_count() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            if log::set_logger(&Capture).is_ok() {
                log::set_max_level(log::LevelFilter::Error);
            }
        });
        let config = Config::parse(
            "[[camera]]\nname = \"failing-cam\"\nurl = \"a.h264\"\n",
            "t",
        )
        .unwrap();
        let registry = Arc::new(Registry::new(["failing-cam"], "software"));
        let tensors: Pool<Box<dyn Detector>> =
            Pool::new("tensors", [Box::new(Failing) as Box<dyn Detector>]);
        let ctx = WorkerContext {
            frames: Arc::new(FrameQueue::new(1, WhenFull::DropNewest)),
            routes: routes(&config, &registry, &[None], &tensors),
            tensors,
            registry,
            events: Arc::new(EventRing::new(4)),
            snapshots: None,
            jobs: None,
            started: Instant::now(),
        };
        run_worker(&ctx, 200, Duration::ZERO);
        assert_eq!(
            captured("failing-cam"),
            ["camera failing-cam: unusable image: no dma-buf"]
        );
        // The next frames a minute and a second later (the worker's clock
        // moved back): one more line, counting the 199 left out.
        run_worker(&ctx, 200, Duration::from_secs(61));
        let lines = captured("failing-cam");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (head, tail) = lines[1].split_at(lines[1].find(" in the last ").unwrap());
        assert_eq!(
            head,
            "camera failing-cam: unusable image: no dma-buf (repeated 199 times"
        );
        assert!(tail.ends_with(" s)"), "{tail}");
    }
}
