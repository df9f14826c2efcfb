//! The running appliance: every pool, queue and thread, created once from the
//! configuration and torn down in order.
//!
//! ```text
//! source task (tokio) --PacketSink--> packet queue --> decoder thread (1 per camera)
//!   --Sampler--> frame pool --> frame queue --> inference workers (fixed N)
//!   --> Tracker --> EventRing (+ log, SSE)
//!                   --> snapshot pool --> job queue --> events thread (1)
//!                         --> snapshot files + store batch --> outbox --> upstream tasks
//! decoder thread --copy--> pre-roll ring (1 per camera) <-- events open clips
//!   --> clip writer thread (1) --> clips/<id>.mp4 (quota in the store)
//! V4L2 capture thread (1 per V4L2 camera, in place of the decoder thread)
//!   --convert--> frame pool --> frame queue   (H.264: packet pool --> decoder)
//! ```
//!
//! Threads are fixed at start: `io_threads` tokio workers plus the runtime's
//! one blocking thread (spawned here, kept alive forever), one decoder thread
//! per network or file camera and one capture thread per V4L2 camera,
//! `detector.workers` inference threads, one events thread and one clip
//! writer thread (when a camera records and the store opened), and the
//! caller's thread running the monitor. Nothing here spawns a thread or task
//! per frame, event or reconnect: a source reconnects inside its own task,
//! a V4L2 camera on its own thread.

use crate::alloc_count;
use crate::config::{CameraConfig, Config};
use crate::decode::{self, DecodeError, Decoder, Picture};
use crate::detect::{Detections, Detector};
use crate::events::{Event, EventRing, Tracker};
use crate::frame::{Frame, FrameBuf};
use crate::hw::Backend;
use crate::metrics::{CameraMetrics, CameraState, DropReason, Registry};
use crate::packet::{Codec, PacketBuf};
use crate::pool::Pool;
use crate::procstat::ProcSample;
use crate::queue::{BoundedQueue, PopError, WhenFull};
use crate::record::recorder::{CameraRecorder, ClipWriter};
use crate::sampler::Sampler;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::snapshot::{JpegWriter, SnapshotBuf};
use crate::source::sink::{PacketQueue, PacketSink};
use crate::source::{self, SourceSpec};
use crate::store::writer::{DrawnBox, EventJob, EventWriter, JobQueue, MAX_BOXES};
use crate::store::{Batch, Store, StoreLimits};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long blocked threads wait before re-checking for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Decoded frames waiting for an inference worker.
type FrameQueue = BoundedQueue<Frame>;

/// Makes a camera's decoder for a codec (called once per camera and codec,
/// from the camera's decoder thread).
pub type DecoderFactory = Arc<dyn Fn(Codec) -> Result<Box<dyn Decoder>, DecodeError> + Send + Sync>;

/// What the pipeline needs besides the configuration.
pub struct Parts {
    /// Which backends these parts are (for the status and metrics). The
    /// hardware backend's decoded pictures stay in MPP's buffer group; the
    /// software backend's are copied into each camera's frame pool.
    pub backend: Backend,
    /// One detector per inference worker (`config.detector.workers`).
    pub detectors: Vec<Box<dyn Detector>>,
    /// Makes a camera's decoder once its codec is known.
    pub decoder_factory: DecoderFactory,
    /// Which codecs `decoder_factory` can decode.
    pub accepts: fn(Codec) -> bool,
    /// Play file sources at their frame rate (false: as fast as decoded,
    /// for benchmarks and tests).
    pub paced: bool,
}

/// A running pipeline.
pub struct Pipeline {
    /// Every measurement.
    pub registry: Arc<Registry>,
    /// Recent events.
    pub events: Arc<EventRing>,
    /// The event store; `None` when it could not be opened (the reason is
    /// in `store_error`, and events are then kept only in memory).
    pub store: Option<Arc<Store>>,
    /// Why the store could not be opened ("" when it was).
    pub store_error: String,
    trigger: Arc<ShutdownTrigger>,
    runtime: Option<tokio::runtime::Runtime>,
    packet_queues: Vec<Arc<PacketQueue>>,
    frame_queue: Arc<FrameQueue>,
    tensors: Pool<Box<dyn Detector>>,
    decoders: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    jobs: Option<Arc<JobQueue>>,
    writer: Option<JoinHandle<()>>,
    clip_writer: Option<JoinHandle<()>>,
    stop_clips: Arc<AtomicBool>,
    started: Instant,
}

/// Why the pipeline could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

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
struct CameraRoute {
    metrics: Arc<CameraMetrics>,
    classes: ClassSet,
    min_score: f32,
    tracker: Mutex<Tracker>,
    recorder: Option<Arc<CameraRecorder>>,
}

impl Pipeline {
    /// Allocates every pool and starts every thread and source.
    pub fn start(config: &Config, parts: Parts) -> Result<Pipeline, StartError> {
        if parts.detectors.len() != config.detector.workers {
            return Err(StartError(format!(
                "{} detectors for {} workers",
                parts.detectors.len(),
                config.detector.workers
            )));
        }
        let started = Instant::now();
        let (trigger, shutdown) = shutdown::channel();
        let trigger = Arc::new(trigger);
        let mut registry = Registry::new(
            config.cameras.iter().map(|c| c.name.as_str()),
            parts.backend.as_str(),
        );
        let (store, store_error) = match open_store(config) {
            Ok(s) => (Some(Arc::new(s)), String::new()),
            Err(e) => {
                log::error!("{e}; events are kept in memory only");
                (None, e.to_string())
            }
        };
        // Ids continue after the newest stored event, so a restart never
        // reuses one.
        let first_id = store.as_ref().map_or(1, |s| s.totals().last_id + 1);
        let events = Arc::new(EventRing::starting_at(
            config.events.ring_capacity,
            first_id,
        ));

        let total_frames: usize = config.cameras.iter().map(|c| c.frame_pool).sum();
        let frame_queue = Arc::new(FrameQueue::new(total_frames, WhenFull::DropOldest));
        let mut packet_pools = Vec::with_capacity(config.cameras.len());
        let mut packet_queues = Vec::with_capacity(config.cameras.len());
        let mut frame_pools = Vec::with_capacity(config.cameras.len());
        for cam in &config.cameras {
            let packets = Pool::with("packets", cam.packet_pool, || {
                PacketBuf::with_capacity(cam.packet_size)
            });
            // V4L2 pictures are converted on the CPU into frame buffers
            // under either backend.
            let cpu_pictures = cam.v4l2.is_some() && !cam.compressed();
            let frames = match parts.backend {
                _ if cpu_pictures => {
                    FrameStore::Buffers(Pool::with("frames", cam.frame_pool, || {
                        FrameBuf::new(cam.max_width, cam.max_height)
                    }))
                }
                Backend::Software => {
                    FrameStore::Buffers(Pool::with("frames", cam.frame_pool, || {
                        FrameBuf::new(cam.max_width, cam.max_height)
                    }))
                }
                Backend::Hardware => {
                    FrameStore::Tickets(Pool::with("frames", cam.frame_pool, || ()))
                }
            };
            registry.add_pool(&cam.name, Box::new(packets.clone()));
            match &frames {
                FrameStore::Buffers(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
                FrameStore::Tickets(p) => registry.add_pool(&cam.name, Box::new(p.clone())),
            }
            packet_queues.push(Arc::new(PacketQueue::new(
                cam.packet_pool,
                WhenFull::DropNewest,
            )));
            packet_pools.push(packets);
            frame_pools.push(frames);
        }
        // The detectors hold the tensor memory; lending a detector lends its tensors.
        let tensors = Pool::new("tensors", parts.detectors);
        registry.add_pool("", Box::new(tensors.clone()));
        let snapshots = store.as_ref().map(|_| {
            let e = &config.events;
            let pool = Pool::with("snapshots", e.snapshot_pool, || {
                SnapshotBuf::new(e.snapshot_width, e.snapshot_height)
            });
            registry.add_pool("", Box::new(pool.clone()));
            pool
        });
        let jobs = store
            .as_ref()
            .map(|_| Arc::new(JobQueue::new(config.events.queue, WhenFull::DropNewest)));
        let registry = Arc::new(registry);
        // Clips need the store: their files and quota live there.
        let recorders: Vec<Option<Arc<CameraRecorder>>> = registry
            .cameras
            .iter()
            .zip(&config.cameras)
            .map(|(metrics, cam)| {
                if !config.record.enabled || !cam.compressed() {
                    return None;
                }
                if store.is_none() {
                    metrics
                        .record
                        .fail(&metrics.name, "no clips: the event store is not open");
                    return None;
                }
                Some(Arc::new(CameraRecorder::new(
                    &config.record,
                    metrics.clone(),
                )))
            })
            .collect();

        let runtime = build_runtime(config.io_threads)?;
        let mut pipeline = Pipeline {
            registry: registry.clone(),
            events: events.clone(),
            store: store.clone(),
            store_error,
            trigger,
            runtime: None,
            packet_queues: packet_queues.clone(),
            frame_queue: frame_queue.clone(),
            tensors: tensors.clone(),
            decoders: Vec::new(),
            workers: Vec::new(),
            jobs: jobs.clone(),
            writer: None,
            clip_writer: None,
            stop_clips: Arc::new(AtomicBool::new(false)),
            started,
        };

        let routes: Arc<Vec<CameraRoute>> = Arc::new(
            config
                .cameras
                .iter()
                .zip(&registry.cameras)
                .zip(&recorders)
                .map(|((cam, metrics), rec)| {
                    route(cam, metrics.clone(), rec.clone(), &tensors, config)
                })
                .collect(),
        );

        let shared = StageShared {
            frame_queue: frame_queue.clone(),
            factory: parts.decoder_factory.clone(),
            started,
        };
        for (i, cam) in config.cameras.iter().enumerate() {
            let metrics = registry.cameras[i].clone();
            let stage = DecodeStage::new(
                i,
                cam,
                frame_pools[i].clone(),
                metrics.clone(),
                recorders[i].clone(),
                &shared,
            );
            let handle = match (source::classify(&cam.url, cam.codec), &cam.v4l2) {
                (Ok(source::SourceKind::V4l2(path)), Some(request)) => spawn_v4l2(
                    i,
                    cam,
                    path,
                    *request,
                    stage,
                    packet_pools[i].clone(),
                    shutdown.clone(),
                ),
                _ => {
                    let queue = packet_queues[i].clone();
                    let sink = PacketSink::new(packet_pools[i].clone(), queue.clone(), metrics);
                    let spec = SourceSpec::from_camera(cam, parts.paced);
                    runtime.spawn(source::run(spec, sink, parts.accepts, shutdown.clone()));
                    let ctx = DecodeContext {
                        packets: queue,
                        stage,
                    };
                    std::thread::Builder::new()
                        .name(format!("vigil-dec-{i}"))
                        .spawn(move || ctx.run())
                }
            }
            .map_err(|e| {
                StartError(format!(
                    "cannot start the thread of camera {}: {e}",
                    cam.name
                ))
            })?;
            pipeline.decoders.push(handle);
        }

        for w in 0..config.detector.workers {
            let ctx = WorkerContext {
                frames: frame_queue.clone(),
                tensors: tensors.clone(),
                routes: routes.clone(),
                registry: registry.clone(),
                events: events.clone(),
                snapshots: snapshots.clone(),
                jobs: jobs.clone(),
                started,
            };
            let handle = std::thread::Builder::new()
                .name(format!("vigil-det-{w}"))
                .spawn(move || ctx.run())
                .map_err(|e| StartError(format!("cannot start inference worker {w}: {e}")))?;
            pipeline.workers.push(handle);
        }
        if let (Some(store), Some(jobs)) = (&store, &jobs) {
            let committed = Arc::new(tokio::sync::Notify::new());
            let writer = EventWriter {
                store: store.clone(),
                jobs: jobs.clone(),
                cameras: config.cameras.iter().map(|c| c.name.clone()).collect(),
                batch: Batch::with_capacity(config.store.batch),
                jpeg: JpegWriter::new(
                    JpegWriter::capacity_for(
                        config.events.snapshot_width,
                        config.events.snapshot_height,
                    ),
                    config.events.snapshot_quality,
                ),
                flush_after: config.store.flush_after,
                metrics: registry.outputs.clone(),
                committed: committed.clone(),
            };
            let handle = std::thread::Builder::new()
                .name("vigil-evt".into())
                .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
                .map_err(|e| StartError(format!("cannot start the events thread: {e}")))?;
            pipeline.writer = Some(handle);
            crate::upstream::spawn_with_clips(
                &runtime,
                &config.upstream,
                if config.record.enabled {
                    config.record.upstream
                } else {
                    crate::config::ClipDelivery::Link
                },
                store.clone(),
                registry.outputs.clone(),
                committed,
                shutdown.clone(),
                JpegWriter::capacity_for(
                    config.events.snapshot_width,
                    config.events.snapshot_height,
                ),
            )
            .map_err(StartError)?;
        }
        if let Some(store) = &store {
            let cams: Vec<Arc<CameraRecorder>> = recorders.iter().flatten().cloned().collect();
            if !cams.is_empty() {
                let writer = ClipWriter::new(
                    &config.record,
                    cams,
                    store.clone(),
                    started,
                    pipeline.stop_clips.clone(),
                );
                let handle = std::thread::Builder::new()
                    .name("vigil-rec".into())
                    // Files and store transactions per fragment: counted
                    // apart from the frame path, like the events thread.
                    .spawn(move || crate::alloc_count::events_scope(|| writer.run()))
                    .map_err(|e| StartError(format!("cannot start the clip writer: {e}")))?;
                pipeline.clip_writer = Some(handle);
            }
        }
        runtime.spawn(stop_on_signal(shutdown, pipeline.trigger.clone()));
        pipeline.runtime = Some(runtime);
        Ok(pipeline)
    }

    /// The async runtime's handle, for the web server's tasks (which then
    /// share the fixed `io_threads` and stop with the pipeline).
    pub fn runtime_handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|rt| rt.handle().clone())
    }

    /// A handle observing shutdown.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Requests shutdown.
    pub fn request_shutdown(&self) {
        self.trigger.trigger();
    }

    /// Refreshes process and rate metrics; call about once a second with the
    /// previous sample.
    pub fn sample(&self, previous: &mut MonitorState) {
        let now = Instant::now();
        let elapsed = now.duration_since(previous.at).as_secs_f64().max(1e-3);
        for (i, cam) in self.registry.cameras.iter().enumerate() {
            let decoded = cam.frames_decoded.get();
            let detected = cam.frames_detected.get();
            if let Some(prev) = previous.cameras.get_mut(i) {
                cam.decode_fps.set((decoded - prev.0) as f64 / elapsed);
                cam.detect_fps.set((detected - prev.1) as f64 / elapsed);
                *prev = (decoded, detected);
            }
        }
        previous.at = now;
        if let Ok(s) = ProcSample::read_self() {
            let p = &self.registry.process;
            p.rss_bytes.set(s.rss_bytes as f64);
            p.rss_peak_bytes.set(s.rss_peak_bytes as f64);
            p.threads.set(s.threads as f64);
            p.open_fds.set(s.open_fds as f64);
            p.cpu_seconds.set(s.cpu_seconds());
            if previous.last.cpu_seconds() > 0.0 {
                let used = (s.cpu_seconds() - previous.last.cpu_seconds()).max(0.0);
                p.cpu_percent.set(100.0 * used / elapsed);
            }
            previous.last = s;
        }
        let counts = alloc_count::process_counts();
        self.registry
            .process
            .heap_allocations
            .set(counts.ours as f64);
        self.registry
            .process
            .engine_heap_allocations
            .set(counts.engine as f64);
    }

    /// Monitor state for [`Pipeline::sample`].
    pub fn monitor_state(&self) -> MonitorState {
        MonitorState {
            at: Instant::now(),
            cameras: vec![(0, 0); self.registry.cameras.len()],
            last: ProcSample::default(),
        }
    }

    /// Whether every decoder and inference thread is still running (none
    /// has panicked or returned): what the watchdog is petted on.
    pub fn threads_alive(&self) -> bool {
        self.decoders
            .iter()
            .chain(&self.workers)
            .chain(&self.writer)
            .chain(&self.clip_writer)
            .all(|h| !h.is_finished())
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops sources, drains the queues and joins every thread.
    pub fn stop(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        self.trigger.trigger();
        // Sources stop at their next await; then nothing feeds the decoders.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        for q in &self.packet_queues {
            q.close();
        }
        for h in self.decoders.drain(..) {
            let _ = h.join();
        }
        self.frame_queue.close();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        // No unit or event arrives any more: the clip writer closes every
        // open clip, writes out what the rings hold and stops.
        self.stop_clips.store(true, Ordering::Release);
        if let Some(h) = self.clip_writer.take() {
            let _ = h.join();
        }
        // The events thread commits what the workers queued, then stops.
        if let Some(jobs) = &self.jobs {
            jobs.close();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        // Frames still queued go back to their decoders, and the detectors
        // release their engines (NPU contexts, RGA imports) now, in order,
        // rather than whenever the last Arc goes.
        while let Some(frame) = self.frame_queue.try_pop() {
            drop(frame);
        }
        self.tensors.release_free();
        for cam in &self.registry.cameras {
            cam.set_state(CameraState::Stopped, "");
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.runtime.is_some() || !self.decoders.is_empty() {
            self.shutdown_inner();
        }
    }
}

/// Between-sample memory of the monitor.
pub struct MonitorState {
    at: Instant,
    cameras: Vec<(u64, u64)>,
    /// The last process reading.
    pub last: ProcSample,
}

/// Starts V4L2 camera `i`'s capture thread, which opens `path`, streams and
/// reopens after unplugs until shutdown.
fn spawn_v4l2(
    i: usize,
    cam: &CameraConfig,
    path: std::path::PathBuf,
    request: source::v4l2::Request,
    stage: DecodeStage,
    packets: Pool<PacketBuf>,
    shutdown: Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    use source::backoff::{seed_from, Backoff, Jitter};
    use source::v4l2::{buffer_size, capture, device::V4l2Opener};
    let max = (cam.max_width, cam.max_height);
    let mut opener = V4l2Opener {
        path,
        request,
        max,
        max_buffer: buffer_size(&request, max),
    };
    stage
        .metrics
        .v4l2
        .set_device(&opener.path.display().to_string());
    let mut backoff = Backoff::new(
        cam.reconnect_min,
        cam.reconnect_max,
        Jitter::Decorrelated,
        capture::HEALTHY_SESSION,
        seed_from(&cam.name),
    );
    let stall = cam.stall_timeout;
    let metrics = stage.metrics.clone();
    let mut handler = V4l2Handler {
        stage,
        packets,
        frame: None,
        packet: None,
        discontinuity: true,
        awaiting_key: true,
    };
    std::thread::Builder::new()
        .name(format!("vigil-v4l-{i}"))
        .spawn(move || {
            let stop = || shutdown.is_requested();
            capture::run(
                &mut opener,
                &mut handler,
                &metrics,
                &stop,
                &mut backoff,
                stall,
            );
        })
}

fn open_store(config: &Config) -> Result<Store, crate::store::StoreError> {
    let limits = StoreLimits {
        max_bytes: config.store.max_bytes,
        max_events: config.store.max_events,
        max_age: config.store.max_age,
        outbox_max_bytes: config.upstream.outbox_max_bytes,
        cache_bytes: config.store.cache as usize,
    };
    let sinks = [
        config.upstream.http.is_some(),
        config.upstream.mqtt.is_some(),
    ];
    crate::record::recorder::repair_clips(&config.data_dir.join(crate::store::CLIP_DIR));
    Store::open(&config.data_dir, limits, sinks)
}

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
    }
}

fn build_runtime(io_threads: usize) -> Result<tokio::runtime::Runtime, StartError> {
    let n = AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        // One blocking thread (hostname lookups), started now and never
        // retired, so the thread count does not move later.
        .max_blocking_threads(1)
        .thread_keep_alive(Duration::from_secs(100 * 365 * 86_400))
        .thread_name_fn(move || format!("vigil-io-{}", n.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
        .map_err(|e| StartError(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async { tokio::task::spawn_blocking(|| ()).await })
        .map_err(|e| StartError(format!("cannot start the blocking thread: {e}")))?;
    Ok(rt)
}

async fn stop_on_signal(mut shutdown: Shutdown, trigger: Arc<ShutdownTrigger>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
        _ = int.recv() => log::info!("SIGINT: shutting down"),
        _ = shutdown.requested() => return,
    }
    trigger.trigger();
}

/// Where a camera's decoded pictures are kept while they wait for a worker.
#[derive(Clone)]
enum FrameStore {
    /// Buffers the software decoder's pictures are copied into.
    Buffers(Pool<FrameBuf>),
    /// Tickets bounding how many MPP frames the pipeline holds.
    Tickets(Pool<()>),
}

struct DecodeContext {
    packets: Arc<PacketQueue>,
    stage: DecodeStage,
}

impl DecodeContext {
    fn run(mut self) {
        loop {
            let packet = match self.packets.pop_timeout(POLL) {
                Ok(p) => p,
                Err(PopError::Timeout) => continue,
                Err(PopError::Closed) => break,
            };
            self.stage.decode(&packet);
        }
    }
}

/// What every camera's [`DecodeStage`] shares.
struct StageShared {
    frame_queue: Arc<FrameQueue>,
    factory: DecoderFactory,
    /// The pipeline's start (the recorder's clock).
    started: Instant,
}

/// A camera's decoder and where its pictures go: run by the camera's
/// decoder thread for network and file cameras, and by the capture thread
/// of a V4L2 camera (whose raw pictures skip the decoder, see
/// [`V4l2Handler`]).
struct DecodeStage {
    camera: usize,
    frames: FrameStore,
    frame_queue: Arc<FrameQueue>,
    metrics: Arc<CameraMetrics>,
    sampler: Sampler,
    factory: DecoderFactory,
    recorder: Option<Arc<CameraRecorder>>,
    started: Instant,
    /// Created on the first packet, when the codec is known, then kept for
    /// the life of the process and reset on every discontinuity.
    decoder: Option<(Codec, Box<dyn Decoder>)>,
    size: (u32, u32),
    unusable: bool,
    /// A codec the factory refused is not asked for again: otherwise every
    /// packet would retry it and format the same error.
    refused: Option<Codec>,
}

impl DecodeStage {
    fn new(
        camera: usize,
        cam: &CameraConfig,
        frames: FrameStore,
        metrics: Arc<CameraMetrics>,
        recorder: Option<Arc<CameraRecorder>>,
        shared: &StageShared,
    ) -> Self {
        DecodeStage {
            camera,
            frames,
            frame_queue: shared.frame_queue.clone(),
            metrics,
            sampler: Sampler::new(cam.detect_fps),
            factory: shared.factory.clone(),
            recorder,
            started: shared.started,
            decoder: None,
            size: (0, 0),
            unusable: false,
            refused: None,
        }
    }

    fn decode(&mut self, packet: &PacketBuf) {
        if let Some(rec) = &self.recorder {
            rec.on_packet(packet, self.started.elapsed().as_millis() as u64);
        }
        if self.refused == Some(packet.codec) {
            self.metrics.packets_dropped.inc(DropReason::DecodeError);
            return;
        }
        if self
            .decoder
            .as_ref()
            .is_none_or(|(c, _)| *c != packet.codec)
        {
            match (self.factory)(packet.codec) {
                Ok(d) => self.decoder = Some((packet.codec, d)),
                Err(e) => {
                    self.refused = Some(packet.codec);
                    self.metrics.set_state(CameraState::Error, &e.to_string());
                    self.metrics.packets_dropped.inc(DropReason::DecodeError);
                    return;
                }
            }
        }
        // Taken out for the call so the picture callback can use the rest
        // of the stage; put back below (a move, not an allocation).
        let Some((codec, mut dec)) = self.decoder.take() else {
            return;
        };
        if packet.discontinuity {
            dec.reset();
            self.sampler.reset();
            self.unusable = false;
        }
        let result = dec.decode(packet, &mut |pic| {
            self.metrics.frames_decoded.inc();
            if pic.size() != self.size {
                self.size = pic.size();
                self.metrics.set_format(codec, self.size.0, self.size.1);
            }
            if self.unusable || !self.sampler.take(pic.pts_us) {
                self.metrics.frames_dropped.inc(DropReason::Sampling);
                return;
            }
            let frame = match (&self.frames, pic.image) {
                (FrameStore::Buffers(pool), Picture::Borrowed(image)) => {
                    let Some(mut frame) = pool.try_take() else {
                        self.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                        return;
                    };
                    if let Err(e) = frame.copy_from(&image) {
                        self.unusable = true;
                        self.metrics.set_state(CameraState::Error, &e.to_string());
                        self.metrics.frames_dropped.inc(DropReason::DecodeError);
                        return;
                    }
                    frame.pts_us = pic.pts_us;
                    frame.camera = self.camera;
                    Frame::Cpu(frame)
                }
                (FrameStore::Tickets(pool), Picture::Mpp(picture)) => {
                    // Without a ticket the picture drops here and its
                    // frame goes straight back to the decoder.
                    let Some(ticket) = pool.try_take() else {
                        self.metrics.frames_dropped.inc(DropReason::PoolEmpty);
                        return;
                    };
                    Frame::Mpp {
                        picture,
                        camera: self.camera,
                        ticket,
                    }
                }
                _ => {
                    // A decoder of the other backend: cannot happen, as
                    // the parts come in matching pairs; counted if it does.
                    self.metrics.frames_dropped.inc(DropReason::DecodeError);
                    return;
                }
            };
            self.push(frame);
        });
        self.decoder = Some((codec, dec));
        if let Err(e) = result {
            self.metrics.packets_dropped.inc(DropReason::DecodeError);
            log::debug!("camera {}: {e}", self.metrics.name);
        }
    }

    /// Queues a frame for the workers; a full queue drops its oldest.
    fn push(&self, frame: Frame) {
        if let Some(old) = self.frame_queue.push(frame) {
            drop(old);
            self.metrics.frames_dropped.inc(DropReason::QueueFull);
        }
    }
}

/// The pipeline's side of a V4L2 camera's capture thread: pictures are
/// converted from the driver's buffer into a pool frame (or copied into a
/// packet buffer for the decoder, H.264) while the buffer is held, and
/// queued or decoded after it went back to the driver.
struct V4l2Handler {
    stage: DecodeStage,
    packets: Pool<PacketBuf>,
    frame: Option<crate::pool::Lease<FrameBuf>>,
    packet: Option<crate::pool::Lease<PacketBuf>>,
    /// The next unit starts a new stream (after each open).
    discontinuity: bool,
    /// Units are skipped until a key frame after each open.
    awaiting_key: bool,
}

impl source::v4l2::capture::FrameHandler for V4l2Handler {
    fn start(&mut self, _mode: &source::v4l2::Mode) {
        self.stage.sampler.reset();
        self.stage.unusable = false;
        self.discontinuity = true;
        self.awaiting_key = true;
    }

    fn frame(&mut self, mode: &source::v4l2::Mode, captured: source::v4l2::capture::Captured<'_>) {
        use source::v4l2::{convert, PixelFormat};
        let metrics = &self.stage.metrics;
        if mode.format == PixelFormat::H264 {
            let key =
                captured.keyframe || source::annexb::has_key_slice(Codec::H264, captured.data);
            if self.awaiting_key && !key {
                metrics.packets_dropped.inc(DropReason::AwaitingKeyframe);
                return;
            }
            let Some(mut packet) = self.packets.try_take() else {
                metrics.packets_dropped.inc(DropReason::PoolEmpty);
                return;
            };
            packet.begin(Codec::H264, captured.pts_us, key);
            if packet.extend_from_slice(captured.data).is_err() {
                metrics.packets_dropped.inc(DropReason::Oversize);
                return;
            }
            packet.discontinuity = std::mem::take(&mut self.discontinuity);
            self.awaiting_key = false;
            self.packet = Some(packet);
            return;
        }
        metrics.frames_decoded.inc();
        if self.stage.unusable || !self.stage.sampler.take(captured.pts_us) {
            metrics.frames_dropped.inc(DropReason::Sampling);
            return;
        }
        let FrameStore::Buffers(pool) = &self.stage.frames else {
            metrics.frames_dropped.inc(DropReason::DecodeError);
            return;
        };
        let Some(mut frame) = pool.try_take() else {
            metrics.frames_dropped.inc(DropReason::PoolEmpty);
            return;
        };
        let stride = mode.stride as usize;
        let converted = match mode.format {
            PixelFormat::Nv12 => {
                convert::nv12(captured.data, stride, mode.width, mode.height, &mut frame)
            }
            PixelFormat::Yuyv => {
                convert::yuyv(captured.data, stride, mode.width, mode.height, &mut frame)
            }
            PixelFormat::Mjpeg => convert::mjpeg(captured.data, &mut frame),
            PixelFormat::H264 => return,
        };
        match converted {
            Ok(()) => {
                frame.pts_us = captured.pts_us;
                frame.camera = self.stage.camera;
                self.frame = Some(frame);
            }
            Err(e) => {
                // A picture too large for the pool frames will not shrink:
                // the camera shows it. A bad single frame is only counted.
                if matches!(e, convert::ConvertError::TooLarge(_)) {
                    self.stage.unusable = true;
                    metrics.set_state(CameraState::Error, &e.to_string());
                }
                metrics.frames_dropped.inc(DropReason::DecodeError);
                log::debug!("camera {}: {e}", metrics.name);
            }
        }
    }

    fn after(&mut self) {
        if let Some(frame) = self.frame.take() {
            self.stage.push(Frame::Cpu(frame));
        }
        if let Some(packet) = self.packet.take() {
            self.stage.decode(&packet);
        }
    }
}

struct WorkerContext {
    frames: Arc<FrameQueue>,
    tensors: Pool<Box<dyn Detector>>,
    routes: Arc<Vec<CameraRoute>>,
    registry: Arc<Registry>,
    events: Arc<EventRing>,
    snapshots: Option<Pool<SnapshotBuf>>,
    jobs: Option<Arc<JobQueue>>,
    started: Instant,
}

impl WorkerContext {
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
                log::error!("camera {}: {e}", route.metrics.name);
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

/// The parts for this machine: software decoding, the given CPU detectors.
pub fn software_parts(detectors: Vec<Box<dyn Detector>>, paced: bool) -> Parts {
    Parts {
        backend: Backend::Software,
        detectors,
        decoder_factory: Arc::new(decode::openh264::new_software_decoder),
        accepts: decode::openh264::software_accepts,
        paced,
    }
}

/// The parts for an RK3588: MPP decoding into groups of `decoder_buffers`
/// frames per camera, and the given detectors (NPU or CPU).
pub fn hardware_parts(
    mpp: Arc<crate::hw::mpp_sys::MppLib>,
    decoder_buffers: usize,
    detectors: Vec<Box<dyn Detector>>,
    paced: bool,
) -> Parts {
    Parts {
        backend: Backend::Hardware,
        detectors,
        decoder_factory: Arc::new(move |codec| {
            let decoder = decode::mpp::MppVideoDecoder::new(mpp.clone(), codec, decoder_buffers)?;
            Ok(Box::new(decoder) as Box<dyn Decoder>)
        }),
        // MPP decodes both codecs vigil's sources deliver.
        accepts: |_| true,
        paced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::backoff::{Backoff, Jitter};
    use crate::source::v4l2::capture::tests::{mode, FakeOpener, Log, Step};
    use crate::source::v4l2::{capture, PixelFormat};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Runs one scripted V4L2 session of `frames` through a camera's real
    /// handler and decoder; answers the camera's metrics and the frames
    /// that reached the queue.
    fn capture_session(
        format: PixelFormat,
        frames: Vec<Vec<u8>>,
    ) -> (Arc<CameraMetrics>, Vec<Frame>) {
        let text = format!(
            "[[camera]]\nname = \"usb\"\ndevice = \"/dev/video0\"\nformat = \"{format}\"\n\
             max_resolution = \"640x480\"\ndetect_fps = 60\nframe_pool = 128\n"
        );
        let config = Config::parse(&text, "t").unwrap();
        let cam = &config.cameras[0];
        let frame_queue = Arc::new(FrameQueue::new(128, WhenFull::DropOldest));
        let metrics = Arc::new(CameraMetrics::new("usb"));
        let shared = StageShared {
            frame_queue: frame_queue.clone(),
            factory: Arc::new(decode::openh264::new_software_decoder),
            started: Instant::now(),
        };
        let stage = DecodeStage::new(
            0,
            cam,
            FrameStore::Buffers(Pool::with("frames", 128, || FrameBuf::new(640, 480))),
            metrics.clone(),
            None,
            &shared,
        );
        let mut handler = V4l2Handler {
            stage,
            packets: Pool::with("packets", 2, || PacketBuf::with_capacity(1 << 20)),
            frame: None,
            packet: None,
            discontinuity: true,
            awaiting_key: true,
        };
        let log = Rc::new(RefCell::new(Log::default()));
        let steps = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| Step::Frame(i as u32, f))
            .collect();
        let mut opener = FakeOpener {
            sessions: vec![Ok(steps)].into(),
            log: log.clone(),
            mode: mode(format),
        };
        let stop = || log.borrow().open_failures > 0;
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Jitter::Full,
            Duration::from_secs(30),
            1,
        );
        capture::run(
            &mut opener,
            &mut handler,
            &metrics,
            &stop,
            &mut backoff,
            Duration::from_secs(60),
        );
        let mut out = Vec::new();
        while let Some(f) = frame_queue.try_pop() {
            out.push(f);
        }
        (metrics, out)
    }

    #[test]
    fn v4l2_h264_units_go_through_the_cameras_decoder() {
        // One access unit per buffer, as an H.264 camera delivers them (no
        // B-frames, like UVC cameras, so every unit decodes at once); the
        // driver's key-frame flag is not trusted (the double sets it on
        // every buffer), the IDR slice is looked for.
        let path = crate::source::test_media::ffmpeg(
            "v4l2-aud-bf0.h264",
            "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 50 -c:v libx264 -bf 0 -g 25 \
             -bsf:v h264_metadata=aud=insert -f h264 {out}",
        );
        let stream = std::fs::read(path).unwrap();
        let aud = [0u8, 0, 0, 1, 9];
        let starts: Vec<usize> = (0..stream.len().saturating_sub(4))
            .filter(|&i| stream[i..].starts_with(&aud))
            .collect();
        let units: Vec<Vec<u8>> = starts
            .iter()
            .zip(starts.iter().skip(1).chain([&stream.len()]))
            .map(|(&a, &b)| stream[a..b].to_vec())
            .collect();
        assert_eq!(units.len(), 50);
        let (m, frames) = capture_session(PixelFormat::H264, units);
        // Every unit reached the decoder; it may keep the newest picture
        // until a next unit arrives, which the session's end never sends.
        assert_eq!(m.packets_dropped.lost(), 0);
        let decoded = m.frames_decoded.get();
        assert!((49..=50).contains(&decoded), "{decoded} of 50 decoded");
        assert_eq!(frames.len() as u64, decoded);
        assert!(frames.iter().all(|f| {
            let (w, h) = f.image().size();
            (w, h) == (320, 240)
        }));
        let s = m.status();
        assert_eq!((s.codec, s.width, s.height), (Some(Codec::H264), 320, 240));
    }

    #[test]
    fn v4l2_mjpeg_frames_are_decoded_into_pool_frames() {
        let (w, h) = (96u16, 64u16);
        let rgb = vec![200u8; w as usize * h as usize * 3];
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let mut frames = vec![jpeg; 5];
        // A torn frame is counted and skipped, not fatal.
        frames.insert(2, b"\xff\xd8 torn".to_vec());
        let (m, out) = capture_session(PixelFormat::Mjpeg, frames);
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|f| f.image().size() == (96, 64)));
        assert_eq!(m.frames_dropped.get(DropReason::DecodeError), 1);
        assert_eq!(m.status().state, CameraState::Stopped);
    }
}
